"""OpenID Connect sign-in routes, included under /oidc/ by config/urls.py only when OIDC is configured.

The names are mozilla-django-oidc's (``oidc_authentication_init``, ``oidc_authentication_callback``); the
callback is WhaleFall's (directory.signin.SignInCallbackView: a provider's error is an audited failure).
Signing out is the admin's own: WhaleFall's session ends, the provider's is the provider's.
"""

from django.urls import path
from mozilla_django_oidc.views import OIDCAuthenticationRequestView

from directory.signin import SignInCallbackView

urlpatterns = [
    path("authenticate/", OIDCAuthenticationRequestView.as_view(), name="oidc_authentication_init"),
    path("callback/", SignInCallbackView.as_view(), name="oidc_authentication_callback"),
]

"""WhaleFall's routes with the OpenID Connect ones, as config/urls.py makes them when OIDC is configured.

The sign-in tests switch OIDC on for one test; they point ROOT_URLCONF here (Django clears its URL
caches on that setting's change) instead of re-importing config/urls.py, whose module object other
test URL confs hold on to.
"""

from django.urls import include, path

from config.urls import handler404, handler500  # noqa: F401
from config.urls import urlpatterns as whalefall_urlpatterns

urlpatterns = [
    *[p for p in whalefall_urlpatterns if str(getattr(p, "pattern", "")) != "oidc/"],
    path("oidc/", include("directory.signin_urls")),
]

"""Top-level URL map: the admin is the product's UI; /api/ serves automation (docs/api.md).

/healthz is for probes (config/health.py); /metrics for Prometheus (docs/operations.md).
"""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.utils.translation import gettext_lazy as _
from django.views.generic import RedirectView

from config.health import healthz

admin.site.site_header = "WhaleFall"
admin.site.site_title = "WhaleFall"
admin.site.index_title = _("Accounts and permissions across your database fleet")

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/", include("api.urls")),
    path("metrics", include("metrics.urls")),  # Prometheus (docs/operations.md, "Metrics")
    path("healthz", healthz, name="healthz"),  # probes: no auth, 200 or 503 (docs/operations.md)
]

if settings.WHALEFALL_OIDC_ENABLED:  # OpenID Connect sign-in (docs/sign-in.md): only when it is configured
    urlpatterns.append(path("oidc/", include("directory.signin_urls")))

handler404 = "api.views.not_found"
handler500 = "api.exceptions.server_error"

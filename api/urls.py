"""/api/v1/ routes, the OpenAPI schema and the offline docs page.

Swagger UI only: drf-spectacular's Redoc page loads web fonts from the internet. GET /api/v1/ is the
router's root view: every endpoint by name (DRF keeps it out of the schema).
"""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from api import views

router = DefaultRouter()
router.register("credentials", views.CredentialViewSet, basename="credential")
router.register("instances", views.InstanceViewSet, basename="instance")
router.register("sync-sessions", views.SyncSessionViewSet, basename="syncsession")
router.register("sync-records", views.SyncInstanceRecordViewSet, basename="syncrecord")
router.register("accounts", views.InstanceAccountViewSet, basename="account")
router.register("change-logs", views.AccountChangeLogViewSet, basename="changelog")
router.register("findings", views.FindingViewSet, basename="finding")
router.register("permissions", views.AccountPermissionViewSet, basename="permission")
router.register("effective-access", views.EffectiveAccessViewSet, basename="effective-access")
router.register("audit-events", views.AuditEventViewSet, basename="audit-event")
router.register("model-history", views.ModelHistoryViewSet, basename="model-history")

urlpatterns = [
    path("v1/", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

"""/api/v1/ routes, the OpenAPI schema and the offline docs page.

Swagger UI only: drf-spectacular's Redoc page loads web fonts from the internet. GET /api/v1/ is the
router's root view: every endpoint by name (DRF keeps it out of the schema).
"""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from api import baselines, classification, directory, grantscripts, reviews, server_facts, views

router = DefaultRouter()
router.register("credentials", views.CredentialViewSet, basename="credential")
router.register("instances", views.InstanceViewSet, basename="instance")
router.register("sync-sessions", views.SyncSessionViewSet, basename="syncsession")
router.register("sync-records", views.SyncInstanceRecordViewSet, basename="syncrecord")
router.register("server-facts", server_facts.ServerFactsViewSet, basename="server-facts")
router.register("accounts", views.InstanceAccountViewSet, basename="account")
router.register("change-logs", views.AccountChangeLogViewSet, basename="changelog")
router.register("findings", views.FindingViewSet, basename="finding")
router.register("permissions", views.AccountPermissionViewSet, basename="permission")
router.register("effective-access", views.EffectiveAccessViewSet, basename="effective-access")
router.register("audit-events", views.AuditEventViewSet, basename="audit-event")
router.register("model-history", views.ModelHistoryViewSet, basename="model-history")
router.register("baselines", baselines.BaselineViewSet, basename="baseline")
router.register("review-campaigns", reviews.ReviewCampaignViewSet, basename="review-campaign")
router.register("review-items", reviews.ReviewItemViewSet, basename="review-item")
router.register("people", directory.PersonViewSet, basename="person")
router.register("classifications", classification.ClassificationViewSet, basename="classification")
router.register("classification-rules", classification.ClassificationRuleViewSet, basename="classification-rule")
router.register(
    "classification-assignments", classification.ClassificationAssignmentViewSet, basename="classification-assignment"
)
router.register("classification-manual", classification.ManualAssignmentViewSet, basename="classification-manual")

urlpatterns = [
    path("v1/", include(router.urls)),
    path("v1/accounts/<int:pk>/person/", directory.AccountPersonView.as_view(), name="account-person"),
    path("v1/directory-status/", directory.DirectoryStatusView.as_view(), name="directory-status"),
    path(
        "v1/accounts/<int:pk>/grant-script/",
        grantscripts.AccountGrantScriptView.as_view(),
        name="account-grant-script",
    ),
    path(
        "v1/instances/<int:pk>/grant-script/",
        grantscripts.InstanceGrantScriptView.as_view(),
        name="instance-grant-script",
    ),
    path("v1/grant-scripts/revoke/", grantscripts.RevokeScriptView.as_view(), name="grant-script-revoke"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

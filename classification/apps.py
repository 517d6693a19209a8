from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

# after findings (100), before baselines (160), directory (170) and alerts (200)
HOOK_ORDER = 150


class ClassificationConfig(AppConfig):
    name = "classification"
    verbose_name = _("Classifications")

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from classification.models import Classification, ClassificationRule, ManualAssignment
        from classification.services import classification_on_sync_applied
        from config.registry import post_sync_hook_register

        post_sync_hook_register(name="classification", order=HOOK_ORDER, func=classification_on_sync_applied)
        # model history (docs/audit.md): who changed a category, a rule or a manual decision, and which fields
        for model in (Classification, ClassificationRule, ManualAssignment):
            if not auditlog.contains(model):
                auditlog.register(model, exclude_fields=["updated_at"])

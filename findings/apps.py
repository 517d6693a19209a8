from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

# findings run first: the alerts hook reads the findings of the accounts a sync added
HOOK_ORDER = 100


class FindingsConfig(AppConfig):
    name = "findings"
    verbose_name = _("Risk findings")

    def ready(self) -> None:
        from config.registry import post_sync_hook_register
        from findings.services import findings_on_sync_applied

        post_sync_hook_register(name="findings", order=HOOK_ORDER, func=findings_on_sync_applied)

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

# after the findings hook (100): a new account's alert carries its fresh findings
HOOK_ORDER = 200


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = _("Alerts")

    def ready(self) -> None:
        from alerts.services import alerts_on_sync_applied
        from config.registry import post_sync_hook_register

        post_sync_hook_register(name="alerts", order=HOOK_ORDER, func=alerts_on_sync_applied)

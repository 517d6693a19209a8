from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

# after the findings hook (100): a new account's alert carries its fresh findings
HOOK_ORDER = 200


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = _("Alerts")

    def ready(self) -> None:
        from alerts import checks  # noqa: F401  (registers the thresholds check)
        from alerts.operational import operational_on_record_failed
        from alerts.services import alerts_on_sync_applied
        from config.registry import post_sync_hook_register, record_failed_hook_register

        # escalations, coverage, and the end of open operational alerts (alerts.operational)
        post_sync_hook_register(name="alerts", order=HOOK_ORDER, func=alerts_on_sync_applied)
        # and every record that ends failed (a worker, one process, the reaper): the failure-streak alert
        record_failed_hook_register(name="alerts.failure_streak", func=operational_on_record_failed)

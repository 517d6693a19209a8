from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ExportsConfig(AppConfig):
    """Adds the export actions to the account, change-log and findings admins (through the registry).

    Why from here: ``exports`` sits above ``accountsync`` and ``findings``, so their
    admins must not import it; registering keeps the arrow pointing down.
    """

    name = "exports"
    verbose_name = _("Exports")

    def ready(self) -> None:
        from config.registry import admin_action_register
        from exports.actions import admin_export_action

        for model, kind, fmt, description in (
            ("accountsync.instanceaccount", "accounts", "csv", _("Export selected accounts as CSV")),
            ("accountsync.instanceaccount", "accounts", "json", _("Export selected accounts as JSON")),
            (
                "accountsync.instanceaccount",
                "permissions",
                "csv",
                _("Export the selected accounts' permissions as CSV"),
            ),
            (
                "accountsync.instanceaccount",
                "effective_access",
                "csv",
                _("Export the selected accounts' effective access (through roles) as CSV"),
            ),
            ("accountsync.accountchangelog", "change_logs", "csv", _("Export selected changes as CSV")),
            ("accountsync.accountchangelog", "change_logs", "json", _("Export selected changes as JSON")),
            ("findings.finding", "findings", "csv", _("Export selected findings as CSV")),
            ("findings.finding", "findings", "json", _("Export selected findings as JSON")),
        ):
            admin_action_register(model=model, action=admin_export_action(kind, fmt, description=description))

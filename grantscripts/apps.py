"""Replayable DDL (CREATE/GRANT, and REVOKE) from stored snapshots, per database family."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class GrantscriptsConfig(AppConfig):
    """Adds "Export grant script" to the account and instance lists (through the registry: those admins sit below)."""

    name = "grantscripts"
    verbose_name = _("Grant scripts")

    def ready(self) -> None:
        from config.registry import admin_action_register
        from grantscripts.admin import export_accounts_action, export_instances_action

        admin_action_register(model="accountsync.instanceaccount", action=export_accounts_action)
        admin_action_register(model="instances.instance", action=export_instances_action)

"""People and groups read from LDAP/Active Directory, linked to database accounts."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DirectoryConfig(AppConfig):
    name = "directory"
    verbose_name = _("Directory")

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from config.registry import post_sync_hook_register
        from directory.models import AccountMapping
        from directory.services import HOOK_ORDER, directory_on_sync_applied, register_rules

        register_rules()
        post_sync_hook_register(name="directory", order=HOOK_ORDER, func=directory_on_sync_applied)
        # the mapping table decides whose access an account is: every change is in the model history
        if not auditlog.contains(AccountMapping):
            auditlog.register(AccountMapping, exclude_fields=["updated_at"])

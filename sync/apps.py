from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class SyncConfig(AppConfig):
    name = "sync"
    verbose_name = _("Synchronisation")

    def ready(self) -> None:
        from sync import checks  # noqa: F401  (registers the timing checks)
        from sync.roles import post_migrate_roles

        post_migrate.connect(post_migrate_roles, dispatch_uid="whalefall_roles")

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AuditConfig(AppConfig):
    """WhaleFall's own audit trail (docs/audit.md): model history and explicit action events.

    Why a low layer of its own: ``sync``, ``exports`` and ``api`` record their actions through
    ``audit.services.audit_record``, so it sits under them and imports none of them; which
    models have a history is wiring, named in ``settings.WHALEFALL_AUDIT_MODELS``.
    """

    name = "audit"
    verbose_name = _("Audit trail")

    def ready(self) -> None:
        from audit.history import connect_actor_receiver, register_tracked_models

        register_tracked_models()
        connect_actor_receiver()

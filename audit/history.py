"""Model history through django-auditlog: which models, which fields by name only, and the actor.

What is tracked is wiring, in ``settings.WHALEFALL_AUDIT_MODELS`` (``"app.model": spec``), so this
layer imports none of the models it tracks. A spec may hold:

- ``names_only``: fields whose changes are logged under their name and never with a value, old or
  new (``"__all__"``: every field of the model, as for credentials); the value is replaced by
  ``HIDDEN`` before the log entry is built, so neither the plaintext nor the ciphertext is stored;
- ``exclude``: fields not logged at all (bookkeeping a sync or a login writes);
- ``m2m``: many-to-many fields whose additions and removals are logged.

A field named there that the model does not have stops the start (``ImproperlyConfigured``): a
renamed secret field must never fall back to being logged with its value.
"""

from __future__ import annotations

from typing import Any

from auditlog import get_logentry_model
from auditlog.registry import auditlog
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db.models import Model
from django.db.models.signals import pre_save

from audit.middleware import current_request

HIDDEN = "[hidden]"
MASK_CALLABLE = "audit.history.names_only"


def names_only(value: str) -> str:
    """auditlog's mask callable for secret fields: whatever the value, the log shows ``HIDDEN``."""
    return HIDDEN


def _field_names(model: type[Model], names: Any, what: str) -> list[str]:
    if names == "__all__":
        return [f.name for f in model._meta.concrete_fields]
    for name in names:
        try:
            model._meta.get_field(name)
        except FieldDoesNotExist:
            raise ImproperlyConfigured(
                f"WHALEFALL_AUDIT_MODELS[{model._meta.label_lower!r}] {what} names {name!r}, "
                f"which {model.__name__} does not have."
            ) from None
    return list(names)


def tracked_models() -> dict[type[Model], dict[str, list[str]]]:
    """Each tracked model with its resolved ``names_only``, ``exclude`` and ``m2m`` field names."""
    resolved = {}
    for label, spec in getattr(settings, "WHALEFALL_AUDIT_MODELS", {}).items():
        model = apps.get_model(label)
        resolved[model] = {
            "names_only": _field_names(model, spec.get("names_only", ()), "names_only"),
            "exclude": _field_names(model, spec.get("exclude", ()), "exclude"),
            "m2m": _field_names(model, spec.get("m2m", ()), "m2m"),
        }
    return resolved


def register_tracked_models() -> None:
    for model, spec in tracked_models().items():
        auditlog.register(
            model,
            exclude_fields=spec["exclude"],
            mask_fields=spec["names_only"],
            mask_callable=MASK_CALLABLE,
            m2m_fields=set(spec["m2m"]),
        )


def _actor_from_request(sender: Any, instance: Any, **kwargs: Any) -> None:
    """pre_save of a log entry: the actor is the request's user as it is now.

    Why now and not when the request came in: a DRF token is only checked by the view, after
    every middleware ran, and DRF then sets the user on the Django request too.
    """
    if instance.actor_id is not None:
        return
    request = current_request()
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and isinstance(user, get_user_model()):
        instance.actor = user
        instance.actor_email = getattr(user, "email", None) or None


def connect_actor_receiver() -> None:
    pre_save.connect(_actor_from_request, sender=get_logentry_model(), dispatch_uid="whalefall.audit.actor")

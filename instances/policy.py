"""Who may point an instance (and so its credential's password) where.

Why one function for the admin and the API: an Operator may edit instances but not
credentials. If they could change an instance's host, port, type, credential or TLS
settings, they could send a production password to a server of theirs and read it
there; both interfaces must refuse that in the same words. The credential's own
binding (``Credential.binding_refusal``) is checked for everybody, and again before
every connection (``ConnectionTarget.from_instance``).
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _

from instances.models import Credential, Instance

# what decides where the password goes (and how it is protected on the way)
CONNECTION_FIELDS = ("db_type", "host", "port", "credential")
CHANGE_CREDENTIAL = "instances.change_credential"


def _tls(options: Any) -> Any:
    return (options or {}).get("tls") if isinstance(options, dict) else None


def instance_connection_refusals(
    user: Any,
    *,
    before: Instance | None,
    db_type: str | None,
    host: str | None,
    port: int | None,
    credential: Credential | None,
    options: Any,
) -> dict[str, str]:
    """Field name -> why `user` may not save these connection values (empty: they may)."""
    errors: dict[str, str] = {}
    if credential is not None and db_type and host and port:
        refusal = credential.binding_refusal(db_type=db_type, host=host, port=int(port))
        if refusal:
            errors["credential"] = _(
                "Credential %(name)s may not be used here: %(why)s. Someone who may change credentials can "
                "extend its binding."
            ) % {"name": credential.name, "why": refusal}
    if user is not None and user.has_perm(CHANGE_CREDENTIAL):
        return errors
    if before is None:
        if credential is not None and not credential.is_bound:
            errors.setdefault(
                "credential",
                _(
                    "Credential %(name)s is not bound to any host: only someone who may change credentials can "
                    "attach it to an instance (or bind it first)."
                )
                % {"name": credential.name},
            )
        return errors
    message = _(
        "Only someone who may change credentials can change where an instance connects "
        "(database type, host, port, credential, TLS)."
    )
    now = {"db_type": db_type, "host": host, "port": port, "credential": credential}
    for field in CONNECTION_FIELDS:
        old = getattr(before, field)
        new = now[field]
        if field == "port" and new is not None:
            new = int(new)
        if field == "host" and isinstance(new, str):
            new = new.strip()
        if new is not None and new != old:
            errors.setdefault(field, message)
    if _tls(options) != _tls(before.options):
        errors.setdefault("options", message)
    return errors

"""Recording explicit audit events (``AuditEvent``); see docs/audit.md for the kinds and their details.

``audit_record`` is called from inside other work (a sync start, an export stream, a login), so
it never raises into its caller: a failure is logged with its traceback and swallowed, in a
savepoint so that the caller's transaction stays usable.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Model
from django.http import HttpRequest
from django.utils.module_loading import import_string

from audit.middleware import client_address, current_request, valid_address
from audit.models import AuditEvent, AuditVia
from config.logging import log_event

logger = logging.getLogger("whalefall.audit")

MAX_TEXT = 255
MAX_FILTERS = 30
# Sign-in events get the path's `method` (local/ldap/oidc) and, for a refusal, its `reason`: a sign-in
# backend notes them on the request (directory/signin.py, SIGNIN_ATTR); a success names its backend.
SIGNIN_KINDS = frozenset({"login", "login_failed", "locked_out"})
SIGNIN_ATTR = "whalefall_signin"


def via_for_request(request: HttpRequest | None) -> str | None:
    """``api`` for a request under /api/, ``admin`` for any other request, None without one."""
    if request is None:
        return None
    path = getattr(request, "path_info", "") or ""
    return AuditVia.API if path.startswith("/api/") else AuditVia.ADMIN


def query_filters(params: Mapping[str, Any] | None, *, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """The query parameters of a list or an export, bounded: at most 30 names, values cut to 255 characters."""
    if not params:
        return {}
    getlist = getattr(params, "getlist", None)
    filters: dict[str, Any] = {}
    for name in list(params)[: MAX_FILTERS + len(drop)]:
        if name in drop:
            continue
        values = getlist(name) if getlist else [params[name]]
        values = [str(v)[:MAX_TEXT] for v in values]
        filters[str(name)[:MAX_TEXT]] = values[0] if len(values) == 1 else values[:MAX_FILTERS]
        if len(filters) >= MAX_FILTERS:
            break
    return filters


def _user(actor: Any) -> Any:
    if actor is not None and getattr(actor, "is_authenticated", False) and isinstance(actor, get_user_model()):
        return actor
    return None


def _signin_details(kind: str, request: HttpRequest | None, actor: Any, details: dict | None) -> dict[str, Any]:
    """The sign-in's method and, when refused, reason: what the backend noted, else the local accounts'."""
    note = dict(getattr(request, SIGNIN_ATTR, None) or {})
    method = note.pop("method", None)
    if kind == "login":
        backend = getattr(actor, "backend", "") or ""  # the path of the backend that authenticated it
        with contextlib.suppress(ImportError):
            method = getattr(import_string(backend), "signin_method", None) if backend else method
        note.pop("reason", None)
    if method is None and kind != "login" and getattr(settings, "WHALEFALL_LDAP_ENABLED", False):
        method = "password"  # refused by the lockout before a backend could tell local from LDAP
    return {**(details or {}), **note, "method": method or "local"}


def audit_record(
    kind: str,
    *,
    actor: Any = None,
    username: str | None = None,
    via: str | None = None,
    request: HttpRequest | None = None,
    remote_addr: str | None = None,
    obj: Model | None = None,
    object_type: str = "",
    object_id: Any = "",
    object_repr: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent | None:
    """Write one audit event; returns it, or None when it could not be written (logged, never raised).

    What is not given is taken from the request (the one passed, else the one being handled):
    the actor is its authenticated user, ``via`` is ``api`` under /api/ and ``admin`` otherwise,
    the address is the trusted client address. Without any request, ``via`` is ``admin`` when
    there is an actor, else ``system``; commands and the scheduler pass theirs (``cli``, ``schedule``).
    ``username`` is copied as given (a failed login's tried name), else the actor's.
    """
    try:
        request = request if request is not None else current_request()
        user = _user(actor)
        if user is None and actor is None and request is not None:
            user = _user(getattr(request, "user", None))
        via = via or via_for_request(request) or (AuditVia.ADMIN if user is not None else AuditVia.SYSTEM)
        if obj is not None:
            object_type = object_type or obj._meta.label_lower
            object_id = object_id or obj.pk
            object_repr = object_repr or str(obj)
        address = valid_address(remote_addr) if remote_addr else client_address(request)
        if kind in SIGNIN_KINDS and not username:  # an OIDC failure: the name is the provider's, noted
            username = (getattr(request, SIGNIN_ATTR, None) or {}).get("username") or username
        with transaction.atomic():
            return AuditEvent.objects.create(
                kind=kind,
                actor=user,
                actor_username=str(username if username is not None else (user.get_username() if user else ""))[:150],
                via=via,
                remote_addr=address,
                object_type=str(object_type)[:100],
                object_id=str(object_id if object_id is not None else "")[:64],
                object_repr=str(object_repr)[:MAX_TEXT],
                details=_signin_details(kind, request, actor, details) if kind in SIGNIN_KINDS else details or {},
            )
    except Exception:
        log_event(
            logger,
            logging.ERROR,
            f"audit event {kind} could not be recorded",
            exc_info=True,
            module="audit",
            operation="audit_record",
            kind=kind,
        )
        return None

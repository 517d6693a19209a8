"""Errors in DRF's shape plus one stable machine ``code``.

DRF answers ``{"detail": "..."}`` or, for invalid input, ``{"field": ["message"]}``.
Both keep that shape here and gain a top-level ``code`` (``not_found``,
``permission_denied``, ``invalid``, ``sync_already_running``, ...) so scripts
branch on a word that never changes instead of parsing English. docs/api.md
lists every code.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db.models import ProtectedError, RestrictedError
from django.http import Http404
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

# Field-level codes that are more useful to a script than the generic "invalid".
SPECIFIC_VALIDATION_CODES = frozenset(
    {
        "invalid_sync_type",
        "unknown_instance",
        "unknown_record",
        "unknown_credential",
        "instance_inactive",
        "no_active_instance",
        "empty",
        "too_many",
        "invalid_datetime",
        "invalid_range",
        "invalid_format",
    }
)


class Conflict(APIException):
    """The request is well formed but the current state forbids it (409)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


class SyncAlreadyRunning(Conflict):
    default_detail = "The instance is already being synced."
    default_code = "sync_already_running"


class SessionNotRunning(Conflict):
    default_detail = "The sync session has already ended."
    default_code = "session_not_running"


class NothingToRetry(Conflict):
    default_detail = "The sync session has no failed instance to retry."
    default_code = "nothing_to_retry"


class AccountNotSeenYet(NotFound):
    """Point in time before WhaleFall first saw the account: nothing is known about it then (404)."""

    default_detail = "The account had not been seen yet at that time."
    default_code = "account_not_seen_yet"


class SyncFailed(APIException):
    """A sync ran and failed; the body carries the seed's result dict under ``result``.

    400 like the seed's single-instance route: a 5xx would tell clients that
    WhaleFall itself broke, when it was the monitored database that did not answer.
    """

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The sync failed."
    default_code = "sync_failed"

    def __init__(self, result: dict[str, Any], *, code: str, status_code: int | None = None) -> None:
        self.result = result
        if status_code is not None:
            self.status_code = status_code
        super().__init__(detail=result.get("message") or self.default_detail, code=code)


def _validation_code(codes: Any) -> str:
    """The first specific code found in a ValidationError's codes, else ``invalid``."""
    stack = [codes]
    while stack:
        item = stack.pop(0)
        if isinstance(item, str):
            if item in SPECIFIC_VALIDATION_CODES:
                return item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return "invalid"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus 409 for protected deletes and a ``code`` on every error body."""
    if isinstance(exc, Http404):
        exc = NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = PermissionDenied()
    elif isinstance(exc, ProtectedError | RestrictedError):
        exc = Conflict(
            "It is still referenced by history or other objects (accounts, change logs, instances); "
            "it cannot be deleted. Deactivate it instead.",
            code="protected",
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ValidationError):
        code = _validation_code(exc.get_codes())
    elif isinstance(exc, APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
    else:
        code = "error"
    data = response.data
    if not isinstance(data, dict):
        data = {"non_field_errors": data}
    data = {**data, "code": code}
    if isinstance(exc, SyncFailed):
        data["result"] = exc.result
    response.data = data
    return response

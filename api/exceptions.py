"""Errors in DRF's shape plus one stable machine ``code``.

DRF answers ``{"detail": "..."}`` or, for invalid input, ``{"field": ["message"]}``.
Both keep that shape here and gain a top-level ``code`` (``not_found``,
``permission_denied``, ``invalid``, ``sync_already_running``, ...) so scripts
branch on a word that never changes instead of parsing English. docs/api.md
lists every code.

Django and service errors that come from the client's input or a dependency, not
from a bug, are mapped here too, so they are never an HTML page or a 500: a body
over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (Django raises RequestDataTooBig when DRF reads
``request.data``, inside the view, so no middleware is needed) is 413 ``too_large``;
a session whose tasks the broker refused (``SyncBrokerError``) is 503
``broker_unavailable`` with ``session_id`` and ``not_queued``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db.models import ProtectedError, RestrictedError
from django.http import Http404
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from sync.services import SyncBrokerError

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


class PayloadTooLarge(APIException):
    """The body is bigger than WhaleFall reads (413): nothing was parsed or done."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


class BrokerUnavailable(APIException):
    """The session was created but the task broker refused its tasks (503).

    503, not 400: the request was right and WhaleFall's own dependency is down.
    The service has already failed the records it could not queue (``error_kind``
    ``broker``) and finalized the session, so the body names the session
    (``session_id``, ``not_queued``) and retry-failed works once the broker is back.
    """

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The task broker is unreachable; the sync session could not be queued."
    default_code = "broker_unavailable"

    def __init__(self, exc: SyncBrokerError) -> None:
        self.session_id = str(exc.session_id)
        self.not_queued = exc.not_queued
        super().__init__(detail=str(exc) or self.default_detail)


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
    """DRF's handler, plus 409 for protected deletes, 413, 503 and a ``code`` on every error body."""
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge(
            f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes; send less at once."
        )
    elif isinstance(exc, SyncBrokerError):
        exc = BrokerUnavailable(exc)
    elif isinstance(exc, Http404):
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
    elif isinstance(exc, BrokerUnavailable):
        data["session_id"] = exc.session_id
        data["not_queued"] = exc.not_queued
    response.data = data
    return response

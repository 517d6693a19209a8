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

Anything else a view raises is a bug: it is logged with its traceback (secrets
scrubbed by config.logging) and answered 500 ``internal`` in the same JSON shape,
with a ``reference`` that is also in the log line, never Django's HTML debug page
(not even with DEBUG on). ``server_error`` (config/urls.py ``handler500``) does the
same for a failure outside DRF (a middleware) on an ``/api/`` path when DEBUG is off.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db.models import ProtectedError, RestrictedError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import server_error as django_server_error
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from config.logging import log_event
from sync.services import SyncBrokerError

logger = logging.getLogger(__name__)

INTERNAL_DETAIL = "Internal server error. It was logged; report it with this reference."

# Field-level codes that are more useful to a script than the generic "invalid".
SPECIFIC_VALIDATION_CODES = frozenset(
    {
        "invalid_sync_type",
        "connection_not_allowed",
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
        "query_too_long",
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


def _validation_code(codes: Any, *, query: bool = False) -> str:
    """The first specific code found in a ValidationError's codes, else ``invalid``.

    ``query``: the errors are about query parameters (a GET, HEAD or OPTIONS has no
    body), so a field's ``max_length`` is a free-text parameter over its bound.
    """
    stack = [codes]
    while stack:
        item = stack.pop(0)
        if isinstance(item, str):
            if item in SPECIFIC_VALIDATION_CODES:
                return item
            if query and item == "max_length":
                return "query_too_long"
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
        return _internal_error(exc, context)
    if isinstance(exc, ValidationError):
        request = context.get("request")
        safe = request is not None and request.method in ("GET", "HEAD", "OPTIONS")
        code = _validation_code(exc.get_codes(), query=safe)
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


def _internal_body(reference: str | None) -> dict[str, str]:
    if reference is None:
        return {"detail": "Internal server error. It was logged.", "code": "internal"}
    return {"detail": INTERNAL_DETAIL, "code": "internal", "reference": reference}


def _internal_error(exc: Exception, context: dict[str, Any]) -> Response:
    """A bug in a view: logged with its traceback, answered 500 ``internal`` (the transaction rolled back).

    Called by DRF inside its ``except`` block, so the current exception is ``exc``.
    """
    reference = uuid.uuid4().hex[:12]
    request = context.get("request")
    view = context.get("view")
    log_event(
        logger,
        logging.ERROR,
        f"internal error answering {getattr(request, 'method', '?')} {getattr(request, 'path', '?')}: "
        f"{type(exc).__name__} (reference {reference})",
        exc_info=True,
        module=__name__,
        operation=type(view).__name__ if view is not None else "api",
        phase="error",
        reference=reference,
    )
    set_rollback()
    return Response(_internal_body(reference), status=status.HTTP_500_INTERNAL_SERVER_ERROR)


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's 500 handler (DEBUG off): JSON ``internal`` under /api/, the usual page elsewhere.

    Django's own ``django.request`` logger has already logged the traceback.
    """
    if request.path.startswith("/api/"):
        return JsonResponse(_internal_body(None), status=500)
    return django_server_error(request)


_STATUS_CODES = {400: "bad_request", 403: "permission_denied", 404: "not_found", 405: "method_not_allowed"}


class JsonApiErrorsMiddleware:
    """Under /api/, an error answered as a page (HTML) becomes the API's JSON error body.

    Why a middleware, first in the list: with DEBUG on, Django answers an unknown URL and an
    exception outside DRF (in a middleware, say) with its HTML technical pages instead of the
    handlers above, and a CSRF or host failure is a page either way; an API client must get JSON
    with a ``code`` whatever the settings. The technical page (which may show settings and local
    variables) is never sent under /api/: only a status and a code.
    """

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not request.path.startswith("/api/") or response.status_code < 400:
            return response
        content_type = response.get("Content-Type", "")
        if "json" in content_type or getattr(response, "streaming", False):
            return response
        if response.status_code >= 500:
            body: dict[str, str] = _internal_body(None)
        else:
            code = _STATUS_CODES.get(response.status_code, "error")
            body = {"detail": response.reason_phrase or "Error.", "code": code}
        replaced = JsonResponse(body, status=response.status_code)
        for header in ("Allow", "Retry-After", "WWW-Authenticate"):
            if header in response:
                replaced[header] = response[header]
        return replaced

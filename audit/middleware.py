"""The request an audit row is written in: its user (after DRF authentication) and its address.

``AuditMiddleware`` is django-auditlog's middleware (the actor and address of model history rows)
with two changes:

- the address is the one sign-in lockout counts (``WHALEFALL_AUDIT_CLIENT_IP_CALLABLE``, by default
  ``api.lockout.client_ip``: ``REMOTE_ADDR`` unless trusted proxies stand in front), not the first
  ``X-Forwarded-For`` entry, which any client can write;
- the request is kept in a context variable for the length of the view, so that the actor of a row
  written in it is read when the row is written (``audit.history``): an API request authenticated by
  a DRF token has no user yet when middleware runs, only once DRF has authenticated it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from contextvars import ContextVar
from functools import cache

from auditlog.middleware import AuditlogMiddleware
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string

_current_request: ContextVar[HttpRequest | None] = ContextVar("whalefall_audit_request", default=None)


def current_request() -> HttpRequest | None:
    """The request being handled in this thread or task, if any (None in commands, workers, shells)."""
    return _current_request.get()


@cache
def _address_callable() -> Callable[[HttpRequest], str | None] | None:
    path = getattr(settings, "WHALEFALL_AUDIT_CLIENT_IP_CALLABLE", None)
    return import_string(path) if path else None


def client_address(request: HttpRequest | None) -> str | None:
    """The client's address as an IP address string, or None (no request, or nothing that parses as one)."""
    if request is None:
        return None
    get = _address_callable()
    raw = get(request) if get is not None else request.META.get("REMOTE_ADDR")
    return valid_address(raw)


def valid_address(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        return str(ipaddress.ip_address(str(raw).strip()))
    except ValueError:
        return None


class AuditMiddleware(AuditlogMiddleware):
    """django-auditlog's middleware with the trusted address and the current request (see the module)."""

    @staticmethod
    def _get_remote_addr(request: HttpRequest) -> str | None:
        if settings.AUDITLOG_DISABLE_REMOTE_ADDR:
            return None
        return client_address(request)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _current_request.set(request)
        try:
            return super().__call__(request)
        finally:
            _current_request.reset(token)

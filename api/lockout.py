"""Sign-in protection: django-axes hooks (README.md, "Sign-in lockout").

django-axes counts failed logins per user+address and refuses that pair for
``AXES_COOLOFF_TIME`` after ``AXES_FAILURE_LIMIT`` failures. This module holds
WhaleFall's side of it:

- ``LockoutBackend``: axes' standalone backend (first in ``AUTHENTICATION_BACKENDS``)
  that lets a request-less ``authenticate()`` through instead of raising;
- ``client_ip``: the client address axes counts, ``REMOTE_ADDR`` unless
  ``WHALEFALL_LOGIN_PROXY_COUNT`` trusted proxies stand in front;
- ``lockout_response``: JSON 429 ``locked_out`` under ``/api/``, axes' text page elsewhere;
- structured log events for every failed login and every lockout;
- audit events (``audit.services.audit_record``) for every login, failed login and lockout,
  with the address axes counts and ``via`` ``admin`` or ``api`` from the path.
"""

from __future__ import annotations

import logging
from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_client_ip_address, get_client_username, get_cool_off, get_lockout_message
from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse

from audit.models import AuditKind
from audit.services import audit_record
from config.logging import log_event

logger = logging.getLogger("whalefall.auth")

MODULE = "auth"


class LockoutBackend(AxesStandaloneBackend):
    """Refuse a locked-out user+address; a call without a request is not checked.

    Why: axes raises ``AxesBackendRequestParameterRequired`` when ``authenticate()``
    gets no request. Every remote sign-in carries one (the admin's login form, DRF's
    authentication classes); a request-less call is in-process code (the test client's
    ``login()``, a shell), which has no address to count and nothing to brute-force.
    Axes' own failure handler skips request-less failures the same way.
    """

    def authenticate(self, request: HttpRequest | None, username: str | None = None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def client_ip(request: HttpRequest) -> str | None:
    """The address a login is counted against (``AXES_CLIENT_IP_CALLABLE``).

    ``REMOTE_ADDR`` by default: a client can write any ``X-Forwarded-For`` it likes,
    so the header is only believed behind ``WHALEFALL_LOGIN_PROXY_COUNT`` trusted
    proxies, and then only the entry the nearest of them wrote: with N proxies, each
    appending the address it received from, the client is the N-th entry from the
    right. A header with fewer entries than proxies (a request that bypassed them)
    falls back to ``REMOTE_ADDR``.
    """
    remote = request.META.get("REMOTE_ADDR")
    count = getattr(settings, "WHALEFALL_LOGIN_PROXY_COUNT", 0)
    if count <= 0:
        return remote
    hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
    if len(hops) < count:
        return remote
    return hops[-count]


def is_api_request(request: HttpRequest) -> bool:
    return request.path_info.startswith("/api/")


def lockout_response(request: HttpRequest, original_response: HttpResponse | None, credentials: Any) -> HttpResponse:
    """``AXES_LOCKOUT_CALLABLE``: what a locked-out user+address gets instead of the login result."""
    status = settings.AXES_HTTP_RESPONSE_CODE
    message = str(get_lockout_message())
    if is_api_request(request):
        return JsonResponse({"detail": message, "code": "locked_out"}, status=status)
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


def _ip(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    return getattr(request, "axes_ip_address", None) or get_client_ip_address(request)


@receiver(user_login_failed, dispatch_uid="whalefall.lockout.login_failed")
def log_login_failed(sender, credentials: dict, request: HttpRequest | None = None, **kwargs: Any) -> None:
    """Every failed sign-in (wrong password, unknown user, or refused because locked out)."""
    if request is None:
        return
    log_event(
        logger,
        logging.WARNING,
        "login failed",
        module=MODULE,
        operation="login_failed",
        username=get_client_username(request, credentials),
        ip=_ip(request),
        path=request.path_info,
        locked_out=bool(getattr(request, "axes_locked_out", False)),
        failures=getattr(request, "axes_failures_since_start", None),
    )
    username = get_client_username(request, credentials)
    audit_record(
        AuditKind.LOGIN_FAILED,
        actor=_known_user(username),
        username=username or "",
        request=request,
        remote_addr=_ip(request),
        details={
            "path": request.path_info,
            "locked_out": bool(getattr(request, "axes_locked_out", False)),
            "failures": getattr(request, "axes_failures_since_start", None),
        },
    )


def _known_user(username: str | None) -> Any:
    """The user a failed login named, when there is one (its rows then filter by actor too)."""
    if not username:
        return None
    model = get_user_model()
    try:
        return model.objects.filter(**{model.USERNAME_FIELD: str(username)[:150]}).first()
    except Exception:  # a name no database can compare (NUL on PostgreSQL): record the text alone
        return None


@receiver(user_logged_in, dispatch_uid="whalefall.lockout.logged_in")
def audit_logged_in(sender, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """Every successful sign-in that came with a request (the admin's login form, a later password endpoint)."""
    if request is None or not request.path_info:
        return  # an in-process login (the test client's login/force_login, a shell): no request came in
    audit_record(
        AuditKind.LOGIN,
        actor=user,
        request=request,
        remote_addr=_ip(request),
        details={"path": request.path_info},
    )


@receiver(user_locked_out, dispatch_uid="whalefall.lockout.locked_out")
def log_locked_out(sender, request: HttpRequest, username: str | None, ip_address: str | None, **kwargs: Any) -> None:
    """The user+address reached the failure limit (and again for each attempt while locked)."""
    cool_off = get_cool_off(request)
    log_event(
        logger,
        logging.WARNING,
        "login locked out",
        module=MODULE,
        operation="login_locked_out",
        username=username,
        ip=ip_address,
        path=request.path_info if request is not None else None,
        failure_limit=settings.AXES_FAILURE_LIMIT,
        cooloff_seconds=int(cool_off.total_seconds()) if cool_off else None,
    )
    audit_record(
        AuditKind.LOCKED_OUT,
        actor=_known_user(username),
        username=username or "",
        request=request,
        remote_addr=ip_address,
        details={
            "path": request.path_info if request is not None else None,
            "failure_limit": settings.AXES_FAILURE_LIMIT,
            "cooloff_seconds": int(cool_off.total_seconds()) if cool_off else None,
        },
    )

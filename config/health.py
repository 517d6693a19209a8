"""``GET /healthz``: is this web process serving, and does WhaleFall's own database answer?

For the compose healthcheck (``deploy/healthcheck.py``), load balancers and uptime monitors: no
authentication, no session, no cookie, never cached. The body is one of two fixed JSON objects, so it
never tells a caller anything but these words:

- 200 ``{"status": "ok", "database": "ok"}``: a ``SELECT 1`` on the app database answered;
- 503 ``{"status": "error", "database": "error"}``: it failed. Why (the exception's class and first line,
  scrubbed like every log line) goes to the log, ``operation=healthz``, never into the response.

It sits in ``config``, the bottom layer, because it needs nothing but Django's connection: a probe must
not depend on any feature app. It writes nothing, so neither the audit trail nor the metrics (read from
the database at scrape time) see it; only gunicorn's access log has a line per probe.
"""

from __future__ import annotations

import logging

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from config.logging import log_event

logger = logging.getLogger("whalefall.health")

OK = {"status": "ok", "database": "ok"}
DATABASE_DOWN = {"status": "error", "database": "error"}


def database_answers() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure is "down": a probe answers, it never raises
        first_line = (str(exc).strip().splitlines() or [""])[0][:200]
        log_event(
            logger,
            logging.ERROR,
            f"healthz: the app database did not answer ({type(exc).__name__}: {first_line})",
            module="health",
            operation="healthz",
        )
        return False
    return True


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    if database_answers():
        return JsonResponse(OK)
    return JsonResponse(DATABASE_DOWN, status=503)

"""Docker healthcheck of the `web` service: is gunicorn answering, and does WhaleFall's database answer?

    python deploy/healthcheck.py [URL]     (default http://127.0.0.1:8000/healthz)

Exit 0 when the page answers 200, 1 otherwise (one line on stderr says why). /healthz (config/health.py)
answers 200 ``{"status": "ok", "database": "ok"}`` only when a query on the app database succeeds, 503 with
``"database": "error"`` when it fails; the line printed repeats the ``database`` word of the body.

The request is sent the way a browser behind the TLS proxy would send it, so it passes whatever the
container is configured with:
- Host is the first DJANGO_ALLOWED_HOSTS entry (``*`` -> ``localhost``, ``.example.com`` -> ``example.com``):
  Django answers 400 to a host it does not serve, which is why asking for 127.0.0.1 never got healthy;
- X-Forwarded-Proto: https, the header SECURE_PROXY_SSL_HEADER trusts, so DJANGO_SECURE_SSL_REDIRECT=true
  does not answer 301 to a page given as URL (/healthz itself is exempt from the redirect).

Standard library only: no Django import, so each probe costs a few milliseconds.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
from urllib.parse import urlsplit

DEFAULT_URL = "http://127.0.0.1:8000/healthz"
TIMEOUT_SECONDS = 5


def served_host(allowed_hosts: str) -> str:
    """The Host header to send: the first name in DJANGO_ALLOWED_HOSTS (comma-separated)."""
    for entry in (h.strip() for h in allowed_hosts.split(",")):
        if entry == "*":
            return "localhost"
        if entry:
            return entry.lstrip(".")
    return "localhost"


def probe(url: str, allowed_hosts: str) -> tuple[bool, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return False, f"not an http:// URL: {url}"
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=TIMEOUT_SECONDS)
    try:
        conn.request(
            "GET",
            parts.path or "/",
            headers={"Host": served_host(allowed_hosts), "X-Forwarded-Proto": "https", "Connection": "close"},
        )
        response = conn.getresponse()
        body = response.read(4096)
    except OSError as exc:
        return False, f"{url}: {type(exc).__name__}: {exc}"
    finally:
        conn.close()
    line = f"{url}: HTTP {response.status} {response.reason}{database_word(body)}"
    return response.status == 200, line


def database_word(body: bytes) -> str:
    """`` (database: ok)`` from a /healthz body; empty for any other page."""
    try:
        database = json.loads(body).get("database")
    except (ValueError, AttributeError):
        return ""
    return f" (database: {database})" if isinstance(database, str) else ""


def main(argv: list[str]) -> int:
    url = argv[1] if len(argv) > 1 else DEFAULT_URL
    ok, message = probe(url, os.environ.get("DJANGO_ALLOWED_HOSTS", ""))
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

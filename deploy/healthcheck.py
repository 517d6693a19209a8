"""Docker healthcheck of the `web` service: is gunicorn answering WhaleFall pages?

    python deploy/healthcheck.py [URL]     (default http://127.0.0.1:8000/admin/login/)

Exit 0 when the page answers 200, 1 otherwise (one line on stderr says why).

The request is sent the way a browser behind the TLS proxy would send it, so it passes whatever the
container is configured with:
- Host is the first DJANGO_ALLOWED_HOSTS entry (``*`` -> ``localhost``, ``.example.com`` -> ``example.com``):
  Django answers 400 to a host it does not serve, which is why asking for 127.0.0.1 never got healthy;
- X-Forwarded-Proto: https, the header SECURE_PROXY_SSL_HEADER trusts, so DJANGO_SECURE_SSL_REDIRECT=true
  does not answer 301.

Standard library only: no Django import, so each probe costs a few milliseconds.
"""

from __future__ import annotations

import http.client
import os
import sys
from urllib.parse import urlsplit

DEFAULT_URL = "http://127.0.0.1:8000/admin/login/"
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
        response.read()
    except OSError as exc:
        return False, f"{url}: {type(exc).__name__}: {exc}"
    finally:
        conn.close()
    if response.status != 200:
        return False, f"{url}: HTTP {response.status} {response.reason}"
    return True, f"{url}: HTTP 200"


def main(argv: list[str]) -> int:
    url = argv[1] if len(argv) > 1 else DEFAULT_URL
    ok, message = probe(url, os.environ.get("DJANGO_ALLOWED_HOSTS", ""))
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

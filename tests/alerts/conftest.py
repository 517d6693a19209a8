"""Alert test fixtures: a real HTTP receiver, django-q2 in sync mode, and a chosen-catalog server.

The receiver is a threading http.server on 127.0.0.1 (ephemeral port) that records
every request and answers with the status codes the test queues (200 once the queue
is empty). The only stand-in elsewhere is the remote database: a registered adapter
that returns the catalog the test chose (the registry is the boundary new database
families plug into); sync, findings, alerts and django-q2's task runner are real.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from accountsync.adapters.base import AccountRecord, Privilege


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes = b""


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0  # seconds the receiver waits before answering

    def bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            time.sleep(state.delay)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            with lock:
                state.requests.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(raw or b"{}"), raw)
                )
                status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok" if status < 300 else b"receiver failure")

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/whalefall?token=hook-token-123"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def q_sync(monkeypatch):
    """django-q2 runs queued tasks in-process (its `sync` option); Conf is read at import, so patch it."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)
    return Conf


@pytest.fixture
def server(chosen_server):
    return chosen_server


def account(
    name: str,
    *,
    superuser: bool = False,
    grant_admin: bool = False,
    select_on: str | None = None,
    host: str = "localhost",
    caps: tuple[str, ...] = (),
) -> AccountRecord:
    """A MySQL-like account; `superuser` gives ALL PRIVILEGES globally, `grant_admin` a grantable privilege.

    `caps` adds capabilities an adapter derives from attributes (NO_PASSWORD, WILDCARD_HOST...).
    """
    privileges = []
    capabilities = set(caps)
    if superuser:
        privileges.append(Privilege("global", "ALL PRIVILEGES", grantable=grant_admin))
        capabilities.add("SUPERUSER")
    if select_on:
        privileges.append(Privilege(f"database:{select_on}", "SELECT", grantable=grant_admin and not superuser))
    if grant_admin:
        capabilities.add("GRANT_ADMIN")
    return AccountRecord(
        identity=f"'{name}'@'{host}'",
        username=name,
        host=host,
        privileges=privileges,
        capabilities=capabilities,
        attributes={"auth_plugin": "mysql_native_password"},
    )

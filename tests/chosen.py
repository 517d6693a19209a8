"""The one stand-in for a remote database in engine-level tests: an adapter answering a chosen catalog.

Why a registered adapter: the adapter registry is the boundary a new database family
plugs into, so everything above it (engine, leases, sessions, hooks, findings, alerts)
runs for real. Tests set ``accounts`` (and ``error`` to fail like a dead server);
``digests = True`` gives equal catalogs equal source digests and, like a real adapter, answers
``unchanged`` when the digest is the one the last applied sync stored. ``delay`` makes a
fetch take that long (a slow server), ``gate`` holds every fetch until the test sets it,
and ``fetches`` records each fetch's (start, end) wall-clock times, so tests can prove
two fetches of one instance never overlapped.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import ClassVar

import pytest

from accountsync.adapters.base import ADAPTERS, AccountRecord, Catalog, ConnectionTarget, CoverageGap


class ChosenCatalogAdapter:
    db_type = "mysql"
    accounts: ClassVar[list[AccountRecord]] = []
    coverage: ClassVar[list[CoverageGap]] = []  # what the fetch could not read
    error: ClassVar[Exception | None] = None
    digests: ClassVar[bool] = False
    delay: ClassVar[float] = 0.0
    gate: ClassVar[threading.Event | None] = None
    fetches: ClassVar[list[tuple[float, float]]] = []

    def test_connection(self, target: ConnectionTarget) -> str:
        return "MariaDB 10.11.6"

    def fetch(self, target: ConnectionTarget) -> Catalog:
        started = time.time()
        try:
            return self._answer(target)
        finally:
            if self.delay:
                time.sleep(self.delay)
            if self.gate is not None:  # a fetch that lasts until the test lets it end
                self.gate.wait(60)
            self.fetches.append((started, time.time()))

    def _answer(self, target: ConnectionTarget) -> Catalog:
        if self.error is not None:
            raise self.error
        digest = ""
        if self.digests:  # what a real adapter's rows_digest is: 64 hex digits over what was read
            digest = hashlib.sha256(repr(([a.snapshot() for a in self.accounts], self.coverage)).encode()).hexdigest()
        if digest and digest == target.known_catalog_digest:  # as a real adapter: nothing to build
            return Catalog(accounts=[], server_version="MariaDB 10.11.6", source_digest=digest, unchanged=True)
        return Catalog(
            accounts=list(self.accounts),
            server_version="MariaDB 10.11.6",
            source_digest=digest,
            coverage=list(self.coverage),
        )


@pytest.fixture
def chosen_server(monkeypatch: pytest.MonkeyPatch) -> type[ChosenCatalogAdapter]:
    monkeypatch.setitem(ADAPTERS, "mysql", f"{__name__}.ChosenCatalogAdapter")
    monkeypatch.setattr(ChosenCatalogAdapter, "accounts", [])
    monkeypatch.setattr(ChosenCatalogAdapter, "coverage", [])
    monkeypatch.setattr(ChosenCatalogAdapter, "error", None)
    monkeypatch.setattr(ChosenCatalogAdapter, "digests", False)
    monkeypatch.setattr(ChosenCatalogAdapter, "delay", 0.0)
    monkeypatch.setattr(ChosenCatalogAdapter, "fetches", [])
    monkeypatch.setattr(ChosenCatalogAdapter, "gate", None)
    return ChosenCatalogAdapter

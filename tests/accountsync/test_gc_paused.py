"""gc_paused: the collector is off inside a bulk step and back to its previous state after it."""

from __future__ import annotations

import gc

import pytest

from accountsync.adapters import mysql
from accountsync.adapters.base import ConnectionFailed, ConnectionTarget, gc_paused


def test_paused_inside_restored_after_also_on_error() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ZeroDivisionError), gc_paused():
        1 / 0  # noqa: B018
    assert gc.isenabled()


def test_a_collector_turned_off_by_the_caller_stays_off() -> None:
    gc.disable()
    try:
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_adapter_fetch_runs_paused_and_restores_on_failure() -> None:
    seen: list[bool] = []

    class Probe(mysql.MySQLAdapter):
        def _connect(self, target):  # the first thing fetch does
            seen.append(gc.isenabled())
            raise ConnectionFailed("closed port")

    target = ConnectionTarget(name="x", db_type="mysql", host="127.0.0.1", port=1, username="u", password="")
    with pytest.raises(ConnectionFailed):
        Probe().fetch(target)
    assert seen == [False]
    assert gc.isenabled()

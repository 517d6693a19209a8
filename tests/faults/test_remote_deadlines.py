"""Client-side deadlines against the live PostgreSQL and MariaDB, through a proxy that cuts or stalls.

Why through a proxy: a server that stops answering mid-result (or a connection cut under a
statement) cannot be provoked on the server itself. `FaultProxy` forwards the real server's
bytes and, once the adapter has connected and logged in, lets `N_BYTES` more of the answers
through, then cuts or stalls. The catalog is made big (several hundred uniquely named roles or
users, dropped afterwards) so that point lies inside the account list's result, not after it.

What is asserted: a stall ends as `timeout` naming the query timeout, within a loose bound
(4 x the statement deadline: no tight timing); a cut ends as `connection` "lost the
connection", never "cannot connect". pytest-timeout guards against the old behaviour, a hang.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from psycopg import sql

import accountsync.adapters.postgresql as pg_adapter
from accountsync.adapters.base import (
    AdapterError,
    ConnectionFailed,
    ConnectionTarget,
    TimeoutFailed,
    Watchdog,
    query_deadline,
)
from accountsync.adapters.mysql import MySQLAdapter
from accountsync.adapters.postgresql import PostgreSQLAdapter
from tests.faults.faultproxy import ClosingServer, FaultProxy
from tests.livedb import MARIADB, POSTGRES

pytestmark = [pytest.mark.live, pytest.mark.timeout(90)]

ACCOUNTS = 400  # rows enough for the account list to be tens of kB
N_BYTES = 4096  # answer bytes let through after login: past the first (version) answer, inside the account list


@pytest.fixture
def fault_prefix() -> str:
    return f"wf_fault_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def many_pg_roles(postgres_admin: Any, fault_prefix: str) -> Iterator[list[str]]:
    names = [f"{fault_prefix}_{i:03d}" for i in range(ACCOUNTS)]
    create = sql.SQL("; ").join(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(n)) for n in names)
    postgres_admin.execute(create)
    try:
        yield names
    finally:
        postgres_admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.SQL(", ").join(map(sql.Identifier, names))))


@pytest.fixture
def many_mariadb_users(mariadb_admin: Any, fault_prefix: str) -> Iterator[list[str]]:
    names = [f"{fault_prefix}_{i:03d}" for i in range(ACCOUNTS)]
    users = ", ".join(f"'{n}'@'%'" for n in names)
    cur = mariadb_admin.cursor()
    cur.execute(f"CREATE USER {users}")
    try:
        yield names
    finally:
        cur.execute(f"DROP USER IF EXISTS {users}")


def pg_target(port: int, **kw: Any) -> ConnectionTarget:
    values: dict[str, Any] = {
        "name": "fault-postgres",
        "db_type": "postgresql",
        "host": "127.0.0.1",
        "port": port,
        "username": "postgres",
        "password": "",
        "connect_timeout": 1.0,
        "query_timeout": 1.0,
        "options": {"databases": ["postgres"]},  # the maintenance database only: one connection
    }
    values.update(kw)
    return ConnectionTarget(**values)


def mariadb_target(port: int, **kw: Any) -> ConnectionTarget:
    values: dict[str, Any] = {
        "name": "fault-mariadb",
        "db_type": "mysql",
        "host": "127.0.0.1",
        "port": port,
        "username": "root",
        "password": "",
        "connect_timeout": 1.0,
        "query_timeout": 1.0,
    }
    values.update(kw)
    return ConnectionTarget(**values)


def fault_after_login(monkeypatch: pytest.MonkeyPatch, owner: Any, attr: str, arm: Callable[[], None]) -> None:
    """Wrap the adapter's connect (`owner.attr`) so the fault is armed right after login, before any catalog read."""
    real = getattr(owner, attr)

    def connected(*args: Any, **kwargs: Any) -> Any:
        conn = real(*args, **kwargs)
        arm()
        return conn

    monkeypatch.setattr(owner, attr, connected)


def timed_failure(fetch: Callable[[], Any]) -> tuple[AdapterError, float]:
    started = time.monotonic()
    with pytest.raises(AdapterError) as info:
        fetch()
    return info.value, time.monotonic() - started


def measured(proxy: FaultProxy, connect: Callable[[], Any], fetch: Callable[[], Any]) -> tuple[int, int, Any]:
    """Through the proxy, passing everything: answer bytes of a login alone, of one fetch, and its result."""
    connect().close()
    login = proxy.connections[-1].bytes_down
    result = fetch()
    return login, proxy.connections[-1].bytes_down, result


# --- PostgreSQL ---------------------------------------------------------------------------


def test_pg_fault_point_lies_inside_the_account_list(many_pg_roles: list[str]) -> None:
    with FaultProxy("127.0.0.1", POSTGRES["port"]) as proxy:
        target = pg_target(proxy.port)
        login, total, catalog = measured(
            proxy, lambda: pg_adapter._connect(target, "postgres"), lambda: PostgreSQLAdapter().fetch(target)
        )
    assert {a.identity for a in catalog.accounts} >= set(many_pg_roles)
    assert total - login > 10 * N_BYTES, "the answers must go on well past the fault point"


def test_pg_stall_mid_result_is_a_timeout_within_the_deadline(
    many_pg_roles: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with FaultProxy("127.0.0.1", POSTGRES["port"]) as proxy:
        target = pg_target(proxy.port)
        fault_after_login(monkeypatch, pg_adapter, "_connect", lambda: proxy.stall_after(N_BYTES))
        error, elapsed = timed_failure(lambda: PostgreSQLAdapter().fetch(target))
        assert any(c.stalled for c in proxy.connections), "the proxy never reached the stall point"
    assert isinstance(error, TimeoutFailed) and error.kind == "timeout"
    assert "no answer from" in str(error) and "within 1s" in str(error), str(error)
    assert elapsed < 4 * query_deadline(target), elapsed


def test_pg_cut_mid_result_is_a_lost_connection(many_pg_roles: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    with FaultProxy("127.0.0.1", POSTGRES["port"]) as proxy:
        target = pg_target(proxy.port)
        fault_after_login(monkeypatch, pg_adapter, "_connect", lambda: proxy.cut_after(N_BYTES))
        error, elapsed = timed_failure(lambda: PostgreSQLAdapter().fetch(target))
    assert isinstance(error, ConnectionFailed) and error.kind == "connection"
    message = str(error)
    assert "lost the connection to 127.0.0.1:" in message and "cannot connect" not in message, message
    assert message.startswith("fault-postgres: ")
    assert elapsed < query_deadline(target), "a cut is reported at once, not at a deadline"


def test_pg_test_connection_stalled_after_login_is_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    with FaultProxy("127.0.0.1", POSTGRES["port"]) as proxy:
        target = pg_target(proxy.port)
        fault_after_login(monkeypatch, pg_adapter, "_connect", lambda: proxy.stall_after(0))
        error, elapsed = timed_failure(lambda: PostgreSQLAdapter().test_connection(target))
    assert isinstance(error, TimeoutFailed) and "within 1s" in str(error)
    assert elapsed < 4 * query_deadline(target), elapsed


def test_pg_stall_during_login_is_a_connect_timeout(postgres_admin: Any) -> None:
    with FaultProxy("127.0.0.1", POSTGRES["port"]) as proxy:
        proxy.stall_after(0)  # the server's first byte never arrives
        error, elapsed = timed_failure(lambda: PostgreSQLAdapter().test_connection(pg_target(proxy.port)))
    assert isinstance(error, TimeoutFailed) and "did not answer within 1s" in str(error), str(error)
    assert elapsed < 4, elapsed


# --- MariaDB ------------------------------------------------------------------------------


def test_mariadb_fault_point_lies_inside_the_account_list(many_mariadb_users: list[str]) -> None:
    with FaultProxy("127.0.0.1", MARIADB["port"]) as proxy:
        target = mariadb_target(proxy.port)
        login, total, catalog = measured(
            proxy, lambda: MySQLAdapter()._connect(target), lambda: MySQLAdapter().fetch(target)
        )
    identities = {a.identity for a in catalog.accounts}
    assert all(f"'{n}'@'%'" in identities for n in many_mariadb_users)
    assert total - login > 10 * N_BYTES, "the answers must go on well past the fault point"


def test_mariadb_stall_mid_result_is_a_timeout_within_the_deadline(
    many_mariadb_users: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with FaultProxy("127.0.0.1", MARIADB["port"]) as proxy:
        target = mariadb_target(proxy.port)
        fault_after_login(monkeypatch, MySQLAdapter, "_connect", lambda: proxy.stall_after(N_BYTES))
        error, elapsed = timed_failure(lambda: MySQLAdapter().fetch(target))
        assert any(c.stalled for c in proxy.connections), "the proxy never reached the stall point"
    assert isinstance(error, TimeoutFailed) and error.kind == "timeout"
    assert "no answer from" in str(error) and "within 1s" in str(error), str(error)
    assert elapsed < 4 * query_deadline(target), elapsed


def test_mariadb_cut_mid_result_is_a_lost_connection_not_a_timeout(
    many_mariadb_users: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with FaultProxy("127.0.0.1", MARIADB["port"]) as proxy:
        target = mariadb_target(proxy.port, query_timeout=10.0)  # far from the cut: nothing may "time out"
        fault_after_login(monkeypatch, MySQLAdapter, "_connect", lambda: proxy.cut_after(N_BYTES))
        error, elapsed = timed_failure(lambda: MySQLAdapter().fetch(target))
    assert isinstance(error, ConnectionFailed) and error.kind == "connection"
    message = str(error)
    assert "lost the connection to 127.0.0.1:" in message and "while trying to read the grant tables" in message
    assert "no answer" not in message and "cannot connect" not in message, message
    assert elapsed < 5, elapsed


def test_mariadb_silent_before_the_greeting_is_a_connect_timeout(mariadb_admin: Any) -> None:
    with FaultProxy("127.0.0.1", MARIADB["port"]) as proxy:
        proxy.stall_after(0)  # TCP connects, the greeting never arrives
        error, elapsed = timed_failure(lambda: MySQLAdapter().test_connection(mariadb_target(proxy.port)))
    assert isinstance(error, TimeoutFailed), str(error)
    assert "within 1s while trying to connect" in str(error)
    assert elapsed < 4, elapsed


def test_mariadb_closed_before_the_greeting_is_a_connection_error() -> None:
    with ClosingServer() as server:
        error, elapsed = timed_failure(lambda: MySQLAdapter().test_connection(mariadb_target(server.port)))
    assert isinstance(error, ConnectionFailed), str(error)
    assert "cannot connect to 127.0.0.1:" in str(error)
    assert elapsed < 1, elapsed


# --- the proxy and the watchdog themselves --------------------------------------------------


def test_proxy_switches_modes_at_runtime(postgres_admin: Any) -> None:
    import psycopg

    with FaultProxy("127.0.0.1", POSTGRES["port"]) as proxy:
        conn = psycopg.connect(host="127.0.0.1", port=proxy.port, user="postgres", dbname="postgres", autocommit=True)
        try:
            proxy.stall_after(0)
            proxy.pass_through()  # nothing was held yet: the next query just works
            assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
            proxy.cut_after(0)
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1").fetchone()
        finally:
            conn.close()
        assert proxy.connections[0].closed.is_set()


def test_watchdog_fires_only_past_its_deadline_and_waits_for_its_interrupt() -> None:
    calls: list[str] = []
    with Watchdog(5.0, lambda dog: calls.append("expired")) as quick:
        pass
    assert not quick.fired and calls == []

    interrupted = threading.Event()

    def interrupt(dog: Watchdog) -> None:
        calls.append("still running" if not dog.finished(within=0.01) else "ended")
        time.sleep(0.3)  # longer than the block: leaving it must wait for this
        interrupted.set()

    with Watchdog(0.05, interrupt) as slow:
        assert slow.finished(within=0) is False
        time.sleep(0.15)
    assert slow.fired and calls == ["still running"]
    assert interrupted.is_set(), "leaving the block waits for a running interrupt"


def test_statement_deadline_is_query_timeout_plus_a_bounded_grace() -> None:
    base = pg_target(5432)
    assert query_deadline(base) == 2.0
    assert query_deadline(replace(base, query_timeout=300.0)) == 330.0
    assert query_deadline(replace(base, query_timeout=3600.0)) == 3630.0

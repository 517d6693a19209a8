"""Client-side deadlines against the live PostgreSQL and MariaDB, through a proxy that cuts or stalls.

Why through a proxy: a server that stops answering mid-result (or a connection cut under a
statement) cannot be provoked on the server itself. `FaultProxy` forwards the real server's
bytes and, once the adapter has connected and logged in, lets `N_BYTES` more of the answers
through, then cuts or stalls. The catalog is made big (several hundred uniquely named roles or
users, dropped afterwards) so that point lies inside the account list's result, not after it.

What is asserted, without any clock (the machines are shared and noisy): a stall ends as
`timeout` naming the query timeout and the limit that ended it (the client's statement
deadline, "the client interrupted/closed ...", or the driver's own read or connect timeout in
its words), and the client lets go of the stalled connection (`wait_hung_up`); a cut ends as
`connection` "lost the connection", never "cannot connect" and never a timeout, with the
deadlines set far beyond the test's timeout, so a cut noticed only at a deadline fails the
test. The old behaviour, a hang, is failed by pytest-timeout (90 s): the only limit on time.
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

import accountsync.adapters.mysql as mysql_adapter
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
from tests.faults.faultproxy import ClosingServer, FaultProxy, wait_hung_up
from tests.livedb import MARIADB, POSTGRES

pytestmark = [pytest.mark.live, pytest.mark.timeout(90)]

ACCOUNTS = 400  # rows enough for the account list to be tens of kB
N_BYTES = 4096  # answer bytes let through after login: past the first (version) answer, inside the account list
LONG = 120.0  # a query or connect timeout past the 90 s pytest-timeout: a failure reported only at it fails the test


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


def failure(fetch: Callable[[], Any]) -> AdapterError:
    with pytest.raises(AdapterError) as info:
        fetch()
    return info.value


def stalled_connection(proxy: FaultProxy) -> Any:
    """The one proxied connection that reached its stall point (a cancel request may have opened another)."""
    stalled = [c for c in proxy.connections if c.stalled and c.bytes_down > 0]
    assert len(stalled) == 1, "the proxy never reached the stall point"
    return stalled[0]


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
        error = failure(lambda: PostgreSQLAdapter().fetch(target))
        wait_hung_up(stalled_connection(proxy).client)  # the client let go of the stalled connection
    assert isinstance(error, TimeoutFailed) and error.kind == "timeout"
    assert "no answer from" in str(error) and "within 1s" in str(error), str(error)
    # what ended the wait: the statement's client-side deadline (nothing else can: the proxy's kernel
    # acknowledges every byte, so neither tcp_user_timeout nor keepalives fire, and statement_timeout
    # is the server's, which never hears of the stall)
    assert "the client interrupted the statement" in str(error), str(error)


def test_pg_cut_mid_result_is_a_lost_connection(many_pg_roles: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    with FaultProxy("127.0.0.1", POSTGRES["port"]) as proxy:
        # a cut is reported at once, not at a deadline: the statement deadline (query_deadline: 132 s) lies
        # past the test's timeout, so only a failure reported at once lets the test return at all
        target = pg_target(proxy.port, query_timeout=LONG)
        fault_after_login(monkeypatch, pg_adapter, "_connect", lambda: proxy.cut_after(N_BYTES))
        error = failure(lambda: PostgreSQLAdapter().fetch(target))
        assert any(c.closed.is_set() and c.bytes_down > 0 for c in proxy.connections), "the proxy never cut"
    assert isinstance(error, ConnectionFailed) and error.kind == "connection"
    message = str(error)
    assert "lost the connection to 127.0.0.1:" in message and "cannot connect" not in message, message
    assert "no answer" not in message and "interrupted" not in message, "no deadline fired: " + message
    assert message.startswith("fault-postgres: ")


def test_pg_test_connection_stalled_after_login_is_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    with FaultProxy("127.0.0.1", POSTGRES["port"]) as proxy:
        target = pg_target(proxy.port)
        fault_after_login(monkeypatch, pg_adapter, "_connect", lambda: proxy.stall_after(0))
        error = failure(lambda: PostgreSQLAdapter().test_connection(target))
        wait_hung_up(proxy.connections[0].client)  # the client let go of the stalled connection
    assert isinstance(error, TimeoutFailed) and "within 1s" in str(error)
    # what ended the wait: the statement's client-side deadline (the version query's answer never came)
    assert "while trying to read the catalog" in str(error), str(error)
    assert "the client interrupted the statement" in str(error), str(error)


def test_pg_stall_during_login_is_a_connect_timeout(postgres_admin: Any) -> None:
    with FaultProxy("127.0.0.1", POSTGRES["port"]) as proxy:
        proxy.stall_after(0)  # the server's first byte never arrives
        error = failure(lambda: PostgreSQLAdapter().test_connection(pg_target(proxy.port)))
        assert proxy.connections and all(c.bytes_down == 0 for c in proxy.connections), "no server byte got through"
    assert isinstance(error, TimeoutFailed) and "did not answer within 1s" in str(error), str(error)
    assert "no answer from" not in str(error), "the connect timeout, not a statement's: " + str(error)
    # what ended the wait: psycopg's connect_timeout, in the driver's words the adapter keeps
    assert getattr(error, "server_words", None) == "connection timeout expired", vars(error)


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
        error = failure(lambda: MySQLAdapter().fetch(target))
        wait_hung_up(stalled_connection(proxy).client)  # the client let go of the stalled connection
    assert isinstance(error, TimeoutFailed) and error.kind == "timeout"
    assert "no answer from" in str(error) and "within 1s" in str(error), str(error)
    # what ended the wait: the driver's read_timeout (1 s of silence) or, should the answer's first bytes
    # have come late, the statement's client-side deadline (2 s from its start; the message then adds "the
    # client closed the connection"). Either is a read that ran out, so the driver's "Lost connection" is
    # reported as no answer, not as a lost connection; the next test pins the client-side deadline alone.
    message = str(error)
    assert "(gave up after" in message and "Lost connection to server during query" in message, message
    assert "lost the connection" not in message, message


def test_mariadb_stall_past_the_read_timeout_is_ended_by_the_statement_deadline(
    many_mariadb_users: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the driver's read_timeout out of the way (LONG), the statement's client-side deadline alone ends a stall."""
    monkeypatch.setattr(mysql_adapter, "read_timeout", lambda target: int(LONG))
    with FaultProxy("127.0.0.1", MARIADB["port"]) as proxy:
        target = mariadb_target(proxy.port)
        fault_after_login(monkeypatch, MySQLAdapter, "_connect", lambda: proxy.stall_after(N_BYTES))
        error = failure(lambda: MySQLAdapter().fetch(target))
        wait_hung_up(stalled_connection(proxy).client)  # the watchdog shut the socket down
    assert isinstance(error, TimeoutFailed) and error.kind == "timeout"
    message = str(error)
    assert "no answer from" in message and "within 1s while trying to read the grant tables" in message, message
    assert "the client closed the connection" in message, message


def test_mariadb_cut_mid_result_is_a_lost_connection_not_a_timeout(
    many_mariadb_users: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with FaultProxy("127.0.0.1", MARIADB["port"]) as proxy:
        # a cut is reported at once, not at a deadline: read_timeout (120 s) and the statement deadline (132 s)
        # lie past the test's timeout, so only a failure reported at once lets the test return at all
        target = mariadb_target(proxy.port, query_timeout=LONG)
        fault_after_login(monkeypatch, MySQLAdapter, "_connect", lambda: proxy.cut_after(N_BYTES))
        error = failure(lambda: MySQLAdapter().fetch(target))
        assert any(c.closed.is_set() and c.bytes_down > 0 for c in proxy.connections), "the proxy never cut"
    assert isinstance(error, ConnectionFailed) and error.kind == "connection"
    message = str(error)
    assert "lost the connection to 127.0.0.1:" in message and "while trying to read the grant tables" in message
    assert "no answer" not in message and "cannot connect" not in message, message


def test_mariadb_silent_before_the_greeting_is_a_connect_timeout(mariadb_admin: Any) -> None:
    with FaultProxy("127.0.0.1", MARIADB["port"]) as proxy:
        proxy.stall_after(0)  # TCP connects, the greeting never arrives
        error = failure(lambda: MySQLAdapter().test_connection(mariadb_target(proxy.port)))
        assert proxy.connections and all(c.bytes_down == 0 for c in proxy.connections), "no server byte got through"
        for conn in proxy.connections:
            wait_hung_up(conn.client)  # the driver gave up and closed its connection
    assert isinstance(error, TimeoutFailed), str(error)
    assert "within 1s while trying to connect" in str(error)
    # what ended the wait: the driver's connect_timeout on the greeting's read, in its words (ETIMEDOUT)
    assert "reading initial communication packet', system error: 110" in str(error), str(error)


def test_mariadb_closed_before_the_greeting_is_a_connection_error() -> None:
    with ClosingServer() as server:
        # a connect timeout past the test's timeout: returning at all shows the close was reported at once
        error = failure(lambda: MySQLAdapter().test_connection(mariadb_target(server.port, connect_timeout=LONG)))
        assert server.count == 1
    assert isinstance(error, ConnectionFailed), str(error)
    assert "cannot connect to 127.0.0.1:" in str(error)


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
    with Watchdog(LONG, lambda dog: calls.append("expired")) as quick:
        pass  # a block that ends before its deadline
    assert not quick.fired and calls == []

    started = threading.Event()
    leaving = threading.Event()

    def interrupt(dog: Watchdog) -> None:
        calls.append("still running" if not dog.finished(within=0) else "ended")
        started.set()
        leaving.wait()
        time.sleep(0.3)  # no assertion on it: room for a leave that did not wait to overtake this interrupt
        calls.append("interrupted")

    with Watchdog(0.05, interrupt) as slow:
        assert slow.finished(within=0) is False
        started.wait()  # a block that outlives its deadline: it ends only after the interrupt has begun
        leaving.set()
    calls.append("left")
    assert slow.fired
    assert calls == ["still running", "interrupted", "left"], "leaving the block waits for a running interrupt"


def test_statement_deadline_is_query_timeout_plus_a_bounded_grace() -> None:
    base = pg_target(5432)
    assert query_deadline(base) == 2.0
    assert query_deadline(replace(base, query_timeout=300.0)) == 330.0
    assert query_deadline(replace(base, query_timeout=3600.0)) == 3630.0

"""SQL Server and Oracle: every wait bounded client-side, tested on the real drivers (no server needed).

Why real sockets: no SQL Server or Oracle runs here, but mssql-python and python-oracledb
(thin mode) do. Against a loopback port that accepts and never answers (`SilentServer`),
the adapter must give up with `timeout`, naming the connect timeout and showing which limit
ended the wait; against one that accepts and closes at once (`ClosingServer`), with
`connection` ("cannot connect": the session was never established). Nothing here is mocked:
the failures are the drivers' own.

No assertion measures time (the machines are shared and noisy). A wait that never ends fails
the test through its pytest-timeout (60 s); "at once" is shown by a connect timeout far beyond
that (`LONG`), so a failure that only came at the deadline would hit the test's timeout instead.

What cannot be provoked without a server (a statement that stalls or loses its connection)
is checked on the errors the drivers build for those cases, with the adapters' classifiers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import oracledb
import pytest
from mssql_python.exceptions import sqlstate_to_exception
from oracledb import errors as ora_errors

from accountsync.adapters import oracle, sqlserver
from accountsync.adapters.base import (
    AdapterError,
    ConnectionFailed,
    ConnectionTarget,
    TimeoutFailed,
)
from accountsync.adapters.oracle import OracleAdapter
from accountsync.adapters.sqlserver import SQLServerAdapter
from tests.faults.faultproxy import ClosingServer, SilentServer, wait_hung_up

pytestmark = pytest.mark.timeout(60)

CONNECT_TIMEOUT = 1.0
LONG = 120.0  # a connect timeout past the 60 s pytest-timeout: a failure reported only at it fails the test


def target(db_type: str, port: int, **kw: Any) -> ConnectionTarget:
    values: dict[str, Any] = {
        "name": f"fault-{db_type}",
        "db_type": db_type,
        "host": "127.0.0.1",
        "port": port,
        "username": "whalefall_mon",
        "password": "Fault-Pw-1",
        "database_name": "ORCLPDB1" if db_type == "oracle" else "master",
        "connect_timeout": CONNECT_TIMEOUT,
        "query_timeout": 2.0,
    }
    values.update(kw)
    return ConnectionTarget(**values)


def failure(call: Callable[[], Any]) -> AdapterError:
    with pytest.raises(AdapterError) as info:
        call()
    return info.value


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    with SilentServer() as server:
        yield server


@pytest.fixture
def closing() -> Iterator[ClosingServer]:
    with ClosingServer() as server:
        yield server


# --- SQL Server (mssql-python) -------------------------------------------------------------


@pytest.mark.parametrize("tls", ["disable", "require", "verify"])
def test_sqlserver_silent_port_is_a_timeout_within_the_login_timeout(silent: SilentServer, tls: str) -> None:
    error = failure(lambda: SQLServerAdapter().fetch(target("sqlserver", silent.port, options={"tls": tls})))
    assert silent.count >= 1, "the driver never reached the port"
    assert isinstance(error, TimeoutFailed) and error.kind == "timeout", str(error)
    assert "within 1s while trying to connect" in str(error)
    # the limit that ended the wait: the driver's login timeout (SQL_ATTR_LOGIN_TIMEOUT), in its own words
    assert "TCP Provider: Timeout error [258]" in str(error), str(error)
    for sock in list(silent.accepted):
        wait_hung_up(sock)  # and on the server's side: the driver gave up and closed its connection
    assert "Fault-Pw-1" not in str(error)


@pytest.mark.parametrize("tls", ["disable", "require"])
def test_sqlserver_port_that_closes_is_a_connection_error_at_once(closing: ClosingServer, tls: str) -> None:
    # a login timeout past the test's timeout: returning at all shows the close was reported at once
    error = failure(
        lambda: SQLServerAdapter().test_connection(
            target("sqlserver", closing.port, connect_timeout=LONG, options={"tls": tls})
        )
    )
    assert closing.count >= 1
    assert isinstance(error, ConnectionFailed) and error.kind == "connection", str(error)
    assert "cannot connect to 127.0.0.1:" in str(error)
    assert "timeout" not in str(error).lower(), str(error)


def test_sqlserver_statement_errors_from_the_driver_are_classified_by_what_happened() -> None:
    t = target("sqlserver", 1433)
    phase = "read the sys catalog views"
    lost = sqlstate_to_exception("08S01", "[Microsoft][ODBC Driver 18 for SQL Server]Communication link failure")
    stalled = sqlstate_to_exception("HYT00", "[Microsoft][ODBC Driver 18 for SQL Server]Query timeout expired")

    lost_error = sqlserver.classify_error(lost, t, phase=phase, elapsed=0.2)
    assert isinstance(lost_error, ConnectionFailed) and "lost the connection to 127.0.0.1:1433 after 0.2s" in str(
        lost_error
    )
    stalled_error = sqlserver.classify_error(stalled, t, phase=phase, elapsed=2.0)
    assert isinstance(stalled_error, TimeoutFailed) and "within 2s while trying to read" in str(stalled_error)
    # while connecting, a broken link is still "cannot connect"
    assert "cannot connect" in str(sqlserver.classify_error(lost, t, phase="connect"))


# --- Oracle (python-oracledb, thin mode) ---------------------------------------------------


def test_oracle_silent_port_is_a_timeout_within_the_connect_timeout(silent: SilentServer) -> None:
    before = set(threading.enumerate())
    error = failure(lambda: OracleAdapter().fetch(target("oracle", silent.port)))
    assert silent.count >= 1, "the driver never reached the port"
    assert isinstance(error, TimeoutFailed) and error.kind == "timeout", str(error)
    # the limit that ended the wait: the adapter's own bound on the whole connect (no driver text in the
    # message), while the driver's attempt, which has no overall timeout, still waits on the silent port
    assert "within 1s while trying to connect; check that this is an Oracle listener port" in str(error), str(error)
    abandoned = [t for t in threading.enumerate() if t.name == "oracle-connect-fault-oracle" and t not in before]
    assert len(abandoned) == 1, "the driver's connect attempt should still be waiting, abandoned"
    silent.close()
    abandoned[0].join()  # the abandoned attempt ends once the peer closes: no thread is left behind


def test_oracle_port_that_closes_is_a_connection_error_at_once(closing: ClosingServer) -> None:
    # a connect timeout past the test's timeout: returning at all shows the close was reported at once
    error = failure(lambda: OracleAdapter().test_connection(target("oracle", closing.port, connect_timeout=LONG)))
    assert closing.count >= 1
    assert isinstance(error, ConnectionFailed) and error.kind == "connection", str(error)
    assert "cannot connect to 127.0.0.1:" in str(error) and "DPY-4011" in str(error)


def test_oracle_statement_errors_from_the_driver_are_classified_by_what_happened() -> None:
    t = target("oracle", 1521)
    phase = "read the DBA_ views"
    closed = ora_errors._create_exception(ora_errors.ERR_CONNECTION_CLOSED)
    # thin mode after a call timeout whose break was not answered either: a stall, not a cut
    unrecovered = ora_errors._create_exception(
        ora_errors.ERR_CONNECTION_CLOSED, "socket timed out while recovering from previous socket timeout"
    )
    call_timeout = ora_errors._create_exception(ora_errors.ERR_CALL_TIMEOUT_EXCEEDED, timeout=2000)
    assert all(isinstance(e, oracledb.Error) for e in (closed, unrecovered, call_timeout))

    lost = oracle.classify_error(closed, t, phase=phase, elapsed=0.3)
    assert isinstance(lost, ConnectionFailed) and "lost the connection to 127.0.0.1:1521 after 0.3s" in str(lost)
    for stall in (unrecovered, call_timeout):
        classified = oracle.classify_error(stall, t, phase=phase, elapsed=4.0)
        assert isinstance(classified, TimeoutFailed) and "within 2s while trying to read" in str(classified)
    assert "cannot connect" in str(oracle.classify_error(closed, t, phase="connect"))

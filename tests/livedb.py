"""Admin connections to the local live servers (fixtures shared by every test folder).

A missing server skips the live tests on a laptop, and fails them when
WHALEFALL_REQUIRE_LIVE=1 (CI), so CI can never go green by skipping.

Where the servers are comes from the environment, set by scripts/test (scripts/_testservers.sh)
when it uses private servers: WHALEFALL_TEST_MARIADB_PORT, WHALEFALL_TEST_PG_PORT and
WHALEFALL_TEST_REDIS_URL. The defaults are the usual local servers (MariaDB 127.0.0.1:3306 as
root, PostgreSQL 127.0.0.1:5432 as postgres, Redis 127.0.0.1:6379); the host is always 127.0.0.1.
Every test that reaches a live server takes its port from here.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

MARIADB = {
    "host": "127.0.0.1",
    "port": int(os.environ.get("WHALEFALL_TEST_MARIADB_PORT") or 3306),
    "user": "root",
    "password": "",
}
POSTGRES = {
    "host": "127.0.0.1",
    "port": int(os.environ.get("WHALEFALL_TEST_PG_PORT") or 5432),
    "user": "postgres",
    "dbname": "postgres",
}
REDIS_URL = os.environ.get("WHALEFALL_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"


def _unavailable(what: str, exc: Exception) -> None:
    port = {"MariaDB": MARIADB["port"], "PostgreSQL": POSTGRES["port"]}[what]
    message = f"live {what} at 127.0.0.1:{port} is not reachable: {exc}"
    if os.environ.get("WHALEFALL_REQUIRE_LIVE") == "1":
        pytest.fail(message + " (WHALEFALL_REQUIRE_LIVE=1)")
    pytest.skip(message)


@pytest.fixture
def mariadb_admin() -> Iterator[object]:
    """An autocommit root connection to the local MariaDB."""
    import MySQLdb

    try:
        conn = MySQLdb.connect(**MARIADB, connect_timeout=10, charset="utf8mb4", autocommit=True)
    except MySQLdb.Error as exc:
        _unavailable("MariaDB", exc)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def postgres_admin() -> Iterator[object]:
    """An autocommit superuser connection to the local PostgreSQL."""
    import psycopg

    try:
        conn = psycopg.connect(**POSTGRES, connect_timeout=10, autocommit=True)
    except psycopg.Error as exc:
        _unavailable("PostgreSQL", exc)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def unique_prefix() -> str:
    """A short unique prefix for users/roles a test creates (and drops)."""
    return "wf" + uuid.uuid4().hex[:8]

"""The latency proxy really forwards MariaDB and PostgreSQL traffic and really delays it.

Why: bench/adapter_fetch.py's "through the proxy" figures are only meaningful
if every round trip pays at least 2 x delay; that lower bound is asserted here
(a lower bound, so a slow machine cannot make it flaky).
"""

from __future__ import annotations

import hashlib
import time

import MySQLdb
import psycopg
import pytest

from bench.latency_proxy import LatencyProxy, require_loopback
from tests.livedb import MARIADB, POSTGRES

pytestmark = pytest.mark.live

DELAY_MS = 2.0
ROUND_TRIPS = 20


def _timed_selects(cursor: object, n: int) -> tuple[float, list[int]]:
    seen: list[int] = []
    start = time.perf_counter()
    for i in range(n):
        cursor.execute("SELECT %s + 1", (i,))  # type: ignore[attr-defined]
        seen.append(int(cursor.fetchone()[0]))  # type: ignore[attr-defined]
    return time.perf_counter() - start, seen


def test_mariadb_through_proxy_works_and_pays_the_delay() -> None:
    with LatencyProxy(target_port=MARIADB["port"], delay_ms=DELAY_MS) as proxy:
        assert proxy.port not in (0, MARIADB["port"])
        conn = MySQLdb.connect(host="127.0.0.1", port=proxy.port, user="root", password="", connect_timeout=10)
        try:
            cur = conn.cursor()
            cur.execute("SELECT CURRENT_USER()")
            assert cur.fetchone()[0] == "root@127.0.0.1"
            elapsed, seen = _timed_selects(cur, ROUND_TRIPS)
        finally:
            conn.close()
    assert seen == list(range(1, ROUND_TRIPS + 1))
    assert elapsed >= ROUND_TRIPS * 2 * DELAY_MS / 1000


def test_postgresql_through_proxy_works_and_pays_the_delay() -> None:
    with LatencyProxy(target_port=POSTGRES["port"], delay_ms=DELAY_MS) as proxy:
        conn = psycopg.connect(host="127.0.0.1", port=proxy.port, user="postgres", dbname="postgres", autocommit=True)
        try:
            cur = conn.cursor()
            cur.execute("SELECT current_user, count(*) FROM generate_series(1, 50000)")
            assert cur.fetchone() == ("postgres", 50000)
            elapsed, seen = _timed_selects(cur, ROUND_TRIPS)
        finally:
            conn.close()
    assert seen == list(range(1, ROUND_TRIPS + 1))
    assert elapsed >= ROUND_TRIPS * 2 * DELAY_MS / 1000


def test_large_result_arrives_intact_and_in_order() -> None:
    with (
        LatencyProxy(target_port=POSTGRES["port"], delay_ms=0.5) as proxy,
        psycopg.connect(host="127.0.0.1", port=proxy.port, user="postgres", dbname="postgres") as conn,
    ):
        rows = conn.execute("SELECT g, md5(g::text) FROM generate_series(1, 20000) g").fetchall()
    assert [r[0] for r in rows] == list(range(1, 20001))
    assert rows[-1][1] == hashlib.md5(b"20000").hexdigest()


def test_stop_closes_the_listener() -> None:
    proxy = LatencyProxy(target_port=POSTGRES["port"]).start()
    port = proxy.port
    proxy.stop()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=3)


@pytest.mark.parametrize("host", ["10.0.0.1", "192.168.1.10", "0.0.0.0", "example.com", "localhost.evil"])
def test_non_loopback_target_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match=r"loopback|IP literal"):
        LatencyProxy(target_port=3306, target_host=host)
    with pytest.raises(ValueError, match=r"loopback|IP literal"):
        LatencyProxy(target_port=3306, listen_host=host)


def test_loopback_addresses_are_accepted() -> None:
    assert require_loopback("127.0.0.1") == "127.0.0.1"
    assert require_loopback("::1") == "::1"

"""Least data on the wire: a sync of the live MariaDB moves no byte of any password hash.

Issue 17 part 4. A uniquely named account gets a known password; its hash is read
from the server over the admin connection; then the adapter's fetch runs through a
capturing loopback proxy, and not one occurrence of the hash (as stored: `*HEX` for
mysql_native_password) may be in what the server sent. A positive control through
the same proxy, `SELECT * FROM mysql.user`, must carry it: it proves the capture
sees the rows in clear text, so the absence is not an artefact (TLS, a broken
capture). An account with an empty password is still reported as NO_PASSWORD,
worked out by the server, and an empty alternative behind a hashed one too.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import MySQLdb
import pytest

from accountsync.adapters.base import ConnectionTarget
from accountsync.adapters.mysql import MySQLAdapter, account_identity
from tests.faults.faultproxy import FaultProxy
from tests.livedb import MARIADB

pytestmark = pytest.mark.live

ROOT = ConnectionTarget(
    name="live-mariadb",
    db_type="mysql",
    host=MARIADB["host"],
    port=MARIADB["port"],
    username=MARIADB["user"],
    password=MARIADB["password"],
)


def run(conn: Any, sql: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall())


@pytest.fixture
def accounts(mariadb_admin: Any) -> Iterator[dict[str, str]]:
    """wf_hash_<uuid8> with a known password (and a second, hashed, alternative), and a password-less one."""
    tag = uuid.uuid4().hex[:8]
    names = {"hashed": f"wf_hash_{tag}", "empty": f"wf_hash_{tag}_e", "either": f"wf_hash_{tag}_o"}
    made: list[str] = []
    try:
        run(mariadb_admin, "CREATE USER %s@'%%' IDENTIFIED BY %s", (names["hashed"], f"Known-{tag}-pw"))
        made.append(names["hashed"])
        run(mariadb_admin, "CREATE USER %s@'%%'", (names["empty"],))
        made.append(names["empty"])
        # a hashed first alternative, then an empty one: the secret of the first stays home too
        run(
            mariadb_admin,
            "CREATE USER %s@'%%' IDENTIFIED VIA mysql_native_password USING PASSWORD(%s)"
            " OR mysql_native_password USING PASSWORD(%s) OR mysql_native_password USING PASSWORD('')",
            (names["either"], f"Other-{tag}-pw", f"Third-{tag}-pw"),
        )
        made.append(names["either"])
        yield names
    finally:
        for name in made:
            run(mariadb_admin, "DROP USER IF EXISTS %s@'%%'", (name,))


def stored_hashes(conn: Any, user: str) -> list[bytes]:
    """Every non-empty secret the server keeps for `user`@'%', as stored (top level and each alternative)."""
    (priv,) = run(conn, "SELECT Priv FROM mysql.global_priv WHERE User = %s AND Host = '%%'", (user,))[0]
    paths = ["$.authentication_string"] + [f"$.auth_or[{i}].authentication_string" for i in range(8)]
    found = [run(conn, "SELECT JSON_VALUE(%s, %s)", (priv, path))[0][0] for path in paths]
    return [as_bytes(h) for h in found if h]


def as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def test_a_sync_moves_no_byte_of_a_known_hash(mariadb_admin: Any, accounts: dict[str, str]) -> None:
    hashes = stored_hashes(mariadb_admin, accounts["hashed"]) + stored_hashes(mariadb_admin, accounts["either"])
    assert len(hashes) == 3 and all(h.startswith(b"*") and len(h) == 41 for h in hashes)
    # also the hex without its `*`, and in lower case: no spelling of the hash may cross
    needles = [form for h in hashes for form in (h, h[1:], h[1:].lower())]

    with FaultProxy(ROOT.host, ROOT.port, capture=True) as proxy:
        catalog = MySQLAdapter().fetch(replace(ROOT, port=proxy.port))
        sync_bytes = proxy.received()
        proxy.clear_received()

        # positive control: the same wire, a query that does read hashes
        conn = MySQLdb.connect(
            host=ROOT.host, port=proxy.port, user=ROOT.username, password=ROOT.password, charset="utf8mb4"
        )
        try:
            run(conn, "SELECT * FROM mysql.user")
            run(conn, "SELECT * FROM mysql.global_priv")
        finally:
            conn.close()
        control_bytes = proxy.received()

    assert all(h in control_bytes for h in hashes), "the capture must see a hash a query does read"
    assert accounts["hashed"].encode() in sync_bytes  # the sync did read this account's row
    leaked = [n.decode() for n in needles if n in sync_bytes]
    assert leaked == [], f"the sync moved password hashes over the wire: {leaked}"
    assert b"authentication_string" not in sync_bytes  # not even the key of one

    by_identity = {a.identity: a for a in catalog.accounts}
    hashed = by_identity[account_identity(accounts["hashed"], "%")]
    assert "NO_PASSWORD" not in hashed.capabilities
    assert hashed.attributes["auth_plugin"] == "mysql_native_password"
    empty = by_identity[account_identity(accounts["empty"], "%")]
    assert "NO_PASSWORD" in empty.capabilities
    either = by_identity[account_identity(accounts["either"], "%")]
    assert "NO_PASSWORD" in either.capabilities  # the third alternative is an empty password
    assert either.attributes["auth_plugin"] == " OR ".join(["mysql_native_password"] * 3)
    snapshots = repr([a.snapshot() for a in catalog.accounts])
    assert not any(n.decode() in snapshots for n in needles)


def test_the_user_statement_sent_names_no_hash_column(mariadb_admin: Any, accounts: dict[str, str]) -> None:
    """What the adapter asks the server for: read back from the server's own answer shape."""
    from accountsync.adapters import mysql as mysql_adapter

    with mariadb_admin.cursor() as cur:
        cur.execute(mysql_adapter._GLOBAL_PRIV_SQL + " WHERE User = %s", (accounts["either"],))
        columns = [d[0] for d in cur.description]
        ((user, host, priv, auth_empty, auth_or_empty),) = cur.fetchall()
    assert columns == ["User", "Host", "Priv", "auth_empty", "auth_or_empty"]
    assert (user, host, auth_empty) == (accounts["either"], "%", 0)
    # auth_or: [{}, {second}, {third, empty}]: `{}` is the top-level (hashed) one, not flagged here
    assert auth_or_empty == "10111111"
    assert "authentication_string" not in priv

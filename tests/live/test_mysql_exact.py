"""The exact picture against the live MariaDB: coverage gaps, escalation routes, odd values, expiry by age.

Issue #16 for MySQL/MariaDB. Every test makes uniquely named accounts (and drops them), looks only
at those, and never assumes the rest of the server stands still: other tests create accounts at
the same time. tests/accountsync/test_mysql_exact_build.py covers the same rules from recorded rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import MySQLdb
import pytest

from accountsync.adapters import mysql as mysql_adapter
from accountsync.adapters.base import GapKind
from accountsync.adapters.mysql import MySQLAdapter, account_identity, routine_scope
from tests.live.test_mysql_adapter import ROOT, Scratch, cross_check, target
from tests.livedb import MARIADB

pytestmark = pytest.mark.live


@pytest.fixture
def scratch(mariadb_admin: Any) -> Iterator[Scratch]:
    """As in test_mysql_adapter.py: statements as root, and whatever they made dropped afterwards."""
    s = Scratch(mariadb_admin)
    try:
        yield s
    finally:
        s.cleanup()


ROUTE = dict(mysql_adapter._ROUTES)


def mine(catalog: Any, prefix: str) -> dict[str, Any]:
    return {a.identity: a for a in catalog.accounts if a.username.startswith(prefix)}


def reasons(acc: Any) -> list[str]:
    return acc.attributes.get("capability_reasons", {}).get("SUPERUSER", [])


# --- 1. coverage -------------------------------------------------------------------------------------


def monitoring_fleet(scratch: Scratch, prefix: str) -> str:
    """Accounts with a grant at every level, the routine one included; returns the one holding them all."""
    db = scratch.database(f"{prefix}_m")
    scratch.run(f"CREATE TABLE `{db}`.`t` (a INT)")
    scratch.run(f"CREATE PROCEDURE `{db}`.`p`() SELECT 1")
    scratch.role(f"{prefix}_mr")
    mu = scratch.user(f"{prefix}_mu", "10.%", "IDENTIFIED BY 'Mu-Pw-1'")
    mu_sql = f"'{prefix}_mu'@'10.%'"
    for sql in (
        f"GRANT RELOAD ON *.* TO `{prefix}_mr`",
        f"GRANT `{prefix}_mr` TO {mu_sql} WITH ADMIN OPTION",
        f"GRANT SELECT ON `{db}`.* TO {mu_sql}",
        f"GRANT INSERT (a) ON `{db}`.`t` TO {mu_sql}",
        f"GRANT UPDATE ON `{db}`.`t` TO {mu_sql} WITH GRANT OPTION",
        f"GRANT EXECUTE ON PROCEDURE `{db}`.`p` TO {mu_sql}",
    ):
        scratch.run(sql)
    return mu


@pytest.mark.parametrize("procs_grant", [None, "SELECT (User, Host)"], ids=["no-grant", "some-columns"])
def test_a_monitoring_account_without_procs_priv_gets_a_routine_gap(
    scratch: Scratch, unique_prefix: str, procs_grant: str | None
) -> None:
    mon = f"{unique_prefix}_mon"
    scratch.user(mon, "%", "IDENTIFIED BY 'Mon-Pw-3'")
    for table in ("user", "global_priv", "db", "tables_priv", "columns_priv", "proxies_priv", "roles_mapping"):
        scratch.run(f"GRANT SELECT ON mysql.{table} TO %s@'%%'", (mon,))
    if procs_grant:  # a column-level grant that leaves the adapter's columns unreadable (error 1143)
        scratch.run(f"GRANT {procs_grant} ON mysql.procs_priv TO %s@'%%'", (mon,))
    mu = monitoring_fleet(scratch, unique_prefix)

    catalog = MySQLAdapter().fetch(target(username=mon, password="Mon-Pw-3"))
    full = MySQLAdapter().fetch(ROOT)

    (gap,) = catalog.coverage
    assert (gap.scope, gap.kind, gap.inclusive) == ("routine", GapKind.UNREADABLE, True)
    assert "denied" in gap.reason and "procs_priv" in gap.reason and mon in gap.reason
    assert "Mon-Pw-3" not in gap.reason
    assert gap.fix == f"GRANT SELECT ON mysql.procs_priv TO '{mon}'@'%'"
    assert catalog.round_trips == 9  # the 8 statements, and CURRENT_USER() for the fix
    assert full.coverage == []

    seen, truth = mine(catalog, unique_prefix), mine(full, unique_prefix)
    assert seen.keys() == truth.keys() and len(truth) == 3
    routine = routine_scope(f"{unique_prefix}_m", "p", "PROCEDURE")
    assert any(x.scope == routine for x in truth[mu].privileges), "the fleet has a routine grant to lose"
    for identity, acc in truth.items():
        expected = acc.snapshot()
        expected["privileges"] = [x for x in expected["privileges"] if not x["scope"].startswith("routine:")]
        assert seen[identity].snapshot() == expected, identity
    assert not any(x.scope == routine for x in seen[mu].privileges)

    # the grant the fix names closes the gap
    scratch.run(gap.fix)
    after = MySQLAdapter().fetch(target(username=mon, password="Mon-Pw-3"))
    assert after.coverage == [] and after.round_trips == 8
    now_true = MySQLAdapter().fetch(ROOT)
    assert {i: a.snapshot() for i, a in mine(after, unique_prefix).items()} == {
        i: a.snapshot() for i, a in mine(now_true, unique_prefix).items()
    }


# --- 2. escalation routes -------------------------------------------------------------------------


def test_escalation_routes_are_superusers_with_their_reason(scratch: Scratch, unique_prefix: str) -> None:
    u = unique_prefix
    made = {
        key: scratch.user(f"{u}_{key}", "%", "IDENTIFIED BY 'Pw-1'")
        for key in ("file", "wmysql", "wpattern", "wcolumn", "su", "px", "pxany", "pxplain", "plain", "cu", "gopt")
    }
    filers = scratch.role(f"{u}_filers")
    made["member"] = scratch.user(f"{u}_member", "%", "IDENTIFIED BY 'Pw-1'")
    sql = {key: f"'{u}_{key}'@'%'" for key in made}
    for statement in (
        f"GRANT FILE ON *.* TO {sql['file']}",
        f"GRANT UPDATE ON mysql.* TO {sql['wmysql']}",
        f"GRANT INSERT ON `m%`.* TO {sql['wpattern']}",  # a pattern that reaches the mysql schema
        f"GRANT UPDATE (Priv) ON mysql.global_priv TO {sql['wcolumn']}",
        f"GRANT ALL PRIVILEGES ON *.* TO {sql['su']}",
        f"GRANT CREATE USER ON *.* TO {sql['cu']}",
        f"GRANT SELECT ON *.* TO {sql['gopt']} WITH GRANT OPTION",
        f"GRANT FILE ON *.* TO `{u}_filers`",
        f"GRANT `{u}_filers` TO {sql['member']}",
    ):
        scratch.run(statement)
    # only the proxied account itself (or a holder of PROXY WITH GRANT OPTION on it) may grant PROXY on it
    as_user(f"{u}_su", "Pw-1", f"GRANT PROXY ON {sql['su']} TO {sql['px']}")
    as_user(f"{u}_plain", "Pw-1", f"GRANT PROXY ON {sql['plain']} TO {sql['pxplain']}")
    # PROXY ON ''@'%' (any user name, host exactly '%') only root@localhost may grant, over no TCP login:
    # the row is written directly, for this test's account only, and removed again
    scratch.run(
        "INSERT INTO mysql.proxies_priv (Host, User, Proxied_host, Proxied_user, With_grant) "
        "VALUES ('%%', %s, '%%', '', 0)",
        (f"{u}_pxany",),
    )
    try:
        catalog = MySQLAdapter().fetch(ROOT)
    finally:
        scratch.run("DELETE FROM mysql.proxies_priv WHERE Host = '%%' AND User = %s", (f"{u}_pxany",))
    accounts = mine(catalog, u)

    def write(*grants: str) -> list[str]:
        return [mysql_adapter._write_route(list(grants))]

    assert reasons(accounts[made["file"]]) == [ROUTE["FILE"]]
    assert accounts[made["file"]].snapshot()["capabilities"] == ["FILE_ACCESS", "SUPERUSER", "WILDCARD_HOST"]
    assert reasons(accounts[made["wmysql"]]) == write("UPDATE on database:mysql")
    assert reasons(accounts[made["wpattern"]]) == write("INSERT on database:m%")
    assert reasons(accounts[made["wcolumn"]]) == write("UPDATE on column:mysql.global_priv.Priv")
    assert reasons(accounts[made["px"]]) == [mysql_adapter._proxy_route([made["su"]])]
    assert reasons(accounts[made["pxany"]])[0].startswith("PROXY of a superuser (")  # others' superusers too
    assert reasons(accounts[made["cu"]]) == [ROUTE["CREATE USER"]]
    assert reasons(accounts[made["gopt"]]) == [mysql_adapter._GRANT_OPTION_ROUTE]
    assert reasons(accounts[made["member"]]) == [f"via role {u}_filers ({ROUTE['FILE']})"]
    assert accounts[filers].is_superuser and reasons(accounts[filers]) == [ROUTE["FILE"]]
    for key in ("file", "wmysql", "wpattern", "wcolumn", "su", "px", "pxany", "cu", "gopt", "member"):
        acc = accounts[made[key]]
        assert acc.is_superuser and "SUPERUSER" in acc.snapshot()["capabilities"], key
    assert reasons(accounts[made["su"]]) == []  # ALL PRIVILEGES: a superuser by definition
    for key in ("pxplain", "plain"):
        assert not accounts[made[key]].is_superuser, key
    scratch.accounts.remove((f"{u}_pxany", "%"))  # SHOW GRANTS knows only what the server loaded
    cross_check(scratch, {i: a.snapshot() for i, a in accounts.items()})
    scratch.accounts.append((f"{u}_pxany", "%"))


def as_user(user: str, password: str, statement: str) -> None:
    conn = MySQLdb.connect(host="127.0.0.1", port=MARIADB["port"], user=user, password=password)
    try:
        conn.cursor().execute(statement)
    finally:
        conn.close()


def test_what_the_routes_claim_holds_on_this_server(scratch: Scratch, unique_prefix: str) -> None:
    """CREATE USER takes over a superuser; `m%` and a column grant write the grant tables; bare GRANT OPTION cannot."""
    u = unique_prefix
    scratch.user(f"{u}_cu", "%", "IDENTIFIED BY 'Pw-c'")
    scratch.user(f"{u}_su", "%", "IDENTIFIED BY 'Pw-s'")
    scratch.user(f"{u}_w", "%", "IDENTIFIED BY 'Pw-w'")
    scratch.user(f"{u}_g", "%", "IDENTIFIED BY 'Pw-g'")
    for statement in (
        f"GRANT CREATE USER ON *.* TO '{u}_cu'@'%'",
        f"GRANT ALL PRIVILEGES ON *.* TO '{u}_su'@'%'",
        f"GRANT UPDATE ON `m%`.* TO '{u}_w'@'%'",
        f"GRANT USAGE ON *.* TO '{u}_g'@'%' WITH GRANT OPTION",
    ):
        scratch.run(statement)

    as_user(f"{u}_cu", "Pw-c", f"ALTER USER '{u}_su'@'%' IDENTIFIED BY 'Taken-1'")
    as_user(f"{u}_su", "Taken-1", "SELECT 1")  # the superuser's account is now the CREATE USER holder's
    as_user(f"{u}_w", "Pw-w", "UPDATE mysql.global_priv SET Priv = '{}' WHERE 1 = 0 LIMIT 0")  # allowed: no error
    with pytest.raises(MySQLdb.OperationalError):
        as_user(f"{u}_g", "Pw-g", f"GRANT SELECT ON *.* TO '{u}_w'@'%'")  # nothing of its own to grant


# --- 3. values the driver cannot load --------------------------------------------------------------


@pytest.mark.parametrize(
    ("json_value", "shown"),
    [
        ("99999999999999999999", "99999999999999999999"),  # past year 9999
        ("-5", "1969-12-31T23:59:55Z"),
        ("1717200000.5", "2024-06-01T00:00:00Z"),
        ("'garbage'", "garbage"),
    ],
)
def test_odd_password_change_times_in_global_priv_never_fail_a_sync(
    scratch: Scratch, unique_prefix: str, json_value: str, shown: str
) -> None:
    """The Priv JSON can hold any value; the grant tables are written here directly, for this account only."""
    user = f"{unique_prefix}_odd"
    ident = scratch.user(user, "%", "IDENTIFIED BY 'Pw-o' PASSWORD EXPIRE INTERVAL 30 DAY")
    scratch.run(
        f"UPDATE mysql.global_priv SET Priv = JSON_SET(Priv, '$.password_last_changed', {json_value}) "
        "WHERE User = %s AND Host = '%%'",
        (user,),
    )
    acc = mine(MySQLAdapter().fetch(ROOT), unique_prefix)[ident]
    assert acc.attributes["password_last_changed"] == shown
    assert acc.attributes["password_lifetime"] == 30


def test_an_odd_password_lifetime_never_fails_a_sync(scratch: Scratch, unique_prefix: str) -> None:
    user = f"{unique_prefix}_life"
    ident = scratch.user(user, "%", "IDENTIFIED BY 'Pw-l'")
    scratch.run(
        "UPDATE mysql.global_priv SET Priv = JSON_SET(Priv, '$.password_lifetime', 'ninety') "
        "WHERE User = %s AND Host = '%%'",
        (user,),
    )
    acc = mine(MySQLAdapter().fetch(ROOT), unique_prefix)[ident]
    assert acc.attributes["password_lifetime"] == "ninety" and "EXPIRED" not in acc.capabilities


def test_the_driver_reads_zero_dates_as_none(mariadb_admin: Any) -> None:
    """A zero or impossible TIMESTAMP (MySQL's password_last_changed) reaches the adapter as None, never an error."""
    with mariadb_admin.cursor() as cur:
        cur.execute("SET SESSION sql_mode = ''")
        cur.execute("SELECT CAST('0000-00-00 00:00:00' AS DATETIME), CAST('2024-02-30 00:00:00' AS DATETIME)")
        assert cur.fetchall() == ((None, None),)


def test_mariadb_cannot_hold_a_name_that_is_not_utf8(scratch: Scratch, unique_prefix: str) -> None:
    """Why the adapter never sees such bytes from MariaDB (and fetch's bytes re-read is for other servers).

    An identifier with bytes that are not UTF-8 is refused (1300), and a value stored into a column
    of the grant tables' type (utf8mb3_bin) is refused in strict mode (1366) and stored with `?`
    otherwise. The temporary table has that type; the grant tables themselves are not touched.
    """
    db = scratch.database(f"{unique_prefix}_n")
    conn = MySQLdb.connect(
        host="127.0.0.1", port=MARIADB["port"], user="root", password="", database=db, charset="latin1", autocommit=True
    )
    bad = unique_prefix + "\xff\xfe"  # as latin1 these are the bytes FF FE on the wire
    try:
        cur = conn.cursor()
        cur.execute("SET NAMES binary")
        for statement in (f"CREATE USER '{bad}'@'%'", f"CREATE DATABASE `{bad}`"):
            with pytest.raises(MySQLdb.OperationalError) as info:
                cur.execute(statement.encode("latin1"))
            assert info.value.args[0] == 1300, info.value.args
        cur.execute("SET NAMES latin1")
        cur.execute("CREATE TEMPORARY TABLE wf_names (n CHAR(64) CHARACTER SET utf8mb3 COLLATE utf8mb3_bin)")
        cur.execute("SET SESSION sql_mode = 'STRICT_ALL_TABLES'")
        with pytest.raises(MySQLdb.OperationalError) as info:
            cur.execute("INSERT INTO wf_names VALUES (_binary X'61FF')")
        assert info.value.args[0] == 1366
        cur.execute("SET SESSION sql_mode = ''")
        cur.execute("INSERT INTO wf_names VALUES (_binary X'61FF')")
        cur.execute("SELECT HEX(n) FROM wf_names")
        assert cur.fetchall() == (("613F",),)  # a?, valid UTF-8
    finally:
        conn.close()


def test_a_bytes_read_gives_the_same_accounts(scratch: Scratch, unique_prefix: str) -> None:
    """fetch's fallback for an undecodable cell: every cell as bytes, decoded by as_text, the same snapshots."""
    db = scratch.database(f"{unique_prefix}_b")
    scratch.run(f'CREATE TABLE `{db}`.`t.x` (`c"q` INT)')
    names = [(f"{unique_prefix}-ünïcødé-用户", "localhost"), (f"{unique_prefix}'q\"b\\s", "h'1")]
    for user, host in names:
        scratch.user(user, host, "IDENTIFIED BY 'Pw-b' PASSWORD EXPIRE INTERVAL 9 DAY")
        scratch.run(f'GRANT SELECT (`c"q`) ON `{db}`.`t.x` TO %s@%s WITH GRANT OPTION', (user, host))
    scratch.run("GRANT FILE ON *.* TO %s@%s", names[0])

    class Undecodable(MySQLAdapter):
        modes: list[bool] = []

        def _read(self, target, statements, *, use_unicode=True):  # type: ignore[override]
            self.modes.append(use_unicode)
            if use_unicode:
                statements.append(1)
                raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
            return super()._read(target, statements, use_unicode=use_unicode)

    adapter = Undecodable()
    in_bytes = mine(adapter.fetch(ROOT), unique_prefix)
    as_text = mine(MySQLAdapter().fetch(ROOT), unique_prefix)
    assert adapter.modes == [True, False]
    assert len(in_bytes) == 2
    assert {i: a.snapshot() for i, a in in_bytes.items()} == {i: a.snapshot() for i, a in as_text.items()}
    assert account_identity(*names[0]) in in_bytes


# --- 4. expiry by age ------------------------------------------------------------------------------


def test_a_password_past_its_lifetime_is_expired(scratch: Scratch, unique_prefix: str) -> None:
    old = scratch.user(f"{unique_prefix}_old", "%", "IDENTIFIED BY 'Pw-e' PASSWORD EXPIRE INTERVAL 1 DAY")
    fresh = scratch.user(f"{unique_prefix}_new", "%", "IDENTIFIED BY 'Pw-e' PASSWORD EXPIRE INTERVAL 30 DAY")
    never = scratch.user(f"{unique_prefix}_never", "%", "IDENTIFIED BY 'Pw-e' PASSWORD EXPIRE NEVER")
    for user in (f"{unique_prefix}_old", f"{unique_prefix}_never"):  # changed two days ago
        scratch.run(
            "UPDATE mysql.global_priv SET Priv = JSON_SET(Priv, '$.password_last_changed', UNIX_TIMESTAMP() - 172800) "
            "WHERE User = %s AND Host = '%%'",
            (user,),
        )
    accounts = mine(MySQLAdapter().fetch(ROOT), unique_prefix)
    assert "EXPIRED" in accounts[old].capabilities
    assert accounts[old].attributes["password_expired"] is False  # not PASSWORD EXPIRE: by age
    assert "EXPIRED" not in accounts[fresh].capabilities
    assert "EXPIRED" not in accounts[never].capabilities

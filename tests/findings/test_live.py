"""Live scenarios: real CREATE USER/GRANT -> sync -> finding opens; fix it -> sync -> it is resolved.

Syncs go through `sync.services.sync_accounts` (manual_single), so the hook, the
engine and the adapters are all the real ones. The servers are shared, so the
assertions look only at this test's uniquely named accounts (plus MariaDB's
PUBLIC role), and syncs are forced: other tests drop their users concurrently,
which must not trip the mass-removal guard here.
"""

from __future__ import annotations

import contextlib
from typing import Any

import MySQLdb
import pytest

from accountsync.models import InstanceAccount
from findings.models import Finding
from sync.services import sync_accounts
from tests.livedb import MARIADB, POSTGRES

pytestmark = [pytest.mark.live, pytest.mark.django_db]


def run_sync(instance: Any) -> dict[str, Any]:
    result = sync_accounts(instance=instance, sync_type="manual_single", force=True)
    assert result["success"], result["message"]
    assert "findings" in result["details"]
    return result


def findings_for(instance: Any, prefix: str, *, is_open: bool = True) -> set[tuple[str, str]]:
    rows = Finding.objects.filter(instance=instance, is_open=is_open).values_list("account__identity", "rule_code")
    return {(identity, code) for identity, code in rows if prefix in identity or identity == "'PUBLIC'"}


@pytest.fixture
def strict_policy(settings):
    settings.WHALEFALL_FINDINGS_POLICY = {"require_password_expiry": True}


def test_mariadb_every_rule_opens_and_resolves(
    mariadb_admin, make_instance, make_credential, unique_prefix, strict_policy
):
    p = unique_prefix
    inst = make_instance(
        "mysql", port=MARIADB["port"], credential=make_credential(name="root", username="root", password="")
    )
    cur = mariadb_admin.cursor()
    su, go, ex, nv, lk, dflt = (f"'{p}_{n}'@'localhost'" for n in ("su", "go", "x", "n", "l", "d"))
    empty, sock = f"'{p}_e'@'localhost'", f"'{p}_s'@'localhost'"
    wild, tame, anon = f"'{p}_w'@'10.9.%'", f"'{p}_w'@'10.9.0.1'", f"''@'{p}.invalid'"
    pw = f"Pw-{p}-1"
    try:
        cur.execute(f"CREATE DATABASE {p}_db")
        # an explicit lifetime, so only nv (explicitly) and dflt (the server default) can "never expire"
        expiring = "PASSWORD EXPIRE INTERVAL 90 DAY"
        for user in (su, go, ex, lk):
            cur.execute(f"CREATE USER {user} IDENTIFIED BY '{pw}' {expiring}")
        cur.execute(f"CREATE USER {nv} IDENTIFIED BY '{pw}' PASSWORD EXPIRE NEVER")
        cur.execute(f"CREATE USER {dflt} IDENTIFIED BY '{pw}'")
        cur.execute(f"CREATE USER {wild} IDENTIFIED BY '{pw}' {expiring}")
        cur.execute(f"CREATE USER {anon} IDENTIFIED BY '{pw}' {expiring}")
        cur.execute(f"CREATE USER {empty} {expiring}")
        cur.execute("SELECT @@global.default_password_lifetime")
        server_default_never = int(cur.fetchone()[0]) == 0
        cur.execute(f"CREATE USER {sock} IDENTIFIED VIA unix_socket")
        cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO {su}")
        cur.execute(f"GRANT SELECT ON {p}_db.* TO {go} WITH GRANT OPTION")
        cur.execute(f"ALTER USER {ex} PASSWORD EXPIRE")
        cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO {lk}")
        cur.execute(f"ALTER USER {lk} ACCOUNT LOCK")
        cur.execute(f"GRANT SELECT ON {p}_db.* TO PUBLIC")

        run_sync(inst)
        assert findings_for(inst, p) == {
            (su, "SUPERUSER"),
            (go, "GRANT_OPTION"),
            (ex, "PASSWORD_EXPIRED"),
            (nv, "PASSWORD_NEVER_EXPIRES"),
            (lk, "LOCKED_PRIVILEGED"),
            (wild, "WILDCARD_HOST"),
            (anon, "ANONYMOUS"),
            (empty, "EMPTY_PASSWORD"),
            ("'PUBLIC'", "PUBLIC_GRANTS"),
            # an account on the server's default lifetime never expires when that default is 0
            *([(dflt, "PASSWORD_NEVER_EXPIRES")] if server_default_never else []),
        }  # the unix_socket account has no finding: no password is not an empty password
        opened = findings_for(inst, p)

        cur.execute(f"REVOKE ALL PRIVILEGES ON *.* FROM {su}")
        cur.execute(f"REVOKE GRANT OPTION ON {p}_db.* FROM {go}")
        cur.execute(f"ALTER USER {ex} IDENTIFIED BY '{pw}2'")
        cur.execute(f"ALTER USER {nv} PASSWORD EXPIRE INTERVAL 90 DAY")
        cur.execute(f"ALTER USER {dflt} PASSWORD EXPIRE INTERVAL 90 DAY")
        cur.execute(f"REVOKE ALL PRIVILEGES ON *.* FROM {lk}")
        cur.execute(f"RENAME USER {wild} TO {tame}")
        cur.execute(f"DROP USER {anon}")
        cur.execute(f"ALTER USER {empty} IDENTIFIED BY '{pw}'")
        cur.execute(f"REVOKE SELECT ON {p}_db.* FROM PUBLIC")

        result = run_sync(inst)
        assert findings_for(inst, p) == set()
        assert findings_for(inst, p, is_open=False) == opened  # resolved, not deleted
        assert result["details"]["findings"]["resolved"] >= len(opened)
        assert not InstanceAccount.objects.get(instance=inst, identity=anon).is_active

        run_sync(inst)  # nothing changed: nothing reopens, nothing new
        assert findings_for(inst, p) == set() and findings_for(inst, p, is_open=False) == opened
    finally:
        for user in (su, go, ex, nv, lk, dflt, empty, sock, wild, tame, anon):
            cur.execute(f"DROP USER IF EXISTS {user}")
        with contextlib.suppress(MySQLdb.Error):  # already revoked when the test got that far
            cur.execute(f"REVOKE SELECT ON {p}_db.* FROM PUBLIC")
        cur.execute(f"DROP DATABASE IF EXISTS {p}_db")
        # MariaDB keeps an empty PUBLIC role row after the last revoke; remove it if nothing uses it.
        cur.execute(
            "DELETE FROM mysql.global_priv WHERE User = 'PUBLIC' AND Host = '' "
            "AND JSON_VALUE(Priv, '$.access') = 0 "
            "AND NOT EXISTS (SELECT 1 FROM mysql.db WHERE User = 'PUBLIC') "
            "AND NOT EXISTS (SELECT 1 FROM mysql.tables_priv WHERE User = 'PUBLIC')"
        )
        cur.execute("FLUSH PRIVILEGES")


def test_postgresql_rules_open_and_resolve(
    postgres_admin, make_instance, make_credential, unique_prefix, strict_policy
):
    p = unique_prefix
    inst = make_instance(
        "postgresql",
        port=POSTGRES["port"],
        credential=make_credential(name="pg", username="postgres", password=""),
        database_name="postgres",
        options={"databases": ["postgres"]},
    )
    run = postgres_admin.execute
    su, adm, team, nopw, ex, nv = (f"{p}_{n}" for n in ("su", "adm", "team", "np", "x", "n"))
    pw, later = f"Pw-{p}-1", "VALID UNTIL '2100-01-01'"
    try:
        run(f"CREATE ROLE {su} LOGIN SUPERUSER PASSWORD '{pw}' {later}")
        run(f"CREATE ROLE {team} NOLOGIN")
        run(f"CREATE ROLE {adm} LOGIN PASSWORD '{pw}' {later}")
        run(f"GRANT {team} TO {adm} WITH ADMIN OPTION")
        run(f"CREATE ROLE {nopw} LOGIN {later}")
        run(f"CREATE ROLE {ex} LOGIN PASSWORD '{pw}' VALID UNTIL '2000-01-01'")
        run(f"CREATE ROLE {nv} LOGIN PASSWORD '{pw}'")

        run_sync(inst)
        assert findings_for(inst, p) == {
            (su, "SUPERUSER"),
            (adm, "GRANT_OPTION"),
            (nopw, "PASSWORDLESS_LOGIN"),  # not EMPTY_PASSWORD: only pg_hba methods can log it in
            (ex, "PASSWORD_EXPIRED"),
            (nv, "PASSWORD_NEVER_EXPIRES"),
        }
        opened = findings_for(inst, p)
        severities = dict(
            Finding.objects.filter(instance=inst, is_open=True, account__identity__startswith=p).values_list(
                "rule_code", "severity"
            )
        )
        assert severities["SUPERUSER"] == "high" and severities["PASSWORDLESS_LOGIN"] == "info"

        run(f"ALTER ROLE {su} NOSUPERUSER")
        run(f"REVOKE ADMIN OPTION FOR {team} FROM {adm}")
        run(f"ALTER ROLE {nopw} PASSWORD '{pw}'")
        run(f"ALTER ROLE {ex} {later}")
        run(f"ALTER ROLE {nv} {later}")

        run_sync(inst)
        assert findings_for(inst, p) == set()
        assert findings_for(inst, p, is_open=False) == opened
    finally:
        for role in (su, adm, nopw, ex, nv, team):
            run(f"DROP ROLE IF EXISTS {role}")


def test_postgresql_grant_to_public_opens_and_its_revoke_resolves(
    postgres_admin, make_instance, make_credential, unique_prefix
):
    table = f"{unique_prefix}_salaries"
    scope = f"object:postgres.public.{table}"
    inst = make_instance(
        "postgresql",
        port=POSTGRES["port"],
        credential=make_credential(name="pg", username="postgres", password=""),
        database_name="postgres",
        options={"databases": ["postgres"]},
    )

    def public_finding() -> Finding | None:
        return Finding.objects.filter(
            instance=inst, account__identity="public", rule_code="PUBLIC_GRANTS", is_open=True
        ).first()

    try:
        postgres_admin.execute(f'CREATE TABLE public."{table}" (id int)')
        postgres_admin.execute(f'GRANT SELECT ON public."{table}" TO PUBLIC')
        run_sync(inst)
        opened = public_finding()
        assert opened is not None and f"SELECT on {scope}" in opened.detail["privileges"]["examples"]
        assert opened.severity == "high"
        postgres_admin.execute(f'REVOKE ALL ON public."{table}" FROM PUBLIC')
        run_sync(inst)
        still = public_finding()  # another test's PUBLIC grant may keep one open, never with our table
        assert still is None or f"SELECT on {scope}" not in str(still.detail)
        opened.refresh_from_db()
        assert still is not None or (not opened.is_open and opened.resolved_at is not None)
    finally:
        postgres_admin.execute(f'DROP TABLE IF EXISTS public."{table}"')

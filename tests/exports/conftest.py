"""Fixtures for the export, search and point-in-time tests.

``fleet`` builds accounts on four instances (one per database type) through
the real apply path (``account_sync_apply`` on a hand-made catalog), so the
snapshots, capabilities and change logs are exactly what a sync stores.
``bulk_accounts`` writes many rows directly, for streaming and query-count
tests where only the read side is under test.
"""

from __future__ import annotations

import pytest
from django.utils import timezone

from accountsync.adapters.base import AccountRecord, Catalog, Privilege, RoleGrant
from accountsync.services import account_sync_apply
from tests.api.conftest import SECRET, api_client  # noqa: F401

HOSTILE = ['=HYPERLINK("http://x")', "+cmd", "-1", "@SUM(1)", "\tTAB", "\rCR"]


def mysql_user(name: str, host: str, *privileges: Privilege, roles=(), caps=(), superuser=False) -> AccountRecord:
    return AccountRecord(
        identity=f"'{name}'@'{host}'",
        username=name,
        host=host,
        is_superuser=superuser,
        privileges=list(privileges),
        roles=list(roles),
        capabilities=set(caps) | ({"WILDCARD_HOST"} if "%" in host else set()),
        attributes={"auth_plugin": "mysql_native_password", "locked": False},
    )


def named(name: str, *privileges: Privilege, kind: str = "user", caps=(), superuser=False) -> AccountRecord:
    return AccountRecord(
        identity=name,
        username=name,
        kind=kind,
        is_superuser=superuser,
        privileges=list(privileges),
        capabilities=set(caps),
    )


def apply(instance, *accounts: AccountRecord) -> None:
    result = account_sync_apply(instance=instance, catalog=Catalog(accounts=list(accounts)).finalize(), force=True)
    assert result.success, result.message


@pytest.fixture
def fleet(make_instance, make_credential):
    """app_rw on MySQL ('%' and a subnet host), PostgreSQL and SQL Server; app_ro; admin; an Oracle APP_RW."""
    cred = make_credential(name="fleet-cred", password=SECRET)
    mysql = make_instance("mysql", name="my-prod", credential=cred, environment="production")
    mysql2 = make_instance("mysql", name="my-stage", credential=cred, environment="staging")
    pg = make_instance("postgresql", name="pg-prod", port=5432, credential=cred, environment="production")
    mssql = make_instance("sqlserver", name="ms-prod", port=1433, credential=cred, environment="production")
    ora = make_instance("oracle", name="ora-prod", port=1521, credential=cred, environment="production")
    sel = Privilege("database:sales", "SELECT")
    ins = Privilege("database:sales", "INSERT", grantable=True)
    apply(
        mysql,
        mysql_user("app_rw", "%", sel, ins, roles=[RoleGrant("reporting")], caps={"GRANT_ADMIN"}),
        mysql_user("app_ro", "%", sel),
        mysql_user(
            "admin",
            "localhost",
            Privilege("global", "ALL PRIVILEGES", grantable=True),
            caps={"SUPERUSER", "GRANT_ADMIN"},
            superuser=True,
        ),
    )
    apply(mysql2, mysql_user("app_rw", "10.0.%", sel), mysql_user("app_rwx", "localhost", sel))
    apply(pg, named("app_rw", sel, ins), named("app_reader", sel, kind="role"), named("appsvc", sel))
    apply(mssql, named("app_rw", Privilege("database:sales", "DELETE", effect="DENY"), kind="login"))
    apply(ora, named("APP_RW", sel))
    return {"mysql": mysql, "mysql2": mysql2, "pg": pg, "mssql": mssql, "oracle": ora}


@pytest.fixture
def bulk_accounts(make_instance):
    """``bulk_accounts(n, instances=k)``: n accounts spread over k MySQL instances, each with a snapshot and a log."""
    from accountsync.models import AccountChangeLog, AccountPermission, InstanceAccount

    def make(n: int, *, instances: int = 2, prefix: str = "bulk"):
        now = timezone.now()
        hosts = [make_instance("mysql", name=f"{prefix}-inst-{i}") for i in range(instances)]
        accounts = InstanceAccount.objects.bulk_create(
            [
                InstanceAccount(
                    instance=hosts[i % instances],
                    identity=f"'{prefix}{i}'@'%'",
                    username=f"{prefix}{i}",
                    host="%",
                    first_seen_at=now,
                    last_seen_at=now,
                )
                for i in range(n)
            ],
            batch_size=500,
        )
        snapshot = {
            "schema_version": 1,
            "privileges": [{"scope": "global", "privilege": "SELECT", "grantable": False, "effect": "GRANT"}],
            "roles": [],
            "capabilities": ["WILDCARD_HOST"],
        }
        AccountPermission.objects.bulk_create(
            [
                AccountPermission(
                    account=a,
                    instance_id=a.instance_id,
                    snapshot=snapshot,
                    digest="0" * 64,
                    collected_at=now,
                    valid_from=now,
                )
                for a in accounts
            ],
            batch_size=500,
        )
        AccountChangeLog.objects.bulk_create(
            [
                AccountChangeLog(
                    instance_id=a.instance_id, account=a, change_type="added", summary="added", detected_at=now
                )
                for a in accounts
            ],
            batch_size=500,
        )
        return hosts

    return make

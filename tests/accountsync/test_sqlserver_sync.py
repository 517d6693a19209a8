"""SQL Server synced end to end over the recorded 2022 rows while databases go away and come back.

Why end to end: "could not read is never revoked" is a property of the whole apply (inventory,
collection, change log, coverage episodes) and of the findings computed after it, so these tests
run `sync_accounts` (the engine, its post-sync hooks, the findings) with only `mssql_python.connect`
replaced by the recorded server of tests/accountsync/test_sqlserver_adapter.py.
"""

from __future__ import annotations

import copy
from typing import Any

import mssql_python
import pytest

from accountsync.models import AccountChangeLog, AccountPermission, CoverageGapEpisode, InstanceAccount
from findings.models import Finding
from sync.services import sync_accounts
from tests.accountsync.test_sqlserver_adapter import RECORDED, FakeConnection, driver_error

pytestmark = pytest.mark.django_db

OFFLINE = "Database 'sales' cannot be opened because it is offline."


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {"fail": {}, "data": copy.deepcopy(RECORDED)}

    def connect(conn_str: str, **kw: Any) -> FakeConnection:
        seen["conn"] = FakeConnection(seen["fail"], seen["data"])
        return seen["conn"]

    monkeypatch.setattr(mssql_python, "connect", connect)
    return seen


def take_offline(data: dict[str, Any], name: str) -> None:
    """sys.databases as it lists a database that is OFFLINE (HAS_DBACCESS is not asked then)."""
    row = next(r for r in data["databases"] if r["name"] == name)
    row.update(state_desc="OFFLINE", has_dbaccess=None, can_view_definition=None)


def picture(instance) -> dict[str, Any]:
    """Everything the audit trail shows of the instance: active accounts, open snapshots, log, findings."""
    return {
        "active": set(
            InstanceAccount.objects.filter(instance=instance, is_active=True).values_list("identity", flat=True)
        ),
        "snapshots": set(
            AccountPermission.objects.filter(instance=instance, valid_to__isnull=True).values_list("id", "digest")
        ),
        "log": AccountChangeLog.objects.filter(instance=instance).count(),
        "findings": set(
            Finding.objects.filter(instance=instance, is_open=True).values_list("account__identity", "rule_code")
        ),
    }


def sync(instance) -> dict[str, Any]:
    result = sync_accounts(instance=instance, sync_type="manual_single")
    assert result["success"], result["message"]
    instance.refresh_from_db()
    return result


def test_an_unreadable_database_keeps_its_accounts_and_grants_until_it_is_read_again(server, make_instance) -> None:
    instance = make_instance("sqlserver", port=1433, name="mssql-prod")
    sync(instance)
    before = picture(instance)
    # what lives in sales and msdb, and what depends on them
    assert {"sales::contained", "sales::orphan", "sales::reporting", "msdb::SQLAgentUserRole"} <= before["active"]
    assert ("sales::orphan", "ORPHANED_USER") in before["findings"]
    jobs = InstanceAccount.objects.get(instance=instance, identity="jobs")
    assert jobs.is_superuser and "TRUSTWORTHY database" in jobs.attributes["capability_reasons"]["SUPERUSER"][0]

    # sync 2: msdb is listed OFFLINE, sales goes offline between the database list and its read
    take_offline(server["data"], "msdb")
    server["fail"]["sales"] = driver_error("42000", OFFLINE)
    second = sync(instance)
    during = picture(instance)
    assert during == before  # no deactivation, no new snapshot, no change-log row, no finding resolved
    assert second["removed_count"] == 0 and second["modified_count"] == 0
    gaps = {g["scope"]: g for g in second["details"]["coverage"]["gaps"]}
    # every account living in an unreadable database is kept whole (the public roles of those unread since sync 1 too)
    unread = {scope.split(":", 1)[1] for scope, gap in gaps.items() if gap["kind"] == "unreadable"}
    inside = [i for i in before["active"] if "::" in i and i.split("::", 1)[0] in unread]
    assert second["details"]["inventory"]["carried"] == len(inside) and "sales::contained" in inside
    assert "offline" in gaps["database:sales"]["reason"] and "OFFLINE" in gaps["database:msdb"]["reason"]
    assert sorted(second["details"]["coverage"]["opened"]) == ["database:msdb", "database:sales"]
    assert "last known grants kept where unreadable" in second["message"]
    # the capability that came from a grant inside msdb (db_owner of a TRUSTWORTHY database owned by sa) stays
    jobs.refresh_from_db()
    assert jobs.is_superuser and "TRUSTWORTHY database" in jobs.attributes["capability_reasons"]["SUPERUSER"][0]
    app = AccountPermission.objects.get(account__identity="app", instance=instance, valid_to__isnull=True)
    assert {"role": "sales::reporting.sub", "admin_option": False, "default": True} in app.snapshot["roles"]
    assert "SELECT on column:sales.dbo.orders.email" in app.snapshot["attributes"]["revoked"]

    # sync 3: both readable again, and one real change happened meanwhile: the orphaned user was dropped
    server["data"]["databases"] = copy.deepcopy(RECORDED["databases"])
    server["fail"].clear()
    server["data"]["database_principals"] = [
        r for r in server["data"]["database_principals"] if (r["database_name"], r["name"]) != ("sales", "orphan")
    ]
    third = sync(instance)
    after = picture(instance)
    assert sorted(third["details"]["coverage"]["closed"]) == ["database:msdb", "database:sales"]
    assert not CoverageGapEpisode.objects.filter(
        instance=instance, scope__in=["database:sales", "database:msdb"], closed_at__isnull=True
    ).exists()
    # still carried: only the public roles of the databases unreadable all along (archive, incoming, hr, maint, audit)
    assert third["details"]["inventory"]["carried"] == 5
    assert after["active"] == before["active"] - {"sales::orphan"}
    assert list(
        AccountChangeLog.objects.filter(instance=instance)
        .order_by("id")[before["log"] :]
        .values_list("account__identity", "change_type")
    ) == [("sales::orphan", "removed")]
    assert after["findings"] == before["findings"] - {("sales::orphan", "ORPHANED_USER")}


def test_a_database_never_read_is_not_invented(server, make_instance) -> None:
    """First sync with a database offline: nothing is known there, so nothing is carried (only its public role)."""
    take_offline(server["data"], "sales")
    instance = make_instance("sqlserver", port=1433, name="mssql-new")
    result = sync(instance)
    active = set(InstanceAccount.objects.filter(instance=instance, is_active=True).values_list("identity", flat=True))
    assert {i for i in active if i.startswith("sales::")} == {"sales::public"}
    assert "carried" not in result["details"]["inventory"]

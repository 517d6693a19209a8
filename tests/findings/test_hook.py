"""The sync hook: findings refresh after every successful sync, whatever its type.

The only stand-in is the remote server: a registered adapter that returns the
catalog the test chose (the adapter registry is the boundary a new database
family plugs into). Leases, sessions, records and the engine are all real.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from accountsync.adapters.base import ADAPTERS, AccountRecord, Catalog, ConnectionFailed, ConnectionTarget, Privilege
from findings.models import Finding
from sync.models import SyncInstanceRecord
from sync.services import sync_accounts, sync_session_run, sync_session_start

pytestmark = pytest.mark.django_db


class ChosenCatalogAdapter:
    """Answers a fetch with `accounts`, or raises `error` as a dead server would."""

    db_type = "mysql"
    accounts: ClassVar[list[AccountRecord]] = []
    error: ClassVar[Exception | None] = None

    def test_connection(self, target: ConnectionTarget) -> str:
        return "MariaDB 10.11.6"

    def fetch(self, target: ConnectionTarget) -> Catalog:
        if self.error is not None:
            raise self.error
        return Catalog(accounts=list(self.accounts), server_version="MariaDB 10.11.6")


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setitem(ADAPTERS, "mysql", f"{__name__}.ChosenCatalogAdapter")
    monkeypatch.setattr(ChosenCatalogAdapter, "accounts", [])
    monkeypatch.setattr(ChosenCatalogAdapter, "error", None)
    return ChosenCatalogAdapter


def dba(*, superuser: bool) -> AccountRecord:
    privilege = Privilege("global", "ALL PRIVILEGES" if superuser else "SELECT")
    return AccountRecord(
        identity="'dba'@'localhost'",
        username="dba",
        host="localhost",
        privileges=[privilege],
        capabilities={"SUPERUSER"} if superuser else set(),
    )


def open_codes() -> set[str]:
    return set(Finding.objects.filter(is_open=True).values_list("rule_code", flat=True))


def test_manual_single_sync_refreshes_findings(server, make_instance):
    inst = make_instance()
    server.accounts = [dba(superuser=True)]
    result = sync_accounts(instance=inst, sync_type="manual_single")
    assert result["success"], result["message"]
    assert result["details"]["findings"]["opened"] == 1
    finding = Finding.objects.get()
    assert (finding.rule_code, finding.session_id, finding.instance_id) == ("SUPERUSER", None, inst.pk)

    server.accounts = [dba(superuser=False)]
    assert sync_accounts(instance=inst, sync_type="manual_single")["details"]["findings"]["resolved"] == 1
    assert open_codes() == set()


def test_session_sync_refreshes_findings_with_the_session_id(server, make_instance, alice):
    inst = make_instance()
    server.accounts = [dba(superuser=True)]
    session = sync_session_start(instances=[inst], sync_type="manual_batch", created_by=alice, enqueue=False)
    outcome = sync_session_run(session=session)
    assert outcome["status"] == "completed"
    assert Finding.objects.get().session_id == session.session_id
    record = SyncInstanceRecord.objects.get(session=session)
    assert record.details["findings"] == {"opened": 1, "resolved": 0, "updated": 0, "open": 1, "accounts": 1}

    server.accounts = [dba(superuser=False)]
    later = sync_session_start(instances=[inst], sync_type="manual_batch", created_by=alice, enqueue=False)
    sync_session_run(session=later)
    assert Finding.objects.get().resolved_session_id == later.session_id


def test_failed_sync_leaves_findings_as_they_were(server, make_instance):
    inst = make_instance()
    server.accounts = [dba(superuser=True)]
    sync_accounts(instance=inst, sync_type="manual_single")
    server.error = ConnectionFailed("cannot connect to 127.0.0.1:3306", instance_name=inst.name)
    result: dict[str, Any] = sync_accounts(instance=inst, sync_type="manual_single")
    assert result["success"] is False and "findings" not in result["details"]
    assert open_codes() == {"SUPERUSER"}

"""The sync hook: findings refresh after every successful sync, whatever its type.

The only stand-in is the remote server: a registered adapter that returns the
catalog the test chose (the adapter registry is the boundary a new database
family plugs into). Leases, sessions, records and the engine are all real.
"""

from __future__ import annotations

from typing import Any

import pytest

from accountsync.adapters.base import AccountRecord, ConnectionFailed, Privilege
from findings.models import Finding
from sync.models import SyncInstanceRecord
from sync.services import sync_accounts, sync_session_run, sync_session_start

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(chosen_server):
    return chosen_server


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

"""Findings open, stay, update and resolve with the syncs that change their causes.

The engine is real (`account_sync_apply` writes accounts and snapshots exactly
as a sync does); only the remote fetch is replaced, by catalogs built here.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accountsync.adapters.base import AccountRecord, Catalog, Privilege
from accountsync.services import account_sync_apply
from findings.models import Finding
from findings.rules import Policy
from findings.services import findings_after_sync, findings_refresh

pytestmark = pytest.mark.django_db

SUPER = Privilege("global", "ALL PRIVILEGES")
SELECT = Privilege("database:sales", "SELECT")


def account(
    name: str, host: str = "localhost", *privileges: Privilege, caps: set[str] | None = None, locked: bool = False
) -> AccountRecord:
    """A MySQL-shaped account; capabilities as the MySQL adapter derives them."""
    derived = set(caps or ())
    if SUPER in privileges:
        derived.add("SUPERUSER")
    if any(p.grantable for p in privileges):
        derived.add("GRANT_ADMIN")
    if "%" in host:
        derived.add("WILDCARD_HOST")
    if locked:
        derived.add("LOCKED")
    return AccountRecord(
        identity=f"'{name}'@'{host}'",
        username=name,
        host=host,
        privileges=list(privileges),
        capabilities=derived,
        is_locked=locked,
        attributes={"auth_plugin": "mysql_native_password", "locked": locked},
    )


def sync(instance: Any, *accounts: AccountRecord, session: uuid.UUID | None = None, **kw: Any):
    result = account_sync_apply(instance=instance, catalog=Catalog(accounts=list(accounts)).finalize(), force=True)
    assert result.success, result.message
    return findings_refresh(instance=instance, session_id=session, **kw)


def open_findings(instance: Any) -> set[tuple[str, str]]:
    return set(Finding.objects.filter(instance=instance, is_open=True).values_list("account__identity", "rule_code"))


def finding_writes(ctx: CaptureQueriesContext) -> list[str]:
    return [
        q["sql"]
        for q in ctx.captured_queries
        if "findings_finding" in q["sql"] and q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
    ]


def test_findings_open_stay_resolve_and_reopen_as_causes_come_and_go(make_instance):
    inst = make_instance()
    s1, s2, s3, s4 = (uuid.uuid4() for _ in range(4))
    dba, app = "'dba'@'%'", "'app'@'localhost'"

    first = sync(inst, account("dba", "%", SUPER), account("app", "localhost", SELECT), session=s1)
    assert open_findings(inst) == {(dba, "SUPERUSER"), (dba, "WILDCARD_HOST")}
    assert (first.opened, first.resolved, first.accounts) == (2, 0, 2)
    superuser = Finding.objects.get(account__identity=dba, rule_code="SUPERUSER")
    assert (superuser.severity, superuser.session_id, superuser.resolved_at) == ("high", s1, None)
    assert superuser.detail == {"capabilities": ["SUPERUSER"]}

    with CaptureQueriesContext(connection) as ctx:
        again = sync(inst, account("dba", "%", SUPER), account("app", "localhost", SELECT), session=s2)
    assert (again.opened, again.resolved, again.updated, again.open_total) == (0, 0, 0, 2)
    assert finding_writes(ctx) == []

    sync(inst, account("dba", "%", SELECT), account("app", "localhost", SELECT), session=s3)
    superuser.refresh_from_db()
    assert superuser.is_open is False and superuser.resolved_at is not None and superuser.resolved_session_id == s3
    assert open_findings(inst) == {(dba, "WILDCARD_HOST")}

    gone = sync(inst, account("app", "localhost", SELECT), session=s4)  # dba dropped on the server
    assert gone.resolved == 1 and open_findings(inst) == set()

    sync(inst, account("dba", "%", SUPER), account("app", "localhost", SELECT))
    assert open_findings(inst) == {(dba, "SUPERUSER"), (dba, "WILDCARD_HOST")}
    history = list(
        Finding.objects.filter(account__identity=dba, rule_code="SUPERUSER")
        .order_by("id")
        .values_list("is_open", flat=True)
    )
    assert history == [False, True]  # the old episode is kept, a new one opened
    assert Finding.objects.filter(account__identity=app).count() == 0


def test_changed_detail_updates_the_open_finding_in_place(make_instance):
    inst = make_instance()
    sync(inst, account("lead", "localhost", Privilege("database:sales", "SELECT", True)))
    row = Finding.objects.get(rule_code="GRANT_OPTION")
    grown = sync(
        inst,
        account(
            "lead", "localhost", Privilege("database:sales", "SELECT", True), Privilege("database:hr", "INSERT", True)
        ),
    )
    assert (grown.opened, grown.updated, grown.resolved) == (0, 1, 0)
    assert Finding.objects.filter(rule_code="GRANT_OPTION").count() == 1
    row.refresh_from_db()
    assert row.is_open and row.detail["grantable"] == {
        "count": 2,
        "examples": ["INSERT on database:hr", "SELECT on database:sales"],
    }


def test_locking_moves_superuser_to_locked_privileged(make_instance):
    inst = make_instance()
    sync(inst, account("root", "localhost", SUPER))
    sync(inst, account("root", "localhost", SUPER, locked=True))
    assert open_findings(inst) == {("'root'@'localhost'", "LOCKED_PRIVILEGED")}
    assert Finding.objects.get(rule_code="SUPERUSER").is_open is False


def test_policy_change_resolves_at_the_next_refresh(make_instance):
    inst = make_instance()
    sync(inst, account("dba", "%", SUPER))
    result = findings_refresh(instance=inst, policy=Policy(disabled_rules=frozenset({"WILDCARD_HOST"})))
    assert result.resolved == 1 and open_findings(inst) == {("'dba'@'%'", "SUPERUSER")}


def test_instances_are_independent(make_instance):
    a, b = make_instance(), make_instance()
    sync(a, account("dba", "%", SUPER))
    sync(b, account("app", "localhost", SELECT))
    assert open_findings(a) == {("'dba'@'%'", "SUPERUSER"), ("'dba'@'%'", "WILDCARD_HOST")}
    assert open_findings(b) == set()


def test_ten_thousand_accounts_cost_a_constant_number_of_queries(make_instance, django_assert_max_num_queries):
    inst = make_instance()
    accounts = [account(f"u{i}", "%" if i % 2 else "localhost", SUPER if i % 5 == 0 else SELECT) for i in range(10_000)]
    account_sync_apply(instance=inst, catalog=Catalog(accounts=accounts).finalize())
    # +2 over the evaluation itself: the catalog digest read first, the refresh state's upsert (RefreshState)
    with django_assert_max_num_queries(10):
        first = findings_refresh(instance=inst)
    assert (first.accounts, first.opened) == (10_000, 5_000 + 2_000)
    assert Finding.objects.filter(instance=inst, is_open=True).count() == 7_000

    with django_assert_max_num_queries(6), CaptureQueriesContext(connection) as ctx:
        same = findings_refresh(instance=inst)
    assert same.opened == same.resolved == same.updated == 0 and finding_writes(ctx) == []

    fixed = [account(f"u{i}", "localhost", SELECT) for i in range(10_000)]
    account_sync_apply(instance=inst, catalog=Catalog(accounts=fixed).finalize())
    with django_assert_max_num_queries(16):
        resolved = findings_refresh(instance=inst)
    assert resolved.resolved == 7_000 and not Finding.objects.filter(instance=inst, is_open=True).exists()


def test_opened_and_resolved_findings_are_logged_with_structured_keys(make_instance, caplog):
    inst = make_instance()
    session = uuid.uuid4()
    with caplog.at_level(logging.INFO, logger="findings.services"):
        sync(inst, account("dba", "localhost", SUPER), session=session)
        sync(inst, account("dba", "localhost", SELECT), session=session)
    events = [getattr(r, "wf", {}) for r in caplog.records if r.name == "findings.services"]
    by_phase = {e["phase"]: e for e in events if e.get("rule") == "SUPERUSER"}
    for phase in ("opened", "resolved"):
        event = by_phase[phase]
        assert {k: event[k] for k in ("module", "operation", "instance_id", "db_type", "session_id")} == {
            "module": "findings",
            "operation": "findings_refresh",
            "instance_id": inst.pk,
            "db_type": "mysql",
            "session_id": session,
        }
        assert event["severity"] == "high"
    messages = [r.getMessage() for r in caplog.records if r.name == "findings.services"]
    assert f"{inst.name}: finding SUPERUSER opened for 'dba'@'localhost'" in messages
    assert f"{inst.name}: finding SUPERUSER resolved for 'dba'@'localhost'" in messages
    assert sum("findings refreshed" in m for m in messages) == 2


def test_after_sync_hook_skips_failed_syncs_and_swallows_its_own_errors(make_instance, monkeypatch, caplog):
    inst = make_instance()
    account_sync_apply(instance=inst, catalog=Catalog(accounts=[account("dba", "%", SUPER)]).finalize())
    assert findings_after_sync(instance=inst, session_id=None, result={"success": False}) is None
    assert not Finding.objects.exists()

    result: dict[str, Any] = {"success": True, "details": {}}
    summary = findings_after_sync(instance=inst, session_id=None, result=result)
    assert (
        summary == result["details"]["findings"] == {"opened": 2, "resolved": 0, "updated": 0, "open": 2, "accounts": 1}
    )

    def broken(**_kw: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr("findings.services.findings_refresh", broken)
    with caplog.at_level(logging.ERROR, logger="findings.services"):
        assert findings_after_sync(instance=inst, session_id=None, result={"success": True, "details": {}}) is None
    assert any("findings refresh failed (RuntimeError: disk full)" in r.getMessage() for r in caplog.records)

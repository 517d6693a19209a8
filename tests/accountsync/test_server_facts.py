"""Server-wide facts are stored once per version, not in every sync record (issue #19, part 2).

Why through the real engine: the size of a record is what `sync_accounts` writes, after the
post-sync hooks; the versions are what the point-in-time readers and the findings read. Only
`oracledb.connect` is replaced, by the recorded 19c server (tests/accountsync/oracle_rows.py),
with PUBLIC given 20,000 of Oracle's own grants as a real dictionary shows tens of thousands.
"""

from __future__ import annotations

import importlib
import json
from datetime import timedelta

import pytest
from django.apps import apps as global_apps
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accountsync.adapters.base import Catalog
from accountsync.effective_read import account_effective_access
from accountsync.facts import record_server_facts, server_facts_at
from accountsync.models import InstanceAccount, InstanceServerFacts
from accountsync.services import account_sync_apply
from findings.models import Finding
from findings.services import findings_after_sync
from sync.models import SyncInstanceRecord, SyncSession
from sync.services import sync_accounts
from tests.accountsync.oracle_rows import load, recorded_server

PUBLIC_DEFAULTS = 20_000
RECORD_MAX_BYTES = 4096


def _public_row(owner: str, name: str, privilege: str = "SELECT", kind: str = "VIEW") -> list[str]:
    return ["PUBLIC", owner, name, owner, privilege, "NO", "NO", "NO", kind, "NO"]


def _with_public_defaults(fixture: dict, n: int = PUBLIC_DEFAULTS) -> dict:
    rows = fixture["views"]["DBA_TAB_PRIVS"]["rows"]
    rows += [_public_row("SYS", f"WF_DICT_VIEW_{i:05d}") for i in range(n)]
    return fixture


def _record_bytes(record: SyncInstanceRecord) -> int:
    return len(json.dumps(record.details, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _sync(instance) -> tuple[dict, SyncInstanceRecord]:
    # a scheduled sync: a session and its record, as the daily case writes them
    result = sync_accounts(instance=instance, sync_type="scheduled_task")
    assert result["success"], result["message"]
    return result, SyncInstanceRecord.objects.filter(instance=instance).latest("id")


@pytest.fixture
def big_oracle(db, monkeypatch, make_instance):
    state = recorded_server(monkeypatch, _with_public_defaults(load("catalog_19c.json")))
    instance = make_instance("oracle", port=1521, database_name="ORCLPDB1", name="ora-big")
    return instance, state


def test_an_unchanged_oracle_instance_stores_its_public_grants_once(big_oracle, capsys) -> None:
    instance, _state = big_oracle
    _first, one = _sync(instance)
    _second, two = _sync(instance)

    versions = list(InstanceServerFacts.objects.filter(instance=instance))
    assert len(versions) == 1 and versions[0].valid_to is None
    stored = versions[0].facts["public_grants"]
    assert len(stored["privileges"]) >= PUBLIC_DEFAULTS and stored["oracle_defaults"] >= PUBLIC_DEFAULTS
    for record, written in ((one, True), (two, False)):
        details = record.details
        assert details["server_facts"]["id"] == versions[0].pk and details["server_facts"]["new"] is written
        assert details["public_grants"]["facts_id"] == versions[0].pk
        assert details["public_grants"]["count"] == len(stored["privileges"]) + len(stored["roles"])
        assert details["container"] == "ORCLPDB1"  # small facts stay readable in the record
        assert "findings" in details  # the post-sync hooks ran on the small details
        assert _record_bytes(record) < RECORD_MAX_BYTES
    # the old shape: the same details with the facts copied in
    before = len(json.dumps({**two.details, **versions[0].facts}, separators=(",", ":")).encode("utf-8"))
    with capsys.disabled():
        print(
            f"\nrecord details per Oracle sync ({PUBLIC_DEFAULTS} PUBLIC grants): "
            f"before {before} bytes, after {_record_bytes(two)} bytes (facts stored once: "
            f"{len(json.dumps(versions[0].facts))} bytes)"
        )
    assert before > 100 * _record_bytes(two)


def test_changed_facts_start_a_new_version_and_close_the_old_one(big_oracle) -> None:
    instance, state = big_oracle
    _sync(instance)
    state["views"]["DBA_TAB_PRIVS"]["rows"].append(_public_row("SYS", "DBMS_WF_NEW", "EXECUTE", "PACKAGE"))
    _result, record = _sync(instance)

    old, new = InstanceServerFacts.objects.filter(instance=instance).order_by("valid_from")
    assert old.valid_to == new.valid_from and new.valid_to is None
    assert old.digest != new.digest
    assert record.details["server_facts"] == {
        "id": new.pk,
        "digest": new.digest,
        "valid_from": new.valid_from.isoformat(),
        "new": True,
    }
    scopes = {p["scope"] for p in new.facts["public_grants"]["privileges"]}
    assert "object:SYS.DBMS_WF_NEW" in scopes
    assert "object:SYS.DBMS_WF_NEW" not in {p["scope"] for p in old.facts["public_grants"]["privileges"]}


def _via_public(grants) -> dict[tuple[str, str], tuple[str, ...]]:
    return {(g.scope, g.privilege): g.via for g in grants if g.via and g.via[0] == "PUBLIC"}


def test_point_in_time_effective_access_of_an_oracle_user_through_public(db, monkeypatch, make_instance) -> None:
    """What OPERATOR1 held through PUBLIC before and after PUBLIC lost DBMS_LOB and gained DBMS_WF_NEW."""
    state = recorded_server(monkeypatch, load("catalog_19c.json"))
    instance = make_instance("oracle", port=1521, database_name="ORCLPDB1", name="ora-pit")
    _sync(instance)
    first_moment = timezone.now()
    rows = state["views"]["DBA_TAB_PRIVS"]["rows"]
    rows[:] = [r for r in rows if not (r[0] == "PUBLIC" and r[2] == "DBMS_LOB")]
    rows.append(_public_row("SYS", "DBMS_WF_NEW", "EXECUTE", "PACKAGE"))
    _sync(instance)
    second_moment = timezone.now()

    account = InstanceAccount.objects.get(instance=instance, identity="OPERATOR1")
    then = _via_public(account_effective_access(account=account, at=first_moment, include_public=True))
    now = _via_public(account_effective_access(account=account, at=second_moment, include_public=True))
    current = _via_public(account_effective_access(account=account, include_public=True))
    assert then[("object:SYS.DBMS_LOB", "EXECUTE")] == ("PUBLIC",)
    assert ("object:SYS.DBMS_WF_NEW", "EXECUTE") not in then
    assert ("object:SYS.DBMS_LOB", "EXECUTE") not in now
    assert now[("object:SYS.DBMS_WF_NEW", "EXECUTE")] == ("PUBLIC",)
    assert current == now
    # the role granted to PUBLIC is followed too (its snapshot is loaded although OPERATOR1 holds no role)
    assert any(via[:2] == ("PUBLIC", "APP_READ") for via in now.values())
    # before the first sync nothing was known
    assert account_effective_access(account=account, at=first_moment - timedelta(days=1), include_public=True) == []
    # left out unless asked for, as before
    assert not _via_public(account_effective_access(account=account, at=second_moment))


def test_public_grants_finding_is_unchanged(db, monkeypatch, make_instance) -> None:
    """PUBLIC_GRANTS reads PUBLIC's snapshot (what it holds beyond Oracle's defaults), never the facts."""
    recorded_server(monkeypatch, _with_public_defaults(load("catalog_19c.json"), 50))
    instance = make_instance("oracle", port=1521, database_name="ORCLPDB1", name="ora-find")
    _sync(instance)
    finding = Finding.objects.get(instance=instance, is_open=True, rule_code="PUBLIC_GRANTS")
    assert finding.account.identity == "PUBLIC"
    shown = json.dumps(finding.detail)
    assert "APP_OWNER.PRICES" in shown and "WF_DICT_VIEW" not in shown
    assert "APP_READ" in shown


def test_findings_read_the_password_lifetime_from_the_stored_facts(db, make_instance, settings) -> None:
    """MySQL's default_password_lifetime reaches the findings through the version the details name."""
    settings.WHALEFALL_FINDINGS_POLICY = {"require_password_expiry": True}
    from tests.accountsync.test_engine import acct, catalog

    instance = make_instance("mysql")
    cat = catalog(acct("alice", ("database:sales", "SELECT")))
    cat.details.update(default_password_lifetime=0, public_grants=[])
    result = account_sync_apply(instance=instance, catalog=cat).as_dict()
    assert result["details"]["public_grants"]["count"] == 0
    # the details keep only the reference: drop the inline scalar to prove the facts are read
    del result["details"]["default_password_lifetime"]
    unreferenced = {**result, "details": {k: v for k, v in result["details"].items() if k != "server_facts"}}
    findings_after_sync(instance=instance, session_id=None, result=unreferenced)
    assert not Finding.objects.filter(instance=instance, rule_code="PASSWORD_NEVER_EXPIRES").exists()
    findings_after_sync(instance=instance, session_id=None, result=result)
    codes = set(Finding.objects.filter(instance=instance, is_open=True).values_list("rule_code", flat=True))
    assert "PASSWORD_NEVER_EXPIRES" in codes


def test_old_records_with_inline_facts_still_read(db) -> None:
    public = {"privileges": [{"scope": "object:SYS.X", "privilege": "EXECUTE", "grantable": False}], "roles": []}
    old = {"inventory": {}, "public_grants": public, "container": "PDB1", "flavor": "x"}
    assert record_server_facts(old) == {"public_grants": public, "container": "PDB1"}
    assert record_server_facts(None) == {}
    # a reference without its version falls back to the inline small facts, never to the counts
    gone = {"server_facts": {"id": 987654}, "public_grants": {"count": 3, "facts_id": 987654}, "container": "P"}
    assert record_server_facts(gone) == {"container": "P"}


def _record(instance, at, details: dict) -> SyncInstanceRecord:
    return SyncInstanceRecord.objects.create(
        session=SyncSession.objects.create(sync_type="scheduled_task"),
        instance=instance,
        instance_name=instance.name,
        status="completed",
        started_at=at,
        completed_at=at,
        details=details,
    )


def test_the_backfill_migration_gives_old_records_versions(db, make_instance) -> None:
    """Records from before 0008 carried their facts inline: 0009 turns their changes into versions."""
    migration = importlib.import_module("accountsync.migrations.0009_server_facts_backfill")
    ora, pg = make_instance("oracle", port=1521, name="ora-old"), make_instance("postgresql", port=5432)
    t0 = timezone.now() - timedelta(days=10)
    a = {"public_grants": {"privileges": [{"scope": "object:SYS.A", "privilege": "EXECUTE"}], "roles": []}}
    b = {"public_grants": {"privileges": [{"scope": "object:SYS.B", "privilege": "EXECUTE"}], "roles": []}}
    _record(ora, t0, {"inventory": {}, **a})
    _record(ora, t0 + timedelta(days=1), {"inventory": {}, **a})
    _record(ora, t0 + timedelta(days=2), {"inventory": {}, **b})
    _record(pg, t0, {"inventory": {}, "public_grants": []})
    _record(pg, t0 + timedelta(days=1), {"inventory": {}})  # no facts: not a version
    failed = _record(pg, t0 + timedelta(days=3), {"public_grants": [{"scope": "x"}]})
    SyncInstanceRecord.objects.filter(pk=failed.pk).update(status="failed")

    migration.forwards(global_apps, None)

    first, second = InstanceServerFacts.objects.filter(instance=ora).order_by("valid_from")
    assert (first.facts, first.valid_from, first.valid_to) == (a, t0, t0 + timedelta(days=2))
    assert (second.facts, second.valid_from, second.valid_to) == (b, t0 + timedelta(days=2), None)
    (only,) = InstanceServerFacts.objects.filter(instance=pg)
    assert only.facts == {"public_grants": []} and only.valid_to is None
    assert server_facts_at(ora.pk, t0 + timedelta(days=1)) == a
    assert server_facts_at(ora.pk) == b
    assert server_facts_at(ora.pk, t0 - timedelta(seconds=1)) == {}
    # the records themselves are left as they were
    assert SyncInstanceRecord.objects.filter(instance=ora, details__has_key="public_grants").count() == 3


def test_api_and_admin_say_where_the_facts_are(big_oracle, admin_user) -> None:
    instance, _state = big_oracle
    _result, record = _sync(instance)
    version = InstanceServerFacts.objects.get(instance=instance)

    token, _ = Token.objects.get_or_create(user=admin_user)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    body = api.get("/api/v1/sync-records/", {"ids": str(record.pk)})
    assert body.status_code == 200, body.content
    (shown,) = body.json()["records"]
    assert shown["server_facts"] == {"id": version.pk, "digest": version.digest}
    assert shown["details"]["public_grants"] == {
        "count": shown["details"]["public_grants"]["count"],
        "facts_id": version.pk,
    }

    listed = api.get("/api/v1/server-facts/", {"instance": instance.pk, "at": timezone.now().isoformat()})
    assert listed.status_code == 200, listed.content
    (row,) = listed.json()["results"]
    assert row["id"] == version.pk and "facts" not in row
    one = api.get(f"/api/v1/server-facts/{version.pk}/")
    assert one.status_code == 200
    assert len(one.json()["facts"]["public_grants"]["privileges"]) >= PUBLIC_DEFAULTS
    assert one.json()["counts"]["public_grants"] == shown["details"]["public_grants"]["count"]
    bad = api.get("/api/v1/server-facts/", {"at": "not a time"})
    assert bad.status_code == 400 and bad["Content-Type"].startswith("application/json")

    client = Client()
    client.force_login(admin_user)
    page = client.get(reverse("admin:sync_syncinstancerecord_change", args=[record.pk]))
    facts_url = reverse("admin:accountsync_instanceserverfacts_change", args=[version.pk])
    assert page.status_code == 200 and facts_url in page.content.decode()
    facts_page = client.get(facts_url)
    assert facts_page.status_code == 200
    assert "WF_DICT_VIEW_00000" in facts_page.content.decode()
    assert client.get(reverse("admin:accountsync_instanceserverfacts_changelist")).status_code == 200


def test_effective_access_ignores_a_record_reference_in_place_of_the_grants() -> None:
    """A record's details given to the engine by mistake: a reference is no list of PUBLIC's grants."""
    from accountsync.adapters.base import AccountRecord
    from accountsync.effective import effective_access

    user = AccountRecord(identity="U", username="U", kind="user", host=None, attributes={})
    ref = {"public_grants": {"count": 3, "facts_id": 1}}
    assert effective_access(Catalog(accounts=[user], details=ref), family="oracle") == {"U": []}

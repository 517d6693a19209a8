"""A no-change re-sync skips the findings refresh only when its outcome provably cannot differ.

The stand-in is the remote server (tests/chosen.py with digests on, so an unchanged catalog is
reported unchanged as a real adapter does); the engine, the hooks and the refresh are real. Each
input of the outcome gets a test that changing it alone re-evaluates: the policy, the rule table,
the clock crossing a password expiry, the clock crossing a dormant threshold. Time is moved by
replacing the clocks the findings code reads, never by waiting.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import findings.rules
import findings.services
from accountsync.adapters.base import AccountRecord, Privilege
from findings.models import Finding, RefreshState
from findings.rules import Rule
from findings.services import findings_after_sync
from sync.services import sync_accounts

pytestmark = pytest.mark.django_db


def dba(**attributes: Any) -> AccountRecord:
    return AccountRecord(
        identity="'dba'@'localhost'",
        username="dba",
        host="localhost",
        privileges=[Privilege("global", "ALL PRIVILEGES")],
        capabilities={"SUPERUSER"},
        attributes={"auth_plugin": "mysql_native_password", **attributes},
    )


def app(*capabilities: str, **attributes: Any) -> AccountRecord:
    return AccountRecord(
        identity="'app'@'localhost'",
        username="app",
        host="localhost",
        privileges=[Privilege("database:sales", "SELECT")],
        capabilities=set(capabilities),
        attributes={"auth_plugin": "mysql_native_password", **attributes},
    )


@pytest.fixture
def server(chosen_server):
    chosen_server.digests = True
    return chosen_server


def resync(instance: Any) -> dict[str, Any]:
    result = sync_accounts(instance=instance, sync_type="manual_single")
    assert result["success"], result["message"]
    return result["details"]["findings"]


def open_codes(instance: Any) -> set[str]:
    return set(Finding.objects.filter(instance=instance, is_open=True).values_list("rule_code", flat=True))


def move_clocks(monkeypatch: pytest.MonkeyPatch, later: datetime) -> None:
    """The clocks the findings code reads: the skip's (services) and the rules' today (rules)."""

    class Later(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return later if tz is not None else later.replace(tzinfo=None)

    monkeypatch.setattr(findings.services, "timezone", SimpleNamespace(now=lambda: later))
    monkeypatch.setattr(findings.rules, "datetime", Later)


def test_unchanged_resync_skips_the_refresh_and_says_so(server, make_instance, caplog):
    inst = make_instance()
    server.accounts = [dba(), app()]
    first = resync(inst)
    assert (first["opened"], first["open"], first["accounts"]) == (1, 1, 2) and "skipped" not in first

    with caplog.at_level(logging.INFO, logger="findings.services"):
        again = resync(inst)
    assert again["skipped"] is True and again["reason"] == "catalog_and_inputs_unchanged"
    assert (again["opened"], again["resolved"], again["open"], again["accounts"]) == (0, 0, 1, 2)
    assert again["valid_until"] is None  # no time-dependent rule can flip for these accounts
    skipped = [getattr(r, "wf", {}) for r in caplog.records if getattr(r, "wf", {}).get("phase") == "skipped"]
    assert skipped and skipped[0]["instance_id"] == inst.pk and skipped[0]["operation"] == "findings_refresh"
    assert open_codes(inst) == {"SUPERUSER"}


def test_skip_reads_no_snapshot_and_costs_one_query(server, make_instance):
    inst = make_instance()
    server.accounts = [dba(), app()]
    resync(inst)
    inst.refresh_from_db()
    result: dict[str, Any] = {"success": True, "details": {}}
    with CaptureQueriesContext(connection) as ctx:
        summary = findings_after_sync(instance=inst, session_id=None, result=result, catalog_unchanged=True)
    assert summary is not None and summary["skipped"] is True
    assert len(ctx.captured_queries) == 1, [q["sql"] for q in ctx.captured_queries]
    assert not any("accountsync_accountpermission" in q["sql"] for q in ctx.captured_queries)
    assert not any("findings_finding" in q["sql"] for q in ctx.captured_queries)


def test_a_changed_catalog_or_no_digest_always_refreshes(server, make_instance):
    inst = make_instance()
    server.accounts = [dba(), app()]
    resync(inst)
    inst.refresh_from_db()
    changed = findings_after_sync(instance=inst, session_id=None, result={"success": True, "details": {}})
    assert changed is not None and "skipped" not in changed  # catalog_unchanged not claimed

    inst.catalog_digest = ""  # an adapter without digests can never prove its snapshots unchanged
    unproven = findings_after_sync(
        instance=inst, session_id=None, result={"success": True, "details": {}}, catalog_unchanged=True
    )
    assert unproven is not None and "skipped" not in unproven


def test_a_policy_change_re_evaluates(server, make_instance, settings):
    inst = make_instance()
    server.accounts = [dba(), app()]
    resync(inst)
    assert resync(inst)["skipped"] is True

    settings.WHALEFALL_FINDINGS_POLICY = {"disabled_rules": ["SUPERUSER"]}
    summary = resync(inst)
    assert "skipped" not in summary and summary["resolved"] == 1
    assert open_codes(inst) == set()
    assert resync(inst)["skipped"] is True  # the new policy's outcome is the stored one now


def test_a_rule_added_re_evaluates(server, make_instance, monkeypatch):
    inst = make_instance()
    server.accounts = [dba(), app()]
    resync(inst)
    assert resync(inst)["skipped"] is True

    def _everyone(_s: Any, _p: Any) -> dict[str, Any]:
        return {"note": "test rule"}

    extra = Rule("TEST_EVERYONE", "info", "Everyone", _everyone, "A rule every account meets.")
    monkeypatch.setattr(findings.rules, "RULES", (*findings.rules.RULES, extra))
    monkeypatch.setattr(findings.services, "EVALUATED_CODES", findings.services.EVALUATED_CODES | {extra.code})
    summary = resync(inst)
    assert "skipped" not in summary and summary["opened"] == 2
    assert open_codes(inst) == {"SUPERUSER", "TEST_EVERYONE"}


def test_a_password_crossing_its_expiry_re_evaluates(server, make_instance, monkeypatch):
    inst = make_instance()
    expires = (timezone.now() + timedelta(days=1)).replace(microsecond=0)
    server.accounts = [dba(), app(valid_until=expires.isoformat())]
    resync(inst)
    again = resync(inst)
    assert again["skipped"] is True and again["valid_until"] == expires.isoformat()

    # the clock passes the expiry: even a catalog still reported unchanged is re-evaluated
    move_clocks(monkeypatch, expires + timedelta(hours=1))
    summary = resync(inst)
    assert "skipped" not in summary
    assert RefreshState.objects.get(instance=inst).valid_until is None  # the moment has passed: none left

    # and the real adapters' digest decides expiry moments, so the sync applies the account expired
    server.accounts = [dba(), app("EXPIRED", valid_until=expires.isoformat())]
    expired = resync(inst)
    assert "skipped" not in expired and expired["opened"] == 1
    assert open_codes(inst) == {"SUPERUSER", "PASSWORD_EXPIRED"}


def test_a_dormant_threshold_crossing_re_evaluates(server, make_instance, monkeypatch):
    inst = make_instance()
    today = datetime.now(UTC).date()
    last_login = today - timedelta(days=80)  # the default dormant_days is 90: ten days to go
    server.accounts = [dba(last_login=last_login.isoformat()), app()]
    resync(inst)
    assert open_codes(inst) == {"SUPERUSER"}
    threshold = datetime.combine(last_login + timedelta(days=90), datetime.min.time(), tzinfo=UTC)
    again = resync(inst)
    assert again["skipped"] is True and again["valid_until"] == threshold.isoformat()

    move_clocks(monkeypatch, threshold - timedelta(seconds=1))  # the day before: the outcome holds
    assert resync(inst)["skipped"] is True

    move_clocks(monkeypatch, threshold + timedelta(minutes=5))
    summary = resync(inst)
    assert "skipped" not in summary and summary["opened"] == 1
    assert open_codes(inst) == {"SUPERUSER", "DORMANT_PRIVILEGED"}

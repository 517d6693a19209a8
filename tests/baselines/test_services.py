"""Approving, versioning, audit, and the DRIFT findings baselines_evaluate keeps equal to the delta."""

from __future__ import annotations

import pytest
from auditlog.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone

from audit.models import AuditEvent
from baselines.models import Baseline, BaselineEntry, BaselineVersion
from baselines.services import BaselineError, baseline_approve, baselines_after_sync, baselines_evaluate
from classification.models import Classification, ClassificationAssignment
from config.registry import post_sync_hooks
from findings.models import Finding
from findings.rules import RULES_BY_CODE
from tests.baselines.conftest import ITEMS, ORDERS, SHOP

pytestmark = pytest.mark.django_db

BASE = {"readers": [(ORDERS, "SELECT")], "ann": [(SHOP, "SELECT")]}
HOLDS = {"ann": ["readers"]}


def drift(account):
    return list(Finding.objects.filter(account=account, rule_code="DRIFT").order_by("id"))


def open_drift(account):
    return [f for f in drift(account) if f.is_open]


def test_the_rule_and_the_hook_are_registered():
    rule = RULES_BY_CODE["DRIFT"]
    assert rule.severity == "high"
    hook = next(h for h in post_sync_hooks() if h.name == "baselines")
    assert hook.order == 160
    names = [h.name for h in post_sync_hooks()]
    assert names.index("findings") < names.index("baselines")


def test_approving_an_account_stores_its_effective_access_versioned_and_audited(apply, alice):
    accounts = apply(BASE, HOLDS)
    ann = accounts["ann"]
    first = baseline_approve(kind="account", subject=ann, comment="CHG-1 initial sign-off", user=alice)
    (entry,) = BaselineEntry.objects.filter(version=first)
    assert entry.access == {
        "grants": [[ORDERS, "SELECT", "GRANT", False, ["readers"]], [SHOP, "SELECT", "GRANT", False, []]],
        "roles": [["readers", False]],
        "capabilities": [],
    }
    assert (first.version, first.is_current, first.approved_by, first.comment) == (
        1,
        True,
        alice,
        "CHG-1 initial sign-off",
    )
    assert open_drift(ann) == []

    second = baseline_approve(kind="account", subject=ann, comment="CHG-2 reviewed again", user=alice)
    baseline = Baseline.objects.get(kind="account", account=ann)
    assert baseline.version == 2
    assert list(baseline.versions.order_by("version").values_list("version", "is_current")) == [(1, False), (2, True)]
    assert BaselineEntry.objects.filter(version=first).count() == 1  # the old version keeps its entries
    assert second.baseline_id == first.baseline_id

    events = AuditEvent.objects.filter(kind="baseline_approved").order_by("id")
    assert [(e.actor, e.details["version"], e.details["comment"]) for e in events] == [
        (alice, 1, "CHG-1 initial sign-off"),
        (alice, 2, "CHG-2 reviewed again"),
    ]
    assert events[0].object_type == "baselines.baseline" and events[0].object_id == str(baseline.pk)
    history = LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(BaselineVersion))
    assert history.filter(action=LogEntry.Action.CREATE).count() == 2


def test_approval_needs_a_comment_and_an_active_account(apply, alice):
    ann = apply(BASE, HOLDS)["ann"]
    with pytest.raises(BaselineError, match="comment is required"):
        baseline_approve(kind="account", subject=ann, comment="   ", user=alice)
    ann.is_active = False
    ann.save(update_fields=["is_active"])
    with pytest.raises(BaselineError, match="deactivated"):
        baseline_approve(kind="account", subject=ann, comment="ok", user=alice)
    assert not Baseline.objects.exists()


def test_an_extra_grant_opens_drift_with_the_exact_delta_and_the_revoke_closes_it(apply, alice, pg):
    ann = apply(BASE, HOLDS)["ann"]
    version = baseline_approve(kind="account", subject=ann, comment="signed", user=alice)
    apply({**BASE, "ann": [(SHOP, "SELECT"), (ITEMS, "DELETE")]}, HOLDS)
    summary = baselines_evaluate(instance=pg)
    assert (summary["opened"], summary["drifting"]) == (1, 1)
    (finding,) = open_drift(ann)
    assert finding.severity == "high"
    assert finding.detail["added"] == [{"scope": ITEMS, "privilege": "DELETE", "grantable": False, "via": []}]
    assert finding.detail["missing"] == []
    assert finding.detail["baseline"]["id"] == version.baseline_id
    assert finding.detail["baseline"]["version"] == 1
    assert finding.detail["lines"] == [f"+ DELETE on {ITEMS} (via direct)"]

    apply(BASE, HOLDS)  # REVOKE
    assert baselines_evaluate(instance=pg)["resolved"] == 1
    assert open_drift(ann) == [] and drift(ann)[0].resolved_at is not None


def test_a_grant_to_a_held_role_drifts_with_the_role_path_and_approving_again_closes_it(apply, alice, pg):
    ann = apply(BASE, HOLDS)["ann"]
    baseline_approve(kind="account", subject=ann, comment="signed", user=alice)
    apply({**BASE, "readers": [(ORDERS, "SELECT"), (ORDERS, "UPDATE", True)]}, HOLDS)
    baselines_evaluate(instance=pg)
    (finding,) = open_drift(ann)
    assert finding.detail["added"] == [{"scope": ORDERS, "privilege": "UPDATE", "grantable": True, "via": ["readers"]}]

    again = baseline_approve(kind="account", subject=ann, comment="UPDATE approved in CHG-9", user=alice)
    assert again.version == 2
    assert open_drift(ann) == []  # closed by the approval itself, no sync needed


def test_access_short_of_the_baseline_and_a_lost_role(apply, alice, pg):
    ann = apply(BASE, HOLDS)["ann"]
    baseline_approve(kind="account", subject=ann, comment="signed", user=alice)
    apply({**BASE, "ann": []}, {"ann": []})
    baselines_evaluate(instance=pg)
    (finding,) = open_drift(ann)
    assert finding.detail["missing"] == [
        {"scope": ORDERS, "privilege": "SELECT", "grantable": False, "via": ["readers"]},
        {"scope": SHOP, "privilege": "SELECT", "grantable": False, "via": []},
    ]
    assert finding.detail["missing_roles"] == [{"role": "readers", "admin_option": False}]


def test_an_instance_baseline_covers_new_accounts_as_not_in_baseline(apply, alice, pg):
    accounts = apply(BASE, HOLDS)
    version = baseline_approve(kind="instance", subject=pg, comment="fleet sign-off", user=alice)
    assert version.account_count == 2  # ann and the role readers
    accounts = apply({**BASE, "bob": [(SHOP, "INSERT")]}, HOLDS)
    baselines_evaluate(instance=pg)
    (finding,) = open_drift(accounts["bob"])
    assert finding.detail["not_in_baseline"] is True
    assert finding.detail["baseline"]["kind"] == "instance"
    assert finding.detail["added"] == [{"scope": SHOP, "privilege": "INSERT", "grantable": False, "via": []}]
    assert open_drift(accounts["ann"]) == []

    # a newer account baseline for bob wins over "not in baseline"
    baseline_approve(kind="account", subject=accounts["bob"], comment="bob approved", user=alice)
    assert open_drift(accounts["bob"]) == []


def test_a_baselined_account_that_disappears_is_drift_missing_everything(apply, alice, pg):
    accounts = apply(BASE, HOLDS)
    baseline_approve(kind="instance", subject=pg, comment="fleet sign-off", user=alice)
    apply({"readers": [(ORDERS, "SELECT")]})
    baselines_evaluate(instance=pg)
    (finding,) = open_drift(accounts["ann"])
    assert finding.detail["account_active"] is False
    assert {m["scope"] for m in finding.detail["missing"]} == {ORDERS, SHOP}


def test_a_classification_baseline(apply, alice, pg):
    accounts = apply({**BASE, "bob": [(SHOP, "INSERT")]}, HOLDS)
    cls = Classification.objects.create(code="writers-test", name="Writers")
    now = timezone.now()
    ClassificationAssignment.objects.create(
        account=accounts["ann"], classification=cls, instance=pg, source="manual", assigned_at=now
    )
    version = baseline_approve(kind="classification", subject=cls, comment="writers reviewed", user=alice)
    assert list(version.entries.values_list("account_id", flat=True)) == [accounts["ann"].pk]
    ClassificationAssignment.objects.create(
        account=accounts["bob"], classification=cls, instance=pg, source="manual", assigned_at=now
    )
    baselines_evaluate(instance=pg)
    (finding,) = open_drift(accounts["bob"])
    assert finding.detail["not_in_baseline"] and finding.detail["baseline"]["kind"] == "classification"
    assert open_drift(accounts["ann"]) == []


def test_an_unreadable_scope_neither_closes_nor_opens_drift(apply, alice, pg):
    accounts = apply(BASE, HOLDS)
    ann = accounts["ann"]
    baseline_approve(kind="account", subject=ann, comment="signed", user=alice)
    # sales readable: an extra INSERT on sales opens drift
    apply({**BASE, "ann": [(SHOP, "SELECT"), (ITEMS, "INSERT")]}, HOLDS)
    baselines_evaluate(instance=pg)
    (finding,) = open_drift(ann)
    # sales becomes unreadable and the server no longer shows the INSERT: last known, kept; never "restored"
    apply({"readers": [], "ann": [(SHOP, "SELECT")]}, HOLDS, gaps=["database:sales"])
    assert "INSERT" in str(ann.permissions.get(valid_to__isnull=True).snapshot)  # the engine kept it
    summary = baselines_evaluate(instance=pg)
    assert summary["unverified"] == 1 and summary["resolved"] == 0
    assert [f.pk for f in open_drift(ann)] == [finding.pk]
    assert Finding.objects.get(pk=finding.pk).detail == finding.detail

    # a second account approved before the gap: its last-known difference there never opens drift
    bob_baseline = {**BASE, "bob": [(ITEMS, "SELECT")]}
    accounts = apply(bob_baseline, HOLDS)
    baseline_approve(kind="account", subject=accounts["bob"], comment="bob", user=alice)
    # bob's approved SELECT is missing now, but it lies in the unreadable database: not counted
    from baselines.models import BaselineEntry as Entry

    entry = Entry.objects.get(account=accounts["bob"], version__is_current=True)
    entry.access = {**entry.access, "grants": [*entry.access["grants"], [ORDERS, "DELETE", "GRANT", False, []]]}
    entry.save(update_fields=["access"])
    apply(bob_baseline, HOLDS, gaps=["database:sales"])
    baselines_evaluate(instance=pg)
    assert open_drift(accounts["bob"]) == []

    # readable again and restored: now it closes
    apply(BASE, HOLDS)
    baselines_evaluate(instance=pg)
    assert open_drift(ann) == []


def test_the_hook_never_raises_and_reports_its_summary(apply, alice, pg, monkeypatch):
    ann = apply(BASE, HOLDS)["ann"]
    baseline_approve(kind="account", subject=ann, comment="signed", user=alice)
    apply({**BASE, "ann": [(SHOP, "SELECT"), (SHOP, "DELETE")]}, HOLDS)
    result = {"success": True, "details": {}}
    summary = baselines_after_sync(instance=pg, session_id=None, result=result)
    assert result["details"]["baselines"] == summary and summary["opened"] == 1
    assert baselines_after_sync(instance=pg, session_id=None, result={"success": False}) is None

    def boom(**kwargs):
        raise RuntimeError("evaluation broke")

    monkeypatch.setattr("baselines.services.baselines_evaluate", boom)
    broken = {"success": True, "details": {}}
    assert baselines_after_sync(instance=pg, session_id=None, result=broken) is None
    assert "baselines" not in broken["details"]
    assert len(open_drift(ann)) == 1


def test_evaluation_is_set_based_its_query_count_does_not_grow_with_accounts(apply, alice, pg):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries_for(n: int) -> int:
        users = {f"u{i:03d}": [(SHOP, "SELECT")] for i in range(n)}
        apply({"readers": [(ORDERS, "SELECT")], **users}, {name: ["readers"] for name in users})
        baseline_approve(kind="instance", subject=pg, comment=f"{n} accounts", user=alice)
        apply({"readers": [(ORDERS, "SELECT"), (ITEMS, "SELECT")], **users}, {name: ["readers"] for name in users})
        with CaptureQueriesContext(connection) as ctx:
            summary = baselines_evaluate(instance=pg)
        assert summary["opened"] == n + 1  # every user and the role itself drift through the role
        return len(ctx.captured_queries)

    few = queries_for(3)
    Finding.objects.filter(rule_code="DRIFT").update(is_open=False, resolved_at=timezone.now())
    many = queries_for(60)
    assert many == few, (few, many)

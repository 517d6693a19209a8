"""Facts, evaluation, versioning, preview, manual decisions and the audit trail, through the real engine.

Catalogs are applied by `account_sync_apply` exactly as a sync writes them (only the remote fetch
is replaced); classification then runs as the post-sync hook does.
"""

from __future__ import annotations

import logging

import pytest
from auditlog.models import LogEntry
from django.core.exceptions import ValidationError
from django.utils import timezone

from accountsync.adapters.base import CoverageGap, GapKind, Privilege
from accountsync.models import InstanceAccount
from audit.models import AuditEvent
from classification.models import (
    Classification,
    ClassificationAssignment,
    ClassificationDailyCount,
    ClassificationRule,
    ClassificationRuleVersion,
    ManualAction,
)
from classification.selectors import account_classifications, classification_account_ids
from classification.services import (
    classification_evaluate,
    classification_on_sync_applied,
    manual_assign,
    manual_clear,
    rule_preview,
    rule_save,
)
from config.registry import post_sync_hooks
from sync.hooks import PostSyncEvent
from tests.classification.helpers import apply_and_classify, members, mysql_account

pytestmark = pytest.mark.django_db

SUPER = Privilege("global", "ALL PRIVILEGES")


@pytest.fixture
def prod(make_instance):
    return make_instance("mysql", name="prod-db", environment="production")


def fleet(instance, **kw):
    return apply_and_classify(
        instance,
        mysql_account("su", SUPER),
        mysql_account("app", Privilege("database:sales", "INSERT"), roles=("reader",)),
        mysql_account("reader", Privilege("object:sales.customers", "SELECT"), kind="role"),
        mysql_account("lonely", kind="role"),
        mysql_account("lk", locked=True),
        mysql_account("grantor", Privilege("database:sales", "SELECT", grantable=True)),
        **kw,
    )


def test_defaults_are_shipped_with_a_first_version() -> None:
    codes = set(Classification.objects.values_list("code", flat=True))
    assert {"superuser", "can-grant", "writes-production", "reads-production", "locked-expired", "unused-role"} <= codes
    for rule in ClassificationRule.objects.filter(classification__code__in=codes):
        assert rule.version == 1
        assert rule.versions.get().expression == rule.expression


def test_the_defaults_classify_a_production_instance(prod) -> None:
    fleet(prod)
    assert members("superuser") == {"'su'@'localhost'"}
    assert members("can-grant") == {"'grantor'@'localhost'"}  # GRANT_ADMIN / WITH GRANT OPTION
    # app writes directly and reads through its role; the role itself reads
    assert members("writes-production") == {"'su'@'localhost'", "'app'@'localhost'"}
    assert members("reads-production") == {"'su'@'localhost'", "'app'@'localhost'", "'reader'", "'grantor'@'localhost'"}
    assert members("locked-expired") == {"'lk'@'localhost'"}
    assert members("unused-role") == {"'lonely'"}  # 'reader' is held by app


def test_not_production_is_not_production_data(make_instance) -> None:
    dev = make_instance("mysql", name="dev-db", environment="development")
    fleet(dev)
    assert members("writes-production", dev) == set() and members("reads-production", dev) == set()
    assert members("superuser", dev) == {"'su'@'localhost'"}


def test_a_grant_then_a_revoke_reclassifies(prod) -> None:
    fleet(prod)
    assert "'lk'@'localhost'" not in members("superuser")
    apply_and_classify(prod, mysql_account("su", SUPER), mysql_account("lk", SUPER, locked=True))
    assert members("superuser") == {"'su'@'localhost'", "'lk'@'localhost'"}
    # the accounts the second catalog no longer lists are deactivated: they lose every classification
    assert members("unused-role") == set() and members("can-grant") == set()
    gone = InstanceAccount.objects.get(instance=prod, identity="'grantor'@'localhost'")
    assert not gone.is_active and not ClassificationAssignment.objects.filter(account=gone).exists()


def test_an_unreadable_scope_keeps_the_last_known_classification(prod) -> None:
    apply_and_classify(prod, mysql_account("app", Privilege("database:sales", "INSERT")))
    assert members("writes-production") == {"'app'@'localhost'"}
    # the next sync cannot read database sales: the INSERT there is last known, not revoked
    gap = CoverageGap(scope="database:sales", reason="no access", kind=GapKind.UNREADABLE)
    apply_and_classify(prod, mysql_account("app"), coverage=[gap])
    assert members("writes-production") == {"'app'@'localhost'"}
    # readable again and really gone: now it is revoked
    apply_and_classify(prod, mysql_account("app"))
    assert members("writes-production") == set()


def test_a_second_evaluation_writes_nothing(prod) -> None:
    fleet(prod)
    again = classification_evaluate()
    assert (again.added, again.removed, again.changed, again.pairs_rewritten) == (0, 0, 0, 0)


def test_rule_versions_keep_who_and_when(prod, alice) -> None:
    category = Classification.objects.create(code="pii", name="PII readers", risk_level=4, color="#123456")
    rule = rule_save(
        rule=ClassificationRule(classification=category, name="customers", expression={"has_privilege": "SELECT"}),
        user=alice,
        comment="first cut",
    )
    assert rule.version == 1 and rule.updated_by == alice
    rule.expression = {"has_privilege": {"privilege": "SELECT", "scope": "object:sales.customers"}}
    rule_save(rule=rule, user=alice, comment="only the customers table")
    rule_save(rule=rule, user=alice, comment="no change")  # nothing changed: no new version
    versions = list(ClassificationRuleVersion.objects.filter(rule=rule).order_by("version"))
    assert [(v.version, v.comment, v.created_by) for v in versions] == [
        (1, "first cut", alice),
        (2, "only the customers table", alice),
    ]
    assert versions[0].expression == {"has_privilege": "SELECT"}
    assert versions[1].created_at >= versions[0].created_at
    events = AuditEvent.objects.filter(kind="classification_rule_saved", object_id=str(rule.pk))
    assert [e.details["version"] for e in events.order_by("at", "id")] == [1, 2]
    assert LogEntry.objects.get_for_object(rule).count() >= 2  # model history too


def test_an_invalid_rule_is_refused_with_the_path_and_nothing_is_saved() -> None:
    category = Classification.objects.create(code="x", name="X")
    bad = {"all": [{"kind": "user"}, {"kind": "role"}, {"has_privilege": {"privilege": "SELECT", "scope": "tabel:t"}}]}
    with pytest.raises(ValidationError) as err:
        rule_save(rule=ClassificationRule(classification=category, name="bad", expression=bad))
    assert err.value.messages[0].startswith("rule.all[2].has_privilege.scope: unknown level 'tabel'")
    assert not ClassificationRule.objects.filter(name="bad").exists()
    assert not ClassificationRuleVersion.objects.filter(name="bad").exists()


def test_preview_counts_without_saving(prod) -> None:
    fleet(prod)
    before = ClassificationAssignment.objects.count()
    preview = rule_preview(expression={"has_privilege": {"privilege": "SELECT", "within": "database:sales"}})
    assert preview.count == 3  # app (through reader), reader, grantor
    assert {a["identity"] for a in preview.accounts} == {"'app'@'localhost'", "'reader'", "'grantor'@'localhost'"}
    assert rule_preview(expression={"kind": "role"}, db_type="postgresql").count == 0
    assert ClassificationAssignment.objects.count() == before


def test_a_manual_decision_wins_over_rules_and_is_audited(prod, alice) -> None:
    fleet(prod)
    su = InstanceAccount.objects.get(instance=prod, identity="'su'@'localhost'")
    lk = InstanceAccount.objects.get(instance=prod, identity="'lk'@'localhost'")
    superuser = Classification.objects.get(code="superuser")
    manual_assign(account=lk, classification=superuser, reason="break-glass account", user=alice)
    manual_assign(account=su, classification=superuser, action=ManualAction.EXCLUDE, reason="monitoring", user=alice)
    assert members("superuser") == {"'lk'@'localhost'"}
    assert ClassificationAssignment.objects.get(account=lk, classification=superuser).source == "manual"
    classification_evaluate()  # a re-evaluation (rule change, sync) keeps the decisions
    fleet(prod)
    assert members("superuser") == {"'lk'@'localhost'"}
    events = list(AuditEvent.objects.filter(kind="classification_manual").order_by("id"))
    assert [(e.details["decision"], e.actor) for e in events] == [("include", alice), ("exclude", alice)]
    assert events[0].details["reason"] == "break-glass account"

    assert manual_clear(account=su, classification=superuser, user=alice)
    assert members("superuser") == {"'su'@'localhost'", "'lk'@'localhost'"}  # lk is still in by hand
    assert manual_clear(account=lk, classification=superuser, user=alice)
    assert members("superuser") == {"'su'@'localhost'"}
    assert not manual_clear(account=lk, classification=superuser, user=alice)
    assert AuditEvent.objects.filter(kind="classification_manual_cleared").count() == 2


def test_inactive_accounts_cannot_be_assigned(prod) -> None:
    fleet(prod)
    apply_and_classify(prod, mysql_account("su", SUPER))
    gone = InstanceAccount.objects.get(instance=prod, identity="'lk'@'localhost'")
    with pytest.raises(ValueError, match="no longer active"):
        manual_assign(account=gone, classification=Classification.objects.get(code="superuser"))


def test_selectors(prod, make_instance) -> None:
    fleet(prod)
    other = make_instance("mysql", name="other", environment="production")
    apply_and_classify(other, mysql_account("su", SUPER))
    superuser = Classification.objects.get(code="superuser")
    everywhere = classification_account_ids(classification_id=superuser.pk)
    here = classification_account_ids(classification_id=superuser.pk, instance_ids=[prod.pk])
    assert len(everywhere) == 2 and len(here) == 1
    su = InstanceAccount.objects.get(instance=prod, identity="'su'@'localhost'")
    found = account_classifications(account_ids=[su.pk, 999999])
    assert list(found) == [su.pk]
    levels = [c.risk_level for c in found[su.pk]]
    assert levels == sorted(levels, reverse=True) and {c.code for c in found[su.pk]} == {
        "superuser",
        "writes-production",
        "reads-production",
    }


def test_daily_counts_are_stored_when_evaluation_runs(prod) -> None:
    fleet(prod)
    today = timezone.localdate()
    row = ClassificationDailyCount.objects.get(classification__code="superuser", day=today)
    assert row.count == 1
    assert ClassificationDailyCount.objects.filter(day=today).count() == Classification.objects.count()


def test_the_hook_is_registered_at_150_and_never_raises(prod, monkeypatch, caplog) -> None:
    hooks = {hook.name: hook.order for hook in post_sync_hooks()}
    assert hooks["classification"] == 150
    fleet(prod)

    def broken(**kwargs):
        raise RuntimeError("facts exploded")

    monkeypatch.setattr("classification.services.facts_refresh", broken)
    event = PostSyncEvent(
        instance=prod, session_id=None, result={"success": True, "details": {}}, changed_account_ids=frozenset(),
        catalog_unchanged=False,
    )  # fmt: skip
    with caplog.at_level(logging.ERROR):
        classification_on_sync_applied(event)  # does not raise
    assert "classification failed (RuntimeError: facts exploded)" in caplog.text
    assert members("superuser") == {"'su'@'localhost'"}  # the last result stands


def test_the_hook_summarises_into_the_details(prod) -> None:
    fleet(prod)
    mysql_su = mysql_account("su2", SUPER)
    from tests.classification.helpers import apply

    apply(prod, mysql_su)
    result = {"success": True, "details": {}}
    event = PostSyncEvent(instance=prod, session_id=None, result=result, changed_account_ids=frozenset(),
                          catalog_unchanged=False)  # fmt: skip
    classification_on_sync_applied(event)
    assert result["details"]["classification"]["facts"]["written"] is True
    assert members("superuser") == {"'su2'@'localhost'"}


def test_an_unchanged_catalog_reuses_the_facts(prod) -> None:
    fleet(prod)
    result = {"success": True, "details": {}}
    event = PostSyncEvent(instance=prod, session_id=None, result=result, changed_account_ids=frozenset(),
                          catalog_unchanged=True)  # fmt: skip
    classification_on_sync_applied(event)
    assert result["details"]["classification"]["facts"] == {"accounts": -1, "written": False}
    assert members("superuser") == {"'su'@'localhost'"}


def test_an_unchanged_sync_with_unchanged_inputs_skips_the_evaluation(prod, alice) -> None:
    """The daily case costs three small reads; any input the evaluation reads changing evaluates again."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from instances.models import Tag

    fleet(prod)

    def unchanged_sync() -> dict:
        result = {"success": True, "details": {}}
        event = PostSyncEvent(instance=prod, session_id=None, result=result, changed_account_ids=frozenset(),
                              catalog_unchanged=True)  # fmt: skip
        classification_on_sync_applied(event)
        return result["details"]["classification"]

    assert unchanged_sync()["facts"] == {"accounts": -1, "written": False}  # no inputs stored yet: evaluated
    with CaptureQueriesContext(connection) as queries:
        assert unchanged_sync() == {"skipped": True, "reason": "inputs_unchanged"}
    assert len(queries.captured_queries) <= 4
    assert members("writes-production") == {"'su'@'localhost'", "'app'@'localhost'"}

    prod.environment = "development"  # the shipped production rules no longer match
    prod.save()
    assert "skipped" not in unchanged_sync()
    assert members("writes-production") == set()
    assert unchanged_sync()["skipped"] is True

    prod.tags.add(Tag.objects.create(name="pci"))
    assert "skipped" not in unchanged_sync()
    assert unchanged_sync()["skipped"] is True

    rule = ClassificationRule.objects.get(classification__code="superuser")
    rule.expression = {"name": "lk"}
    rule_save(rule=rule, user=alice)
    assert "skipped" not in unchanged_sync()
    assert members("superuser") == {"'lk'@'localhost'"}
    assert unchanged_sync()["skipped"] is True

    lonely = InstanceAccount.objects.get(instance=prod, identity="'lonely'")
    category = Classification.objects.get(code="superuser")
    from classification.models import ManualAssignment

    # written directly (manual_assign evaluates on its own): the next unchanged sync must see it
    ManualAssignment.objects.create(
        account=lonely, classification=category, action=ManualAction.INCLUDE, reason="x", decided_at=timezone.now()
    )
    assert "skipped" not in unchanged_sync()
    assert members("superuser") == {"'lk'@'localhost'", "'lonely'"}


def test_deletes_cascade_and_a_full_evaluation_drops_dangling_rows(prod) -> None:
    """The assignments table has no FK constraints (derived data, written by COPY at fleet scale).

    The ORM still cascades a deleted classification (accounts are never deleted while their
    snapshots and change logs exist: PROTECT); rows a racing delete left behind (made here by
    writing them directly) go at the next full evaluation.
    """
    from django.db import connection

    from accountsync.bulk import insert_rows
    from classification.services import ASSIGNMENT_FIELDS

    fleet(prod)
    grantor = InstanceAccount.objects.get(instance=prod, identity="'grantor'@'localhost'")
    doomed = Classification.objects.create(code="doomed", name="doomed", risk_level=2)
    manual_assign(account=grantor, classification=doomed, action=ManualAction.INCLUDE, reason="test")
    classification_evaluate()
    assert ClassificationAssignment.objects.filter(classification=doomed).count() == 1
    doomed_pk = doomed.pk
    doomed.delete()
    assert not ClassificationAssignment.objects.filter(classification_id=doomed_pk).exists()

    su = InstanceAccount.objects.get(instance=prod, identity="'su'@'localhost'")
    at = ClassificationAssignment._meta.get_field("assigned_at").get_db_prep_value(timezone.now(), connection)
    ghost = doomed_pk + 1000
    insert_rows(ClassificationAssignment, ASSIGNMENT_FIELDS, [(su.pk, ghost, prod.pk, "rule", None, at)])
    assert ClassificationAssignment.objects.filter(classification_id=ghost).count() == 1
    before = set(ClassificationAssignment.objects.values_list("account_id", "classification_id"))
    result = classification_evaluate()
    after = set(ClassificationAssignment.objects.values_list("account_id", "classification_id"))
    assert before - after == {(su.pk, ghost)} and after <= before
    assert result.removed == 1


def test_shipped_names_are_shown_in_the_readers_language_until_renamed() -> None:
    from django.utils import translation

    superuser = Classification.objects.get(code="superuser")
    with translation.override("zh-hans"):
        shown = str(superuser)
        assert shown != "Superuser-equivalent" and shown == superuser.label
    with translation.override("en"):
        assert str(superuser) == "Superuser-equivalent"
    superuser.name = "Root-like"  # renamed by its owner: shown as written, in every language
    superuser.save()
    with translation.override("zh-hans"):
        assert str(superuser) == "Root-like"

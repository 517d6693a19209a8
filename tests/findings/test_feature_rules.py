"""Feature rules: a feature above findings (baselines' drift, the directory) opens and resolves its own
rule's findings with ``findings_reconcile``, and the sync's ``findings_refresh`` never touches them."""

from __future__ import annotations

import pytest

from accountsync.adapters.base import AccountRecord, Catalog
from accountsync.models import InstanceAccount
from accountsync.services import account_sync_apply
from findings.models import Finding
from findings.rules import RULES_BY_CODE, feature_rule_register
from findings.services import findings_reconcile, findings_refresh

pytestmark = pytest.mark.django_db

CODE = "TEST_FEATURE_RULE"


@pytest.fixture(autouse=True)
def feature_rule():
    rule = feature_rule_register(code=CODE, severity="medium", title="A feature's rule", description="For tests.")
    yield rule
    RULES_BY_CODE.pop(CODE, None)


def accounts(instance, *names: str) -> dict[str, int]:
    catalog = Catalog(accounts=[AccountRecord(identity=n, username=n, capabilities={"SUPERUSER"}) for n in names])
    account_sync_apply(instance=instance, catalog=catalog)
    return dict(InstanceAccount.objects.filter(instance=instance).values_list("identity", "id"))


def test_reconcile_opens_updates_and_resolves_only_its_rule(make_instance):
    instance = make_instance("postgresql", port=5432)
    ids = accounts(instance, "a", "b")
    findings_refresh(instance=instance)  # SUPERUSER findings, the table's own
    first = findings_reconcile(
        instance=instance, rule_code=CODE, wanted={ids["a"]: ("medium", {"n": 1}), ids["b"]: ("medium", {"n": 1})}
    )
    assert (first.opened, first.resolved, first.updated) == (2, 0, 0)

    second = findings_reconcile(instance=instance, rule_code=CODE, wanted={ids["a"]: ("high", {"n": 2})})
    assert (second.opened, second.resolved, second.updated) == (0, 1, 1)
    mine = Finding.objects.filter(rule_code=CODE)
    assert set(mine.filter(is_open=True).values_list("account_id", "severity")) == {(ids["a"], "high")}
    assert mine.get(account_id=ids["b"]).resolved_at is not None
    assert Finding.objects.filter(rule_code="SUPERUSER", is_open=True).count() == 2  # untouched


def test_accounts_not_evaluated_keep_their_findings(make_instance):
    instance = make_instance("postgresql", port=5432)
    ids = accounts(instance, "a", "b")
    findings_reconcile(instance=instance, rule_code=CODE, wanted={i: ("medium", {}) for i in ids.values()})
    # the feature could evaluate only "a" this time (say, b's scope was unreadable): b's finding stands
    result = findings_reconcile(instance=instance, rule_code=CODE, wanted={}, account_ids=[ids["a"]])
    assert result.resolved == 1
    assert list(Finding.objects.filter(rule_code=CODE, is_open=True).values_list("account_id", flat=True)) == [ids["b"]]


def test_the_sync_refresh_never_resolves_a_feature_rule(make_instance):
    instance = make_instance("postgresql", port=5432)
    ids = accounts(instance, "a")
    findings_reconcile(instance=instance, rule_code=CODE, wanted={ids["a"]: ("medium", {})})
    findings_refresh(instance=instance)
    findings_refresh(instance=instance)
    assert Finding.objects.filter(rule_code=CODE, is_open=True).count() == 1


def test_a_table_rule_cannot_be_reconciled_nor_a_code_taken_twice(make_instance):
    instance = make_instance("postgresql", port=5432)
    with pytest.raises(ValueError, match="evaluated by findings_refresh"):
        findings_reconcile(instance=instance, rule_code="SUPERUSER", wanted={})
    assert feature_rule_register(code=CODE, severity="medium", title="A feature's rule", description="For tests.")
    with pytest.raises(ValueError, match="taken"):
        feature_rule_register(code=CODE, severity="high", title="Another", description="Clash.")


def test_reconcile_takes_more_accounts_than_sqlite_takes_parameters(make_instance):
    """40,000 accounts to reconcile: no `IN` list of them (SQLite refuses more than 32,766 parameters)."""
    instance = make_instance("postgresql", port=5432)
    names = [f"u{i}" for i in range(40_000)]
    ids = accounts(instance, *names)
    first = findings_reconcile(
        instance=instance,
        rule_code=CODE,
        wanted={i: ("medium", {}) for i in ids.values()},
        account_ids=list(ids.values()),
    )
    assert first.opened == 40_000
    keep = {ids["u1"], ids["u2"]}
    second = findings_reconcile(
        instance=instance,
        rule_code=CODE,
        wanted={i: ("medium", {}) for i in keep},
        account_ids=[i for name, i in ids.items() if name != "u3"],  # u3 was not evaluated this time
    )
    assert (second.opened, second.resolved) == (0, 39_997)
    still = set(Finding.objects.filter(rule_code=CODE, is_open=True).values_list("account_id", flat=True))
    assert still == keep | {ids["u3"]}

"""Point-in-time answers over findings across three syncs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from accountsync.adapters.base import AccountRecord, Catalog, Privilege
from accountsync.services import account_sync_apply
from findings.selectors import finding_changes_between, finding_list, finding_list_at
from findings.services import findings_refresh

pytestmark = pytest.mark.django_db

T1 = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)
T2 = T1 + timedelta(days=1)
T3 = T2 + timedelta(days=1)


def user(name: str, *, superuser: bool = False, wildcard: bool = False) -> AccountRecord:
    caps = ({"SUPERUSER"} if superuser else set()) | ({"WILDCARD_HOST"} if wildcard else set())
    host = "%" if wildcard else "localhost"
    privilege = Privilege("global", "ALL PRIVILEGES" if superuser else "SELECT")
    return AccountRecord(
        identity=f"'{name}'@'{host}'", username=name, host=host, privileges=[privilege], capabilities=caps
    )


def sync_at(instance, at: datetime, *accounts: AccountRecord) -> None:
    account_sync_apply(instance=instance, catalog=Catalog(accounts=list(accounts)).finalize(), force=True)
    findings_refresh(instance=instance, now=at)


def codes(qs) -> set[tuple[str, str]]:
    return {(f.account.username, f.rule_code) for f in qs}


@pytest.fixture
def history(make_instance):
    """T1: a is superuser; T2: a demoted, b superuser from '%'; T3: b gone, a superuser again."""
    inst = make_instance()
    sync_at(inst, T1, user("a", superuser=True), user("c"))
    sync_at(inst, T2, user("a"), user("b", superuser=True, wildcard=True), user("c"))
    sync_at(inst, T3, user("a", superuser=True), user("c"))
    return inst


def test_what_was_open_at_each_moment(history):
    assert codes(finding_list_at(instance=history, at=T1 - timedelta(seconds=1))) == set()
    assert codes(finding_list_at(instance=history, at=T1)) == {("a", "SUPERUSER")}
    assert codes(finding_list_at(instance=history, at=T2 + timedelta(hours=1))) == {
        ("b", "SUPERUSER"),
        ("b", "WILDCARD_HOST"),
    }
    assert codes(finding_list_at(instance=history, at=T3)) == {("a", "SUPERUSER")}
    assert codes(finding_list(instance=history)) == {("a", "SUPERUSER")}


def test_what_changed_between_two_moments(history):
    changes = finding_changes_between(instance=history, start=T1, end=T3)
    assert codes(changes.opened) == {("b", "SUPERUSER"), ("b", "WILDCARD_HOST"), ("a", "SUPERUSER")}
    assert codes(changes.resolved) == {("a", "SUPERUSER"), ("b", "SUPERUSER"), ("b", "WILDCARD_HOST")}
    first_day = finding_changes_between(instance=history, start=T1 - timedelta(hours=1), end=T2 - timedelta(hours=1))
    assert codes(first_day.opened) == {("a", "SUPERUSER")} and codes(first_day.resolved) == set()


def test_filters_and_constant_queries(history, make_instance, django_assert_num_queries):
    other = make_instance("postgresql", port=5432)
    sync_at(other, T1, AccountRecord(identity="pg", username="pg", capabilities={"SUPERUSER"}))
    assert codes(finding_list(db_type="postgresql")) == {("pg", "SUPERUSER")}
    assert codes(finding_list(is_open=False, rule_code="WILDCARD_HOST")) == {("b", "WILDCARD_HOST")}
    assert codes(finding_list(severity="medium", is_open=None)) == {("b", "WILDCARD_HOST")}
    with django_assert_num_queries(1):
        assert len({f.instance.name for f in finding_list(is_open=None)}) == 2

"""accountsync.selectors.account_search and instance_changes_between, called directly (as the admin will)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accountsync.selectors import AccountSearchError, account_search, instance_changes_between
from tests.exports.conftest import apply, named

pytestmark = pytest.mark.django_db


def identities(qs) -> list[tuple[str, str]]:
    return [(a.instance.name, a.identity) for a in qs]


def test_a_name_with_an_at_sign_is_found_in_exact_mode_and_split_in_auto_mode(fleet):
    apply(fleet["pg"], named("app_rw"), named("svc@corp"))
    assert identities(account_search(q="svc@corp", mode="exact")) == [("pg-prod", "svc@corp")]
    assert identities(account_search(q="svc@corp")) == []  # auto: name "svc" on host "corp"
    assert identities(account_search(q="svc@", mode="prefix")) == [("pg-prod", "svc@corp")]


def test_results_are_ordered_by_name_then_instance_and_carry_the_snapshot(fleet):
    results = list(account_search(q="app_rw", mode="prefix"))
    assert [a.username for a in results] == sorted(a.username for a in results)
    assert all(hasattr(a, "current_snapshot") for a in results)
    mysql = next(a for a in results if a.instance.name == "my-prod" and a.username == "app_rw")
    assert sorted(p["privilege"] for p in mysql.current_snapshot["privileges"]) == ["INSERT", "SELECT"]


def test_filters_narrow_the_search(fleet):
    assert {a.instance.db_type for a in account_search(q="app_rw", db_type="sqlserver")} == {"sqlserver"}
    apply(fleet["mssql"], named("other"))  # app_rw removed there
    assert [a.is_active for a in account_search(q="app_rw", db_type="sqlserver")] == [False]
    assert list(account_search(q="app_rw", db_type="sqlserver", active=True)) == []


@pytest.mark.parametrize(
    ("q", "mode", "field", "code"),
    [
        ("", "auto", "q", "empty"),
        ("x", "regex", "mode", "invalid"),
        ("@", "auto", "q", "empty"),
        ("y" * 256, "exact", "q", "invalid"),
    ],
)
def test_bad_searches_raise_with_field_and_code(q, mode, field, code, db):
    with pytest.raises(AccountSearchError) as err:
        account_search(q=q, mode=mode)
    assert (err.value.field, err.value.code) == (field, code)


def test_changes_between_are_half_open_and_refuse_a_backwards_window(fleet):
    now = timezone.now()
    mysql = fleet["mysql"]
    assert instance_changes_between(instance=mysql, start=now - timedelta(hours=1), end=now).count() == 3
    assert instance_changes_between(instance=mysql, start=now, end=now + timedelta(hours=1)).count() == 0
    with pytest.raises(ValueError):
        instance_changes_between(instance=mysql, start=now, end=now - timedelta(seconds=1))

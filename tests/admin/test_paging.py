"""Big lists (#19 part 3): the admin's count stops at a cap and a deep page is fetched by key."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accountsync.models import AccountChangeLog, InstanceAccount
from adminkit.paging import CappedPaginator, capped_count, page_by_keys

from .conftest import account, apply

pytestmark = pytest.mark.django_db


@pytest.fixture
def many_accounts(make_instance):
    instance = make_instance(name="paged")
    apply(instance, *[account(f"p{i:03d}") for i in range(45)])
    return instance


def test_the_count_stops_at_the_cap(many_accounts):
    qs = InstanceAccount.objects.all()
    assert capped_count(qs, cap=10) == (10, True)
    assert capped_count(qs, cap=45) == (45, False)
    assert capped_count(qs, cap=100) == (45, False)


def test_a_page_by_keys_is_the_same_rows_in_the_same_order_as_offset(many_accounts):
    qs = InstanceAccount.objects.select_related("instance").order_by("-username", "id")
    for start, stop in ((0, 10), (10, 20), (40, 50), (50, 60)):
        assert [a.pk for a in page_by_keys(qs, start, stop)] == [a.pk for a in qs[start:stop]]
    deep = page_by_keys(qs, 30, 40)
    with CaptureQueriesContext(connection) as ctx:
        assert all(a.instance.name == "paged" for a in deep)  # select_related kept for the page's rows
    assert len(ctx.captured_queries) == 0


def test_the_list_says_more_than_past_the_cap(client_for, many_accounts, monkeypatch):
    from django.contrib import admin

    monkeypatch.setattr(CappedPaginator, "cap", 20)
    monkeypatch.setattr(admin.site._registry[InstanceAccount], "list_per_page", 10)
    client = client_for("alice")
    url = reverse("admin:accountsync_instanceaccount_changelist")
    page = client.get(url, {"instance__id__exact": many_accounts.pk}).content.decode()
    assert re.search(r"more than 20 accounts? — filter to narrow", page)
    # the pages offered stop at the cap; the last one answers, with rows, by key
    last = client.get(url, {"instance__id__exact": many_accounts.pk, "p": "2", "o": "1"})
    assert last.status_code == 200
    names = sorted(set(re.findall(r"p0\d\d", last.content.decode())))
    assert names == [f"p{i:03d}" for i in range(10, 20)]


def test_below_the_cap_the_count_is_exact(client_for, many_accounts):
    page = client_for("alice").get(reverse("admin:accountsync_instanceaccount_changelist")).content.decode()
    assert "more than" not in page
    assert re.search(r"\b45 accounts\b", page)


def test_change_log_deep_page_matches_offset(client_for, many_accounts):
    apply(many_accounts, *[account(f"p{i:03d}", "10.0.0.2") for i in range(45)])  # 90 more change rows
    qs = AccountChangeLog.objects.select_related("account", "instance").order_by("-detected_at", "-id")
    assert [c.pk for c in page_by_keys(qs, 100, 120)] == [c.pk for c in qs[100:120]]


def test_a_searched_list_counts_only_to_the_search_cap(client_for, many_accounts, monkeypatch):
    """Substring matches are found row by row: a search stops counting at SEARCH_COUNT_CAP ("more than")."""
    monkeypatch.setattr("adminkit.paging.SEARCH_COUNT_CAP", 30)
    monkeypatch.setattr("adminkit.kit.SEARCH_COUNT_CAP", 30)
    client = client_for("alice")
    url = reverse("admin:accountsync_instanceaccount_changelist")
    searched = client.get(url, {"q": "p0"}).content.decode()
    assert re.search(r"more than 30 accounts? — filter to narrow", searched)
    few = client.get(url, {"q": "p01"}).content.decode()  # p010..p019: under the cap, exact
    assert "more than" not in few and re.search(r"\b10 accounts\b", few)
    unsearched = client.get(url).content.decode()  # the list's own cap is untouched
    assert "more than" not in unsearched and re.search(r"\b45 accounts\b", unsearched)

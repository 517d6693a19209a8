"""Grants in an unreadable scope are shown as "last known at <time>" everywhere (#16 part 1).

The account page, the API (current and point in time) and the permissions export mark
the same grants: those whose scope lies in a coverage gap open at that moment, with the
time the scope was last read. Grants elsewhere are current fact and carry no mark.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accountsync.adapters.base import AccountRecord, Catalog, CoverageGap, Privilege
from accountsync.models import AccountPermission, CoverageGapEpisode, InstanceAccount
from accountsync.services import account_sync_apply
from exports.writers import stream_export

pytestmark = pytest.mark.django_db

GAP = CoverageGap(scope="database:nc_sales", reason="permission denied for database", inclusive=False)


def catalog(*, gap: bool) -> Catalog:
    privileges = [Privilege("database:nc_sales", "CONNECT"), Privilege("object:nc_shop.public.items", "SELECT")]
    if not gap:
        privileges.append(Privilege("object:nc_sales.public.orders", "SELECT", grantable=True))
    ann = AccountRecord(identity="ann", username="ann", privileges=privileges, attributes={"login": True})
    return Catalog(accounts=[ann], coverage=[GAP] if gap else []).finalize()


@pytest.fixture
def gapped(make_instance):
    instance = make_instance("postgresql", port=5432, name="pg-gaps")
    assert account_sync_apply(instance=instance, catalog=catalog(gap=False)).success
    read_at = timezone.now()
    instance.last_success_at = read_at
    instance.save(update_fields=["last_success_at"])
    before_gap = timezone.now()
    assert account_sync_apply(instance=instance, catalog=catalog(gap=True)).success
    return instance, InstanceAccount.objects.get(identity="ann"), read_at, before_gap


def test_account_page_marks_the_last_known_grants(gapped, client_for):
    _instance, ann, _read_at, _before_gap = gapped
    client = client_for("charlie")
    html = client.get(reverse("admin:accountsync_instanceaccount_change", args=[ann.pk])).content.decode()
    assert "could not be read at this moment" in html and "<code>database:nc_sales</code>" in html
    assert html.count('class="wf-last-known"') == 1  # the orders table; not CONNECT (read server-wide), not nc_shop
    assert "last known at" in html
    # before the gap opened the same page shows no mark (the history moved back: the picker has minute resolution)
    AccountPermission.objects.update(valid_from=timezone.now() - timedelta(hours=2))
    CoverageGapEpisode.objects.update(opened_at=timezone.now() - timedelta(hours=1))
    at = timezone.localtime(timezone.now() - timedelta(minutes=90)).strftime("%Y-%m-%dT%H:%M")
    earlier = client.get(
        reverse("admin:accountsync_instanceaccount_change", args=[ann.pk]), {"at": at}
    ).content.decode()
    assert "Privileges" in earlier and 'class="wf-last-known"' not in earlier
    assert "could not be read at this moment" not in earlier


def test_api_marks_current_and_point_in_time(gapped, charlie):
    _instance, ann, read_at, before_gap = gapped
    token, _ = Token.objects.get_or_create(user=charlie)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    detail = client.get(f"/api/v1/accounts/{ann.pk}/").json()
    assert detail["permissions"]["last_known"] == [
        {
            "scope": "object:nc_sales.public.orders",
            "privilege": "SELECT",
            "gap_scope": "database:nc_sales",
            "unreadable_since": detail["permissions"]["last_known"][0]["unreadable_since"],
            "last_read_at": read_at.isoformat(),
        }
    ]
    now = client.get(f"/api/v1/accounts/{ann.pk}/at/", {"time": timezone.now().isoformat()}).json()
    assert [g["scope"] for g in now["coverage_gaps"]] == ["database:nc_sales"]
    assert [p["scope"] for p in now["last_known"]] == ["object:nc_sales.public.orders"]
    then = client.get(f"/api/v1/accounts/{ann.pk}/at/", {"time": before_gap.isoformat()}).json()
    assert then["coverage_gaps"] == [] and then["last_known"] == []


def test_permissions_export_marks_the_rows(gapped):
    _instance, _ann, _read_at, _before = gapped
    chunks, _ctype, _name = stream_export("permissions", AccountPermission.objects.filter(valid_to__isnull=True), "csv")
    rows = list(csv.DictReader(io.StringIO("".join(chunks).lstrip("\ufeff"))))
    marked = {(r["scope"], r["privilege"]): (r["unreadable_since"], r["last_read_at"]) for r in rows}
    assert marked[("object:nc_sales.public.orders", "SELECT")][1].startswith(_read_at.strftime("%Y-%m-%d"))
    assert marked[("database:nc_sales", "CONNECT")] == ("", "")
    assert marked[("object:nc_shop.public.items", "SELECT")] == ("", "")

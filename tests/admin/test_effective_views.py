"""Effective access on the account page, in the API (now and at a moment) and in the export (#16 part 2).

The computation itself (accountsync/effective.py) is checked against the servers in
tests/live/test_effective_*.py; here the stored snapshots are the input, as in production.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accountsync.adapters.base import AccountRecord, Catalog, Privilege, RoleGrant
from accountsync.models import AccountPermission, InstanceAccount
from accountsync.services import account_sync_apply
from exports.writers import stream_export

pytestmark = pytest.mark.django_db


def pg_catalog(*, readers_can_update: bool = False) -> Catalog:
    """ann inherits app_rw → readers; bob holds readers without INHERIT (SET ROLE only); PUBLIC has CONNECT."""
    readers = [Privilege("object:shop.public.customers", "SELECT")]
    if readers_can_update:
        readers.append(Privilege("object:shop.public.customers", "UPDATE"))
    return Catalog(
        accounts=[
            AccountRecord(identity="readers", username="readers", kind="role", privileges=readers),
            AccountRecord(
                identity="app_rw",
                username="app_rw",
                kind="role",
                privileges=[Privilege("object:shop.public.orders", "INSERT", grantable=True)],
                roles=[RoleGrant("readers")],
            ),
            AccountRecord(
                identity="ann",
                username="ann",
                attributes={"login": True},
                privileges=[Privilege("database:shop", "CONNECT")],
                roles=[RoleGrant("app_rw")],
            ),
            AccountRecord(identity="bob", username="bob", roles=[RoleGrant("readers", default=False)]),
            AccountRecord(
                identity="public",
                username="public",
                kind="role",
                privileges=[Privilege("database:shop", "TEMPORARY")],
            ),
        ]
    ).finalize()


@pytest.fixture
def pg(make_instance):
    instance = make_instance("postgresql", port=5432, name="pg-shop")
    assert account_sync_apply(instance=instance, catalog=pg_catalog()).success
    return instance


def grants(rows) -> list[tuple]:
    return [(g["scope"], g["privilege"], tuple(g["via"]), g["active"]) for g in rows]


def test_account_page_shows_effective_access_with_the_path(pg, client_for):
    ann = InstanceAccount.objects.get(identity="ann")
    html = client_for("charlie").get(reverse("admin:accountsync_instanceaccount_change", args=[ann.pk])).content
    html = html.decode()
    assert 'id="wf-effective"' in html
    effective = html.split('id="wf-effective"')[1].split("</table>")[0]
    # the role path, each role a link to its own page; the scope in the page's words, the raw scope as its title
    app_rw, readers = (InstanceAccount.objects.get(identity=n) for n in ("app_rw", "readers"))
    app_url, readers_url = (reverse("admin:accountsync_instanceaccount_change", args=[a.pk]) for a in (app_rw, readers))
    assert f'role <a href="{app_url}">app_rw</a> → <a href="{readers_url}">readers</a>' in effective
    assert 'title="object:shop.public.customers">Object shop.public.customers' in effective
    assert "direct" in effective
    bob = InstanceAccount.objects.get(identity="bob")
    bob_html = client_for("charlie").get(reverse("admin:accountsync_instanceaccount_change", args=[bob.pk])).content
    assert "only after SET ROLE" in bob_html.decode()


def test_api_effective_now_and_at_a_moment(pg, charlie):
    token, _ = Token.objects.get_or_create(user=charlie)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    ann = InstanceAccount.objects.get(identity="ann")
    before = timezone.now()
    body = client.get(f"/api/v1/accounts/{ann.pk}/effective/").json()
    assert grants(body["grants"]) == [
        ("database:shop", "CONNECT", (), True),
        ("object:shop.public.customers", "SELECT", ("app_rw", "readers"), True),
        ("object:shop.public.orders", "INSERT", ("app_rw",), True),
    ]
    assert body["count"] == 3 and body["time"] is None
    # the role gains UPDATE: ann's effective access changes although her own snapshot did not
    AccountPermission.objects.update(valid_from=before - timedelta(hours=1))
    assert account_sync_apply(instance=pg, catalog=pg_catalog(readers_can_update=True)).success
    now = client.get(f"/api/v1/accounts/{ann.pk}/effective/").json()
    assert ("object:shop.public.customers", "UPDATE", ("app_rw", "readers"), True) in grants(now["grants"])
    then = client.get(f"/api/v1/accounts/{ann.pk}/effective/", {"time": before.isoformat()}).json()
    assert [g["privilege"] for g in then["grants"]] == ["CONNECT", "SELECT", "INSERT"]
    at = client.get(f"/api/v1/accounts/{ann.pk}/at/", {"time": before.isoformat()}).json()
    assert grants(at["effective_access"]) == grants(then["grants"])
    bad = client.get(f"/api/v1/accounts/{ann.pk}/effective/", {"time": "yesterday"})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_datetime"


def test_effective_export_is_one_pass_per_instance(pg, make_instance, charlie):
    other = make_instance("postgresql", port=5432, name="pg-two")
    assert account_sync_apply(instance=other, catalog=pg_catalog()).success
    with CaptureQueriesContext(connection) as ctx:
        chunks, _ctype, _name = stream_export(
            "effective_access", AccountPermission.objects.filter(valid_to__isnull=True), "csv"
        )
        rows = list(csv.DictReader(io.StringIO("".join(chunks).lstrip("\ufeff"))))
    # the stream, plus one read of each instance's snapshots (and a cursor statement at most); the
    # read's transaction (config.db.read_in_transaction: a savepoint inside the test's) is not a read
    reads = [q["sql"] for q in ctx.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(reads) <= 1 + 2 + 1, reads
    ann = [(r["instance"], r["scope"], r["privilege"], r["via"], r["active"]) for r in rows if r["account"] == "ann"]
    assert ("pg-shop", "object:shop.public.customers", "SELECT", "app_rw → readers", "true") in ann
    assert ("pg-two", "object:shop.public.customers", "SELECT", "app_rw → readers", "true") in ann
    bob = [(r["privilege"], r["active"]) for r in rows if r["account"] == "bob" and r["instance"] == "pg-shop"]
    assert bob == [("SELECT", "false")]
    token, _ = Token.objects.get_or_create(user=charlie)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = client.get("/api/v1/effective-access/export/", {"format": "json"})
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert b"app_rw" in body and b"password" not in body.lower()

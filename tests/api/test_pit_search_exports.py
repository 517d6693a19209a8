"""API: exports, cross-instance account search and point-in-time answers (issue 10).

Data comes from the real apply path (tests/exports/conftest.py ``fleet``) or,
for size, from bulk rows. Point in time runs three applies (grant, revoke,
re-grant) with the moments between them recorded, so every answer is checked
against a time that is known to fall inside one snapshot's interval.
"""

from __future__ import annotations

import csv
import io
import json
import time

import pytest
from django.db import connection
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accountsync.adapters.base import Privilege
from accountsync.models import AccountChangeLog, InstanceAccount
from findings.services import findings_refresh
from tests.exports import conftest as export_fixtures
from tests.exports.conftest import apply, mysql_user

pytestmark = pytest.mark.django_db
fleet = export_fixtures.fleet
bulk_accounts = export_fixtures.bulk_accounts

EXPORTS = ["accounts", "permissions", "change-logs", "findings"]


def body(response) -> str:
    return b"".join(response.streaming_content).decode("utf-8")


def csv_rows(response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body(response).lstrip("\ufeff"), newline="")))


# --- exports ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXPORTS)
@pytest.mark.parametrize(
    ("fmt", "content_type"), [("csv", "text/csv"), ("json", "application/json"), ("ndjson", "application/x-ndjson")]
)
def test_every_export_streams_a_named_file(path, fmt, content_type, api_client, charlie, fleet):
    findings_refresh(instance=fleet["mysql"])
    response = api_client(charlie).get(f"/api/v1/{path}/export/", {"format": fmt})
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"].split(";")[0] == content_type
    disposition = response["Content-Disposition"]
    assert disposition.startswith(f'attachment; filename="whalefall-{path}-') and disposition.endswith(f'.{fmt}"')
    text = body(response)
    if fmt == "json":
        assert len(json.loads(text)) > 0
    elif fmt == "ndjson":
        assert all(json.loads(line) for line in text.splitlines())
    else:
        assert len(csv_rows_from(text)) > 0


def csv_rows_from(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline="")))


def test_exports_take_the_lists_filters(api_client, charlie, fleet):
    findings_refresh(instance=fleet["mysql"])
    client = api_client(charlie)
    pg = csv_rows(client.get("/api/v1/accounts/export/", {"db_type": "postgresql"}))
    assert {r["instance"] for r in pg} == {"pg-prod"}
    assert {r["username"] for r in pg} == {"app_rw", "app_reader", "appsvc"}
    supers = csv_rows(client.get("/api/v1/permissions/export/", {"superuser": "true"}))
    assert {r["account"] for r in supers} == {"'admin'@'localhost'"}
    logs = csv_rows(client.get("/api/v1/change-logs/export/", {"instance": fleet["mysql2"].pk}))
    assert sorted(r["account"] for r in logs) == ["'app_rw'@'10.0.%'", "'app_rwx'@'localhost'"]
    assert {r["change_type"] for r in logs} == {"added"}
    high = csv_rows(client.get("/api/v1/findings/export/", {"severity": "high"}))
    assert high and {r["severity"] for r in high} == {"high"}
    assert {r["account"] for r in high} <= {"'admin'@'localhost'"}


def test_export_permissions_and_errors(api_client, alice, bob, charlie, fleet, django_user_model):
    nobody = django_user_model.objects.create_user("nobody", password="x-Pa55-word")
    for user in (alice, bob, charlie):
        for path in EXPORTS:
            assert api_client(user).get(f"/api/v1/{path}/export/").status_code == 200, (user, path)
    anonymous = api_client().get("/api/v1/accounts/export/")
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "not_authenticated")
    denied = api_client(nobody).get("/api/v1/change-logs/export/")
    assert (denied.status_code, denied.json()["code"]) == (403, "permission_denied")
    bad_format = api_client(charlie).get("/api/v1/accounts/export/", {"format": "xlsx"})
    assert bad_format.status_code == 400
    assert bad_format.json()["code"] == "invalid_format" and "format" in bad_format.json()
    bad_filter = api_client(charlie).get("/api/v1/findings/export/", {"severity": "dire"})
    assert (bad_filter.status_code, bad_filter.json()["code"]) == (400, "invalid")
    assert "severity" in bad_filter.json()


@pytest.mark.parametrize("path", ["accounts", "permissions", "change-logs"])
def test_export_queries_do_not_grow_with_the_rows(path, api_client, charlie, bulk_accounts):
    client = api_client(charlie)

    def queries_for_export() -> tuple[list[str], int]:
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(f"/api/v1/{path}/export/", {"format": "ndjson"})
            lines = body(response).count("\n")
        return [q["sql"][:120] for q in ctx.captured_queries], lines

    bulk_accounts(30, instances=2, prefix="small")
    small, small_lines = queries_for_export()
    bulk_accounts(2500, instances=3, prefix="big")
    big, big_lines = queries_for_export()
    assert big_lines >= small_lines + 2500
    assert len(big) == len(small), "the export's query count must not depend on its size:\n" + "\n".join(big)


# --- cross-instance account search --------------------------------------------------------


def search(client, **params) -> list[dict]:
    response = client.get("/api/v1/accounts/search/", {"page_size": 200, **params})
    assert response.status_code == 200, response.json()
    return response.json()["results"]


def places(results) -> set[tuple[str, str]]:
    return {(r["instance_name"], r["identity"]) for r in results}


def test_search_by_exact_name_finds_it_on_every_db_type_case_sensitively(api_client, charlie, fleet):
    results = search(api_client(charlie), q="app_rw")
    assert places(results) == {
        ("my-prod", "'app_rw'@'%'"),
        ("my-stage", "'app_rw'@'10.0.%'"),
        ("pg-prod", "app_rw"),
        ("ms-prod", "app_rw"),
    }
    by_instance = {r["instance_name"]: r for r in results}
    mysql = by_instance["my-prod"]
    assert (mysql["db_type"], mysql["environment"], mysql["host"]) == ("mysql", "production", "%")
    assert mysql["capabilities"] == ["GRANT_ADMIN", "WILDCARD_HOST"]
    assert (mysql["privilege_count"], mysql["role_count"], mysql["is_superuser"]) == (2, 1, False)
    assert by_instance["ms-prod"]["db_type"] == "sqlserver" and by_instance["ms-prod"]["kind"] == "login"
    assert places(search(api_client(charlie), q="APP_RW")) == {("ora-prod", "APP_RW")}


def test_search_by_prefix(api_client, charlie, fleet):
    client = api_client(charlie)
    star = {r["username"] for r in search(client, q="app_*")}
    assert star == {"app_rw", "app_ro", "app_rwx", "app_reader"}
    assert {r["username"] for r in search(client, q="app_rw", mode="prefix")} == {"app_rw", "app_rwx"}
    # "_" is a LIKE wildcard: it must match literally (appsvc has no "_")
    assert "appsvc" in {r["username"] for r in search(client, q="app*")}
    assert {r["username"] for r in search(client, q="app_r", mode="prefix", db_type="postgresql")} == {
        "app_rw",
        "app_reader",
    }


def test_search_by_mysql_host_pattern(api_client, charlie, fleet):
    client = api_client(charlie)
    assert places(search(client, q="app_rw@%")) == {("my-prod", "'app_rw'@'%'")}
    assert places(search(client, q="host=%")) == {("my-prod", "'app_rw'@'%'"), ("my-prod", "'app_ro'@'%'")}
    assert places(search(client, q="%", mode="host")) == places(search(client, q="host=%"))
    assert places(search(client, q="host=10.0.*")) == {("my-stage", "'app_rw'@'10.0.%'")}
    assert places(search(client, q="app_*@localhost")) == {("my-stage", "'app_rwx'@'localhost'")}


def test_search_includes_removed_accounts_unless_asked_for_active_ones(api_client, charlie, fleet):
    apply(fleet["mysql"], mysql_user("app_rw", "%"), mysql_user("admin", "localhost"))  # app_ro is gone
    client = api_client(charlie)
    removed = search(client, q="app_ro")
    assert [(r["identity"], r["is_active"], r["privilege_count"]) for r in removed] == [("'app_ro'@'%'", False, 0)]
    assert search(client, q="app_ro", active="true") == []


@pytest.mark.parametrize(
    ("params", "field", "code"),
    [
        ({"q": ""}, "q", "empty"),
        ({}, "q", "empty"),
        ({"q": "   "}, "q", "empty"),
        ({"q": "*"}, "q", "empty"),
        ({"q": "host="}, "q", "empty"),
        ({"q": "app", "mode": "fuzzy"}, "mode", "invalid"),
        ({"q": "x" * 300}, "q", "query_too_long"),
    ],
)
def test_search_refuses_bad_input_with_a_field_message(params, field, code, api_client, charlie, fleet):
    response = api_client(charlie).get("/api/v1/accounts/search/", params)
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert response.json()[field]


def test_search_runs_a_fixed_number_of_queries(api_client, charlie, bulk_accounts, django_assert_num_queries):
    bulk_accounts(5, instances=1, prefix="few")
    bulk_accounts(150, instances=3, prefix="many")
    client = api_client(charlie)

    def count(q: str) -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get("/api/v1/accounts/search/", {"q": q, "page_size": 200}).status_code == 200
        return len(ctx.captured_queries)

    assert count("few*") == count("many*")


# --- point in time -----------------------------------------------------------------------------


def moment() -> object:
    """A recorded instant strictly between two applies."""
    time.sleep(0.01)
    at = timezone.now()
    time.sleep(0.01)
    return at


@pytest.fixture
def three_syncs(make_instance):
    """app: SELECT+INSERT granted, then SELECT revoked, then SELECT granted again; moments between them."""
    inst = make_instance("mysql", name="pit")
    sel, ins = Privilege("database:sales", "SELECT"), Privilege("database:sales", "INSERT")
    t0 = moment()
    apply(inst, mysql_user("app", "%", sel, ins), mysql_user("other", "%", sel))
    t1 = moment()
    apply(inst, mysql_user("app", "%", ins), mysql_user("other", "%", sel))
    t2 = moment()
    apply(inst, mysql_user("app", "%", sel, ins), mysql_user("other", "%", sel))
    t3 = moment()
    apply(inst, mysql_user("other", "%", sel))  # app removed
    t4 = moment()
    account = InstanceAccount.objects.get(instance=inst, username="app")
    return inst, account, (t0, t1, t2, t3, t4)


def privileges_at(client, account, at) -> dict:
    response = client.get(f"/api/v1/accounts/{account.pk}/at/", {"time": at.isoformat()})
    assert response.status_code == 200, response.json()
    return response.json()


def test_what_the_account_could_do_at_each_moment(api_client, charlie, three_syncs):
    _inst, account, (t0, t1, t2, t3, t4) = three_syncs
    client = api_client(charlie)
    before = client.get(f"/api/v1/accounts/{account.pk}/at/", {"time": t0.isoformat()})
    assert (before.status_code, before.json()["code"]) == (404, "account_not_seen_yet")
    answers = [privileges_at(client, account, t) for t in (t1, t2, t3, t4)]
    granted = [sorted(p["privilege"] for p in a["snapshot"]["privileges"]) if a["existed"] else None for a in answers]
    assert granted == [["INSERT", "SELECT"], ["INSERT"], ["INSERT", "SELECT"], None]
    first, second, third, gone = answers
    assert first["valid_to"] == second["valid_from"] and second["valid_to"] == third["valid_from"]
    assert third["valid_to"] is not None and gone["valid_from"] is None and gone["snapshot"] is None
    assert [a["privilege_count"] for a in answers] == [2, 1, 2, 0]
    assert first["identity"] == "'app'@'%'" and first["instance_name"] == "pit"


def test_what_changed_on_the_instance_between_two_moments(api_client, charlie, three_syncs):
    inst, account, (t0, t1, t2, t3, t4) = three_syncs
    client = api_client(charlie)

    def changes(start, end) -> list[tuple[str, str]]:
        response = client.get(
            f"/api/v1/instances/{inst.pk}/changes/", {"from": start.isoformat(), "to": end.isoformat()}
        )
        assert response.status_code == 200, response.json()
        return [(r["account_identity"], r["change_type"]) for r in response.json()["results"]]

    app = "'app'@'%'"
    assert changes(t0, t1) == [(app, "added"), ("'other'@'%'", "added")] or changes(t0, t1) == [
        ("'other'@'%'", "added"),
        (app, "added"),
    ]
    assert changes(t1, t2) == [(app, "privileges_changed")]
    assert changes(t1, t3) == [(app, "privileges_changed"), (app, "privileges_changed")]
    assert changes(t3, t4) == [(app, "removed")]
    assert changes(t2, t2) == []
    revoke = AccountChangeLog.objects.get(account=account, detected_at__gt=t1, detected_at__lte=t2)
    assert [op["op"] for op in revoke.diff if op.get("privilege") == "SELECT"] == ["revoke"]
    # default end is now; pages hold 20
    everything = client.get(f"/api/v1/instances/{inst.pk}/changes/", {"from": t0.isoformat()}).json()
    assert everything["count"] == 5 and everything["next"] is None


@pytest.mark.parametrize(
    ("url", "params", "field", "code"),
    [
        ("accounts/{account}/at/", {"time": "yesterday"}, "time", "invalid_datetime"),
        ("accounts/{account}/at/", {"time": "2026-02-30T00:00:00Z"}, "time", "invalid_datetime"),
        ("accounts/{account}/at/", {}, "time", "invalid"),
        ("instances/{instance}/changes/", {"from": "2026-05-02", "to": "2026-05-01"}, "from", "invalid_range"),
        ("instances/{instance}/changes/", {"from": "not a date"}, "from", "invalid_datetime"),
        ("instances/{instance}/changes/", {"from": "2026-05-01", "to": "13/13/2026"}, "to", "invalid_datetime"),
        ("instances/{instance}/changes/", {}, "from", "invalid"),
    ],
)
def test_point_in_time_refuses_bad_dates(url, params, field, code, api_client, charlie, three_syncs):
    inst, account, _ = three_syncs
    response = api_client(charlie).get("/api/v1/" + url.format(account=account.pk, instance=inst.pk), params)
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert response.json()[field]


def test_point_in_time_permissions(api_client, three_syncs, django_user_model):
    inst, account, (_t0, t1, *_rest) = three_syncs
    assert api_client().get(f"/api/v1/accounts/{account.pk}/at/", {"time": t1.isoformat()}).status_code == 401
    assert api_client().get(f"/api/v1/instances/{inst.pk}/changes/", {"from": t1.isoformat()}).status_code == 401
    nobody = django_user_model.objects.create_user("nobody", password="x-Pa55-word")
    response = api_client(nobody).get(f"/api/v1/instances/{inst.pk}/changes/", {"from": t1.isoformat()})
    assert response.status_code == 403
    missing = api_client(nobody).get("/api/v1/accounts/999999/at/", {"time": t1.isoformat()})
    assert missing.status_code in (403, 404)

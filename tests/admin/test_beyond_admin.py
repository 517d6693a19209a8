"""Admin side of search, point in time and exports: structured search, the account page's time picker,
export actions that stream the selection (viewers too), never a secret."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest
from django.urls import reverse

from accountsync.adapters.base import Privilege
from accountsync.models import AccountChangeLog, AccountPermission, InstanceAccount
from findings.models import Finding
from tests.admin.conftest import account, apply

pytestmark = pytest.mark.django_db

ACCOUNTS = reverse("admin:accountsync_instanceaccount_changelist")


@pytest.fixture
def fleet(make_instance):
    my = make_instance(name="my-prod", environment="production")
    other = make_instance(name="my-stage", environment="staging", port=3307)
    pg = make_instance(db_type="postgresql", name="pg-stage", port=5432, environment="staging")
    apply(my, account("app_rw", "%"), account("app_ro", "10.0.0.1"), account("=cmd", "%"))
    apply(other, account("app_rw", "10.0.0.2"), account("batch"))
    apply(pg, account("app_rw", "", kind="role"), account("app_admin", "", kind="role"))
    return my, other, pg


def found(client, q: str) -> set[tuple[str, str]]:
    resp = client.get(ACCOUNTS, {"q": q})
    assert resp.status_code == 200
    return {(a.instance.name, a.identity) for a in resp.context["cl"].result_list}


def test_structured_search_finds_an_account_across_instances(client_for, fleet):
    client = client_for("charlie")
    assert {name for name, _ in found(client, "app_rw*")} == {"my-prod", "my-stage", "pg-stage"}
    assert found(client, "app_rw@10.0.*") == {("my-stage", "'app_rw'@'10.0.0.2'")}
    assert found(client, "app_rw@%") == {("my-prod", "'app_rw'@'%'")}
    assert {identity for _, identity in found(client, "app_*")} == {
        "'app_rw'@'%'",
        "'app_ro'@'10.0.0.1'",
        "'app_rw'@'10.0.0.2'",
        "'app_rw'@''",
        "'app_admin'@''",
    }
    assert {identity for _, identity in found(client, "host=10.0.*")} == {
        "'app_ro'@'10.0.0.1'",
        "'app_rw'@'10.0.0.2'",
        "'batch'@'10.0.0.1'",
    }
    assert {identity for _, identity in found(client, "batch")} == {"'batch'@'10.0.0.1'"}  # plain substring search


def test_a_search_it_cannot_read_says_so(client_for, fleet):
    resp = client_for("charlie").get(ACCOUNTS, {"q": "host="}, follow=True)
    assert resp.status_code == 200 and list(resp.context["cl"].result_list) == []
    assert any("Search not understood" in str(m) for m in resp.context["messages"])


def test_account_page_answers_what_it_could_do_at_a_time(client_for, make_instance):
    inst = make_instance(name="pit")
    apply(inst, account("tim", privileges=[Privilege("database:app", "SELECT")]))
    apply(inst, account("tim", privileges=[Privilege("database:app", "INSERT")]))
    acct = InstanceAccount.objects.get(instance=inst, username="tim")
    old, new = AccountPermission.objects.filter(account=acct).order_by("valid_from", "id")
    jan, feb = datetime(2026, 1, 1, 10, tzinfo=UTC), datetime(2026, 2, 1, 10, tzinfo=UTC)
    AccountPermission.objects.filter(pk=old.pk).update(valid_from=jan, valid_to=feb)
    AccountPermission.objects.filter(pk=new.pk).update(valid_from=feb)
    url = reverse("admin:accountsync_instanceaccount_change", args=[acct.pk])
    client = client_for("charlie")

    def page(at: str) -> str:
        resp = client.get(url, {"at": at} if at else {})
        assert resp.status_code == 200
        return resp.content.decode()

    january = page("2026-01-15T12:00")
    assert "Permissions at" in january and "SELECT" in january and "INSERT" not in january.split("Change history")[0]
    assert page("2026-03-01").count("INSERT") >= 1 and "still current" in page("2026-03-01")
    assert "No snapshot at that time" in page("2025-12-01T00:00")
    now = page("")
    assert "Current permissions" in now and 'type="datetime-local"' in now
    bad = client.get(url, {"at": "yesterday"}, follow=True)
    assert "is not a date and time" in " ".join(str(m) for m in bad.context["messages"])


def export(client, changelist: str, action: str, pks: list[int]) -> tuple[str, str]:
    resp = client.post(reverse(changelist), {"action": action, "_selected_action": pks})
    assert resp.status_code == 200, resp.content[:300]
    assert resp.streaming
    return resp["Content-Type"], b"".join(resp.streaming_content).decode("utf-8-sig")


def test_export_actions_stream_the_selection_neutralised_and_without_secrets(client_for, fleet, make_credential):
    my = fleet[0]
    client = client_for("charlie")  # a viewer may export what he may view
    pks = list(InstanceAccount.objects.filter(instance=my).values_list("pk", flat=True))
    kind, body = export(client, "admin:accountsync_instanceaccount_changelist", "export_accounts_csv", pks)
    assert kind.startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(body)))
    assert {r["identity"] for r in rows} == {"'app_rw'@'%'", "'app_ro'@'10.0.0.1'", "'=cmd'@'%'"}
    assert {r["username"] for r in rows} >= {"'=cmd"}  # formula neutralised
    assert "s3cr3t-Pa55" not in body  # the instances' credential password (tests/conftest.py)

    _kind, body = export(client, "admin:accountsync_instanceaccount_changelist", "export_permissions_csv", pks)
    perms = list(csv.DictReader(io.StringIO(body)))
    assert {(r["account"], r["scope"], r["privilege"]) for r in perms} >= {("'app_rw'@'%'", "database:app", "SELECT")}

    logs = list(AccountChangeLog.objects.filter(instance=my).values_list("pk", flat=True))
    _kind, body = export(client, "admin:accountsync_accountchangelog_changelist", "export_change_logs_json", logs)
    assert len(json.loads(body)) == 3


def test_findings_export_action(client_for, make_instance):
    from findings.services import findings_refresh

    inst = make_instance(name="risky")
    apply(inst, account("root", "%", is_superuser=True, capabilities={"SUPERUSER", "WILDCARD_HOST"}))
    findings_refresh(instance=inst, session_id=None)
    pks = list(Finding.objects.filter(instance=inst).values_list("pk", flat=True))
    assert pks
    _kind, body = export(client_for("charlie"), "admin:findings_finding_changelist", "export_findings_csv", pks)
    assert {r["rule_code"] for r in csv.DictReader(io.StringIO(body))} >= {"SUPERUSER"}

"""The classification API: categories, rules with versions and preview, assignments, manual decisions, filters.

alice (WhaleFall admins) may edit; charlie (Viewers) may read and preview but not edit.
"""

from __future__ import annotations

import csv
import io

import pytest

from accountsync.adapters.base import Privilege
from accountsync.models import InstanceAccount
from audit.models import AuditEvent
from classification.models import ClassificationRule, ClassificationRuleVersion
from tests.classification.helpers import apply_and_classify, members, mysql_account

pytestmark = pytest.mark.django_db

SUPER = Privilege("global", "ALL PRIVILEGES")
BAD = {"all": [{"kind": "user"}, {"kind": "role"}, {"has_privilege": {"privilege": "SELECT", "scope": "tabel:t"}}]}


@pytest.fixture
def prod(make_instance):
    inst = make_instance("mysql", name="prod-db", environment="production")
    apply_and_classify(
        inst,
        mysql_account("su", SUPER),
        mysql_account("app", Privilege("database:sales", "INSERT")),
        mysql_account("ro", Privilege("object:sales.customers", "SELECT")),
    )
    return inst


def queued_funcs() -> list[str]:
    """The tasks waiting in the (real, ORM) broker's queue."""
    from django_q.models import OrmQ

    return [q.func() for q in OrmQ.objects.order_by("id")]


def test_list_classifications_with_counts(api_client, charlie, prod) -> None:
    resp = api_client(charlie).get("/api/v1/classifications/")
    assert resp.status_code == 200
    by_code = {row["code"]: row for row in resp.json()["results"]}
    assert by_code["superuser"]["account_count"] == 1
    assert by_code["superuser"]["risk_level"] == 6
    assert by_code["writes-production"]["account_count"] == 2


def test_create_rule_versions_and_queue(api_client, alice, prod) -> None:
    client = api_client(alice)
    assert (
        client.post(
            "/api/v1/classifications/", {"code": "pii", "name": "PII", "risk_level": 4}, format="json"
        ).status_code
        == 201
    )
    body = {"classification": "pii", "name": "customers", "expression": {"has_privilege": "SELECT"}, "comment": "v1"}
    resp = client.post("/api/v1/classification-rules/", body, format="json")
    assert resp.status_code == 201, resp.json()
    rule_id = resp.json()["id"]
    assert resp.json()["version"] == 1 and resp.json()["updated_by"] == "alice"
    patch = {
        "expression": {"has_privilege": {"privilege": "SELECT", "scope": "object:sales.customers"}},
        "comment": "narrower",
    }
    resp = client.patch(f"/api/v1/classification-rules/{rule_id}/", patch, format="json")
    assert resp.status_code == 200 and resp.json()["version"] == 2
    versions = client.get(f"/api/v1/classification-rules/{rule_id}/versions/").json()
    assert [(v["version"], v["comment"], v["created_by"]) for v in versions] == [
        (2, "narrower", "alice"),
        (1, "v1", "alice"),
    ]
    assert queued_funcs() == ["classification.tasks.evaluate_all"] * 2


def test_a_bad_rule_is_400_with_the_path(api_client, alice) -> None:
    body = {"classification": "superuser", "name": "bad", "expression": BAD}
    resp = api_client(alice).post("/api/v1/classification-rules/", body, format="json")
    assert resp.status_code == 400
    data = resp.json()
    assert data["code"] == "invalid_rule"
    assert data["expression"][0].startswith("rule.all[2].has_privilege.scope: unknown level 'tabel'")
    assert not ClassificationRule.objects.filter(name="bad").exists() and queued_funcs() == []


def test_preview_and_saved_preview(api_client, charlie, prod) -> None:
    client = api_client(charlie)  # a viewer may preview: nothing is written
    resp = client.post(
        "/api/v1/classification-rules/preview/",
        {"expression": {"has_privilege": {"privilege": ["INSERT", "SELECT"], "within": "database:sales"}}},
        format="json",
    )
    assert resp.status_code == 200
    assert resp.json()["count"] == 2
    assert {a["identity"] for a in resp.json()["accounts"]} == {"'app'@'localhost'", "'ro'@'localhost'"}
    bad = client.post("/api/v1/classification-rules/preview/", {"expression": BAD}, format="json")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_rule"
    rule = ClassificationRule.objects.get(classification__code="superuser")
    saved = client.get(f"/api/v1/classification-rules/{rule.pk}/preview/")
    assert saved.status_code == 200 and saved.json()["count"] == 1


def test_a_viewer_cannot_edit(api_client, charlie, prod) -> None:
    client = api_client(charlie)
    rule = ClassificationRule.objects.get(classification__code="superuser")
    assert client.patch(f"/api/v1/classification-rules/{rule.pk}/", {"name": "x"}, format="json").status_code == 403
    assert client.post("/api/v1/classifications/", {"code": "x", "name": "x"}, format="json").status_code == 403
    su = InstanceAccount.objects.get(identity="'su'@'localhost'")
    resp = client.post(
        "/api/v1/classification-assignments/unassign/", {"account": su.pk, "classification": "superuser"}, format="json"
    )
    assert resp.status_code == 403 and resp.json()["code"] == "permission_denied"
    assert ClassificationRuleVersion.objects.filter(rule=rule).count() == 1
    assert members("superuser") == {"'su'@'localhost'"}


def test_manual_assign_unassign_clear(api_client, alice, prod) -> None:
    client = api_client(alice)
    su = InstanceAccount.objects.get(identity="'su'@'localhost'")
    ro = InstanceAccount.objects.get(identity="'ro'@'localhost'")
    resp = client.post(
        "/api/v1/classification-assignments/assign/",
        {"account": ro.pk, "classification": "superuser", "reason": "break-glass"},
        format="json",
    )
    assert resp.status_code == 200 and resp.json()["action"] == "include"
    client.post(
        "/api/v1/classification-assignments/unassign/", {"account": su.pk, "classification": "superuser"}, format="json"
    )
    assert members("superuser") == {"'ro'@'localhost'"}
    rows = client.get("/api/v1/classification-assignments/", {"classification": "superuser"}).json()["results"]
    assert [(r["identity"], r["source"]) for r in rows] == [("'ro'@'localhost'", "manual")]
    assert (
        client.post(
            "/api/v1/classification-assignments/clear/",
            {"account": su.pk, "classification": "superuser"},
            format="json",
        ).status_code
        == 204
    )
    again = client.post(
        "/api/v1/classification-assignments/clear/", {"account": su.pk, "classification": "superuser"}, format="json"
    )
    assert again.status_code == 404 and again.json()["code"] == "not_found"
    assert members("superuser") == {"'ro'@'localhost'", "'su'@'localhost'"}
    events = AuditEvent.objects.filter(kind__startswith="classification_manual")
    assert events.count() == 3 and {e.via for e in events} == {"api"}
    manual = client.get("/api/v1/classification-manual/").json()["results"]
    assert [(m["identity"], m["action"]) for m in manual] == [("'ro'@'localhost'", "include")]


def test_manual_bad_input_is_classified(api_client, alice, prod) -> None:
    client = api_client(alice)
    resp = client.post(
        "/api/v1/classification-assignments/assign/", {"account": 999999, "classification": "superuser"}, format="json"
    )
    assert resp.status_code == 400 and "account" in resp.json()
    su = InstanceAccount.objects.get(identity="'su'@'localhost'")
    resp = client.post(
        "/api/v1/classification-assignments/assign/", {"account": su.pk, "classification": "nope"}, format="json"
    )
    assert resp.status_code == 400 and "No classification" in resp.json()["classification"][0]


def test_accounts_filter_and_export_by_classification(api_client, charlie, prod) -> None:
    client = api_client(charlie)
    rows = client.get("/api/v1/accounts/", {"classification": "writes-production"}).json()["results"]
    assert {r["identity"] for r in rows} == {"'su'@'localhost'", "'app'@'localhost'"}
    unknown = client.get("/api/v1/accounts/", {"classification": "nope"})
    assert unknown.status_code == 400 and "Unknown classification" in unknown.json()["classification"][0]
    resp = client.get("/api/v1/accounts/export/", {"classification": "superuser", "format": "csv"})
    assert resp.status_code == 200
    exported = list(csv.DictReader(io.StringIO(b"".join(resp.streaming_content).decode())))
    assert [r["identity"] for r in exported] == ["'su'@'localhost'"]


@pytest.mark.django_db(transaction=True)
def test_broker_down_saves_the_rule_and_says_so(api_client, alice, broker_down) -> None:
    from sync.roles import ensure_role_groups

    ensure_role_groups()
    body = {"classification": "superuser", "name": "su v2", "expression": {"has_capability": ["SUPERUSER"]}}
    resp = api_client(alice).post("/api/v1/classification-rules/", body, format="json")
    assert resp.status_code == 503
    assert resp.json()["code"] == "broker_unavailable" and "rule was saved" in resp.json()["detail"]
    assert ClassificationRule.objects.get(name="su v2").version == 1

"""/api/v1/baselines/: list and retrieve with versions and entries, POST to approve, JSON errors; drift via findings."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from baselines.models import Baseline
from tests.baselines.conftest import ITEMS, ORDERS, SHOP

pytestmark = pytest.mark.django_db

URL = "/api/v1/baselines/"
BASE = {"readers": [(ORDERS, "SELECT")], "ann": [(SHOP, "SELECT")]}
HOLDS = {"ann": ["readers"]}


@pytest.fixture
def client_for():
    def make(user) -> APIClient:
        client = APIClient()
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


def test_approve_list_retrieve_and_the_drift_through_findings(apply, alice, client_for, pg):
    api = client_for(alice)
    ann = apply(BASE, HOLDS)["ann"]
    created = api.post(URL, {"kind": "account", "account": ann.pk, "comment": "CHG-1"}, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["kind"], body["account"], body["version"], body["entries_version"]) == ("account", ann.pk, 1, 1)
    (entry,) = body["entries"]
    assert entry["identity"] == "ann"
    assert entry["access"]["grants"] == [
        {"scope": ORDERS, "privilege": "SELECT", "effect": "GRANT", "grantable": False, "via": ["readers"]},
        {"scope": SHOP, "privilege": "SELECT", "effect": "GRANT", "grantable": False, "via": []},
    ]
    assert entry["access"]["roles"] == [{"role": "readers", "admin_option": False}]
    assert body["versions"][0]["approved_by"] == "alice" and body["versions"][0]["comment"] == "CHG-1"

    apply({**BASE, "ann": [(SHOP, "SELECT"), (ITEMS, "INSERT")]}, HOLDS)
    again = api.post(URL, {"kind": "account", "account": ann.pk, "comment": "CHG-2"}, format="json").json()
    assert again["version"] == 2 and [v["version"] for v in again["versions"]] == [2, 1]

    events = api.get("/api/v1/audit-events/", {"object_type": "baselines.baseline"}).json()["results"]
    assert [(e["kind"], e["via"], e["details"]["version"]) for e in events] == [
        ("baseline_approved", "api", 2),
        ("baseline_approved", "api", 1),
    ]

    listed = api.get(URL, {"kind": "account"}).json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == body["id"]
    old = api.get(f"{URL}{body['id']}/", {"version": 1}).json()
    assert old["entries_version"] == 1 and len(old["entries"][0]["access"]["grants"]) == 2
    current = api.get(f"{URL}{body['id']}/").json()
    assert current["entries_version"] == 2 and len(current["entries"][0]["access"]["grants"]) == 3

    # drift: revoke what v2 approved, and read it through the findings API
    from baselines.services import baselines_evaluate

    apply(BASE, HOLDS)
    baselines_evaluate(instance=pg)
    found = api.get("/api/v1/findings/", {"rule_code": "DRIFT", "is_open": "true"}).json()
    (finding,) = found["results"]
    assert finding["detail"]["missing"] == [{"scope": ITEMS, "privilege": "INSERT", "grantable": False, "via": []}]


def test_an_instance_and_a_classification_can_be_approved(apply, alice, client_for, pg):
    from classification.models import Classification

    api = client_for(alice)
    apply(BASE, HOLDS)
    one = api.post(URL, {"kind": "instance", "instance": pg.pk, "comment": "all of it"}, format="json")
    assert one.status_code == 201 and len(one.json()["entries"]) == 2
    cls = Classification.objects.create(code="empty-test", name="Empty")
    two = api.post(URL, {"kind": "classification", "classification": cls.pk, "comment": "nobody"}, format="json")
    assert two.status_code == 201 and two.json()["entries"] == []


def test_a_viewer_and_an_operator_can_read_but_not_approve(apply, alice, bob, charlie, client_for):
    ann = apply(BASE, HOLDS)["ann"]
    assert (
        client_for(alice).post(URL, {"kind": "account", "account": ann.pk, "comment": "ok"}, format="json").status_code
        == 201
    )
    for user in (bob, charlie):
        api = client_for(user)
        assert api.get(URL).status_code == 200
        refused = api.post(URL, {"kind": "account", "account": ann.pk, "comment": "me too"}, format="json")
        assert refused.status_code == 403
        assert refused.json()["code"] == "permission_denied"
    assert Baseline.objects.get().version == 1
    assert APIClient().get(URL).status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "account", "comment": "x"}, "account"),
        ({"kind": "account", "account": 999999, "comment": "x"}, "account"),
        ({"kind": "account", "account": "ann", "comment": "x"}, "account"),
        ({"kind": "bogus", "comment": "x"}, "kind"),
        ({"kind": "instance", "instance": 1, "account": 1, "comment": "x"}, "account"),
        ({"kind": "account", "account": 1}, "comment"),
        ({"kind": "account", "account": 1, "comment": "x" * 2001}, "comment"),
        ([1, 2], "non_field_errors"),
    ],
)
def test_malformed_bodies_are_json_400(apply, alice, client_for, body, field):
    apply(BASE, HOLDS)
    response = client_for(alice).post(URL, body, format="json")
    assert response.status_code == 400, response.content
    assert response["Content-Type"].startswith("application/json")
    assert field in response.json() and response.json()["code"]
    assert not Baseline.objects.exists()


def test_a_blank_comment_and_a_bad_version_are_400_and_an_unknown_version_is_404(apply, alice, client_for):
    api = client_for(alice)
    ann = apply(BASE, HOLDS)["ann"]
    blank = api.post(URL, {"kind": "account", "account": ann.pk, "comment": "   "}, format="json")
    assert blank.status_code == 400 and "comment" in blank.json()
    not_json = api.post(URL, data="{kind: account", content_type="application/json")
    assert not_json.status_code == 400 and not_json.json()["code"] == "parse_error"
    pk = api.post(URL, {"kind": "account", "account": ann.pk, "comment": "ok"}, format="json").json()["id"]
    assert api.get(f"{URL}{pk}/", {"version": "two"}).status_code == 400
    missing = api.get(f"{URL}{pk}/", {"version": 7})
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"

"""GET /api/v1/audit-events/: read-only, paginated, filterable; for WhaleFall admins only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def events(alice, bob):
    now = timezone.now()
    made = [
        audit_record("sync_started", actor=bob, via="api", details={"session_id": "s1"}),
        audit_record("sync_cancelled", actor=alice, via="admin"),
        audit_record("login_failed", username="mallory", via="admin", remote_addr="192.0.2.1"),
        audit_record("export", actor=bob, via="cli", details={"kind": "accounts", "rows": 3}),
    ]
    AuditEvent.objects.filter(pk=made[0].pk).update(at=now - timedelta(days=3))
    return made


def ids(response) -> list[int]:
    assert response.status_code == 200, response.json()
    return [e["id"] for e in response.json()["results"]]


def test_admins_list_and_filter_the_events(api_client, alice, events):
    client = api_client(alice)
    body = client.get("/api/v1/audit-events/").json()
    assert body["count"] == 4 and body["results"][0]["id"] == events[3].pk  # newest first
    first = body["results"][-1]
    assert (
        first["kind"] == "sync_started" and first["actor_username"] == "bob" and first["details"]["session_id"] == "s1"
    )
    assert ids(client.get("/api/v1/audit-events/", {"kind": "login_failed"})) == [events[2].pk]
    assert ids(client.get("/api/v1/audit-events/", {"via": "cli"})) == [events[3].pk]
    assert ids(client.get("/api/v1/audit-events/", {"actor": "bob"})) == [events[3].pk, events[0].pk]
    assert ids(client.get("/api/v1/audit-events/", {"actor_id": events[1].actor_id})) == [events[1].pk]
    since = (timezone.now() - timedelta(days=1)).isoformat()
    assert events[0].pk not in ids(client.get("/api/v1/audit-events/", {"since": since}))
    assert ids(client.get("/api/v1/audit-events/", {"until": since})) == [events[0].pk]
    assert client.get("/api/v1/audit-events/", {"kind": "nope"}).status_code == 400
    assert client.get("/api/v1/audit-events/", {"actor": "x" * 300}).status_code == 400
    assert client.get(f"/api/v1/audit-events/{events[2].pk}/").json()["remote_addr"] == "192.0.2.1"


def test_the_events_are_read_only_and_hidden_from_operators_and_viewers(api_client, alice, bob, charlie, events):
    client = api_client(alice)
    assert client.post("/api/v1/audit-events/", {"kind": "login"}).status_code == 405
    assert client.delete(f"/api/v1/audit-events/{events[0].pk}/").status_code == 405
    assert client.patch(f"/api/v1/audit-events/{events[0].pk}/", {"kind": "login"}).status_code == 405
    for user in (bob, charlie):
        assert api_client(user).get("/api/v1/audit-events/").status_code == 403
    assert api_client().get("/api/v1/audit-events/").status_code == 401
    assert AuditEvent.objects.count() == 4


def test_the_admin_list_is_read_only_and_filterable(client_for, events):
    alice = client_for("alice")
    page = alice.get("/admin/audit/auditevent/", {"kind__exact": "login_failed"})
    assert page.status_code == 200 and "mallory" in page.content.decode()
    assert "export_audit_events_csv" in page.content.decode()
    for query in ({"q": "mallory"}, {"q": "192.0.2"}, {"at": "7d"}, {"actor__id__exact": events[1].actor_id}):
        assert alice.get("/admin/audit/auditevent/", query).status_code == 200, query
    assert "mallory" in alice.get("/admin/audit/auditevent/", {"q": "192.0.2"}).content.decode()
    assert alice.get("/admin/auditlog/logentry/", {"q": "x" * 300}).status_code == 200  # the kit's search bound
    assert alice.get(f"/admin/audit/auditevent/{events[0].pk}/change/").status_code == 200
    assert alice.get("/admin/audit/auditevent/add/").status_code == 403
    assert alice.post(f"/admin/audit/auditevent/{events[0].pk}/delete/", {"post": "yes"}).status_code == 403
    assert client_for("bob").get("/admin/audit/auditevent/").status_code == 403
    assert AuditEvent.objects.count() == 4

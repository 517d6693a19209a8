"""GET /api/v1/model-history/: the model history in the API, read-only, filterable, exportable; admins only."""

from __future__ import annotations

import json

import pytest
from auditlog.models import LogEntry

from audit.models import AuditEvent
from instances.models import Instance

pytestmark = pytest.mark.django_db

SECRET = "hist0ry-Pa55-xyz"


@pytest.fixture
def changed(api_client, alice, make_credential, make_instance):
    """An admin rotates a credential's password and renames an instance, through the API."""
    credential = make_credential(name="hist-cred", password="first-Pa55")
    instance = make_instance("postgresql", port=5432, credential=credential, name="hist-pg")
    client = api_client(alice)
    assert client.patch(f"/api/v1/credentials/{credential.pk}/", {"password": SECRET}, format="json").status_code == 200
    assert client.patch(f"/api/v1/instances/{instance.pk}/", {"name": "hist-pg-2"}, format="json").status_code == 200
    return credential, instance


def test_admins_list_and_filter_the_history_without_secrets(api_client, alice, changed):
    credential, instance = changed
    client = api_client(alice)
    body = client.get("/api/v1/model-history/")
    assert body.status_code == 200
    assert SECRET not in body.content.decode()
    results = body.json()["results"]
    assert results[0]["timestamp"] >= results[-1]["timestamp"]  # newest first
    creds = client.get("/api/v1/model-history/", {"model": "instances.credential", "object_pk": credential.pk})
    rows = creds.json()["results"]
    assert [r["action"] for r in rows] == ["update", "create"]
    update = rows[0]
    assert update["actor_username"] == "alice" and update["model"] == "instances.credential"
    assert update["changes"]["password_encrypted"] == ["[hidden]", "[hidden]"]  # the field's name, never a value
    renamed = client.get("/api/v1/model-history/", {"model": "instances.instance", "action": "update"}).json()
    assert [r["changes"]["name"] for r in renamed["results"]] == [["hist-pg", "hist-pg-2"]]
    assert renamed["results"][0]["object_pk"] == str(instance.pk)
    assert client.get("/api/v1/model-history/", {"action": "nope"}).status_code == 400
    assert client.get("/api/v1/model-history/", {"model": "x" * 300}).status_code == 400
    one = client.get(f"/api/v1/model-history/{update['id']}/")
    assert one.status_code == 200 and one.json()["id"] == update["id"]


def test_the_history_is_read_only_admins_only_and_kept_after_a_delete(api_client, alice, bob, charlie, changed):
    credential, instance = changed
    client = api_client(alice)
    entry = LogEntry.objects.order_by("-pk").first()
    assert client.delete(f"/api/v1/model-history/{entry.pk}/").status_code == 405
    assert client.post("/api/v1/model-history/", {}).status_code == 405
    for user in (bob, charlie):
        assert api_client(user).get("/api/v1/model-history/").status_code == 403
    assert api_client().get("/api/v1/model-history/").status_code == 401
    Instance.objects.filter(pk=instance.pk).delete()
    Instance.objects.create(name="x", db_type="mysql", host="127.0.0.1", port=3306, credential=credential)
    kept = client.get("/api/v1/model-history/", {"model": "instances.instance", "object_pk": instance.pk}).json()
    assert {r["action"] for r in kept["results"]} >= {"create", "update"}


def test_the_history_exports_and_the_export_is_audited(api_client, alice, changed):
    credential, _instance = changed
    response = api_client(alice).get(
        "/api/v1/model-history/export/", {"format": "json", "model": "instances.credential"}
    )
    assert response.status_code == 200
    rows = json.loads(b"".join(response.streaming_content))
    assert {row["object_id"] for row in rows} == {str(credential.pk)}
    assert SECRET not in json.dumps(rows)
    event = AuditEvent.objects.get(kind="export", details__kind="model_history")
    assert event.details["rows"] == len(rows) and event.details["filters"] == {"model": "instances.credential"}

"""Malformed requests: 400 with a message on the offending field, a stable code, and nothing started."""

from __future__ import annotations

import pytest

from sync.models import SyncSession

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("payload", "field", "code"),
    [
        ({"instance_ids": [999999]}, "instance_ids", "unknown_instance"),
        ({"instance_ids": []}, "instance_ids", "empty"),
        ({}, "instance_ids", "invalid"),
        ({"instance_ids": "1,2"}, "instance_ids", "invalid"),
        ({"instance_ids": ["one"]}, "instance_ids", "invalid"),
        ({"instance_ids": [0]}, "instance_ids", "invalid"),
        ({"instance_ids": [None]}, "instance_ids", "invalid"),
        ({"instance_ids": list(range(1, 1002))}, "instance_ids", "invalid"),
        ({"all": "yes please"}, "all", "invalid"),
        ({"all": True, "instance_ids": [1]}, "instance_ids", "invalid"),
        ({"all": True, "sync_type": "manual_single"}, "sync_type", "invalid_sync_type"),
        ({"all": True, "sync_type": ["manual_batch"]}, "sync_type", "invalid_sync_type"),
        ({"all": True, "force": "sometimes"}, "force", "invalid"),
    ],
)
def test_bad_session_start_is_400_and_starts_nothing(api_client, bob, unreachable_instance, payload, field, code):
    unreachable_instance()
    response = api_client(bob).post("/api/v1/sync-sessions/", payload, format="json")
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["code"] == code
    assert body[field]  # DRF's shape: a list of messages, or {index: [messages]} for one list item
    assert SyncSession.objects.count() == 0


def test_inactive_instance_and_no_active_instance(api_client, bob, unreachable_instance):
    off = unreachable_instance(is_active=False)
    client = api_client(bob)
    response = client.post("/api/v1/sync-sessions/", {"instance_ids": [off.pk]}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "instance_inactive"
    response = client.post("/api/v1/sync-sessions/", {"all": True}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "no_active_instance"
    assert SyncSession.objects.count() == 0


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"instance_ids": ["\\u0000"]}',
        b'{"all": true, "sync_type": "manual_batch\\u0000"}',
        b'{"all": true, "sync_type": "\\ud800"}',
        b"[1, 2, 3]",
    ],
)
def test_unparseable_or_unstorable_json_is_400(api_client, bob, unreachable_instance, body):
    unreachable_instance()
    response = api_client(bob).generic("POST", "/api/v1/sync-sessions/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] in {"parse_error", "invalid"}
    assert SyncSession.objects.count() == 0


def test_nul_in_instance_options_is_refused_before_the_database(api_client, alice, make_credential):
    cred = make_credential()
    body = b'{"name": "x", "db_type": "mysql", "host": "h", "credential": %d, "options": {"k": "a\\u0000b"}}' % cred.pk
    response = api_client(alice).generic("POST", "/api/v1/instances/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/v1/sync-sessions/?started_after=yesterday", "started_after"),
        ("/api/v1/sync-sessions/?started_before=2024-13-45", "started_before"),
        ("/api/v1/sync-sessions/?status=sleeping", "status"),
        ("/api/v1/sync-sessions/?sync_type=weekly", "sync_type"),
        ("/api/v1/change-logs/?detected_after=not-a-date", "detected_after"),
        ("/api/v1/change-logs/?change_type=renamed", "change_type"),
        ("/api/v1/accounts/?instance=abc", "instance"),
        ("/api/v1/sync-records/?ids=", "ids"),
        ("/api/v1/sync-records/?ids=1,x", "ids"),
        ("/api/v1/sync-records/?ids=999999", "ids"),
        ("/api/v1/sync-records/?ids=" + ",".join(str(i) for i in range(1, 502)), "ids"),
        ("/api/v1/sync-records/?session=nope", "session"),
        ("/api/v1/sync-records/", "ids"),
    ],
)
def test_bad_query_parameters_are_400_with_the_parameter_named(api_client, charlie, url, field):
    response = api_client(charlie).get(url)
    assert response.status_code == 400, url
    body = response.json()
    assert body[field]
    assert body["code"]


def test_sync_action_with_a_bad_force_flag_starts_nothing(api_client, bob, unreachable_instance):
    from instances.models import Instance

    instance = unreachable_instance()
    response = api_client(bob).post(f"/api/v1/instances/{instance.pk}/sync/", {"force": "maybe"}, format="json")
    assert response.status_code == 400
    assert response.json()["force"]
    assert Instance.objects.get(pk=instance.pk).sync_count == 0

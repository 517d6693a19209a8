"""The task broker is down: starting or retrying a session is a JSON 503 ``broker_unavailable``.

The broker is Redis on a closed port (tests/broker.py), so django-q2's ``async_task``
fails for real. The service fails the records it could not queue (``error_kind``
``broker``), finalizes the session and raises ``SyncBrokerError``; the API answers
503 with the session's id, and the session it names has ended with its records failed.
Transactional: the tasks are queued on commit, which a wrapping test transaction never does.
"""

from __future__ import annotations

import pytest

from sync.models import SyncInstanceRecord, SyncSession
from tests.broker import broker_down, role_groups_back  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("role_groups_back", "broker_down")]


def assert_broker_503(response, *, instances: int) -> SyncSession:
    assert response.status_code == 503, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == "broker_unavailable"
    assert body["session_id"] in body["detail"]
    assert body["not_queued"] == instances
    session = SyncSession.objects.get(session_id=body["session_id"])
    assert session.status == "failed"
    assert session.completed_at is not None
    records = list(SyncInstanceRecord.objects.filter(session=session))
    assert len(records) == instances
    assert {(r.status, r.error_kind) for r in records} == {("failed", "broker")}
    return session


def test_starting_a_session_while_the_broker_is_down_is_503(api_client, bob, unreachable_instance):
    first, second = unreachable_instance("b1"), unreachable_instance("b2")
    response = api_client(bob).post("/api/v1/sync-sessions/", {"instance_ids": [first.pk, second.pk]}, format="json")
    session = assert_broker_503(response, instances=2)
    assert SyncSession.objects.count() == 1
    # the session page tells the same story as the 503
    detail = api_client(bob).get(f"/api/v1/sync-sessions/{session.session_id}/").json()
    assert detail["status"] == "failed"
    assert {r["error_kind"] for r in detail["records"]} == {"broker"}


def test_all_active_while_the_broker_is_down_is_503(api_client, alice, unreachable_instance):
    unreachable_instance("a1")
    response = api_client(alice).post("/api/v1/sync-sessions/", {"all": True}, format="json")
    assert_broker_503(response, instances=1)


def test_retry_failed_while_the_broker_is_down_is_503(api_client, bob, unreachable_instance, make_session):
    ok, bad = unreachable_instance("ok"), unreachable_instance("bad")
    original = make_session([ok, bad], ["completed", "failed"], status="failed")
    response = api_client(bob).post(f"/api/v1/sync-sessions/{original.session_id}/retry-failed/")
    retry = assert_broker_503(response, instances=1)
    assert retry.retry_of_id == original.pk
    assert SyncInstanceRecord.objects.get(session=retry).instance_name == "bad"

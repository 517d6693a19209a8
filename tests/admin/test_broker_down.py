"""The task broker is down: the admin's sync and retry buttons say so, and open the failed session.

The broker is Redis on a closed port (tests/broker.py), so django-q2's ``async_task``
fails for real. The service fails the records it could not queue (error kind
``broker``), finalizes the session and raises ``SyncBrokerError``; the admin shows an
error message on that session's page instead of a 500.
Transactional: the tasks are queued on commit, which a wrapping test transaction never does.
"""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from sync.models import SyncSession
from sync.services import sync_session_run, sync_session_start
from tests.broker import broker_down  # noqa: F401
from tests.sync.conftest import closed_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("broker_down")]

INSTANCES = reverse("admin:instances_instance_changelist")
MESSAGE = "The task broker is unreachable"


def texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def post_action(client, action: str, ids: list[int]):
    return client.post(INSTANCES, {"action": action, "_selected_action": ids, "index": 0}, follow=True)


@pytest.fixture
def two(make_instance):
    return [make_instance(name="db-a", port=closed_port()), make_instance(name="db-b", port=closed_port())]


def assert_failed_for_the_broker(session: SyncSession, instances: int) -> None:
    assert session.status == "failed" and session.completed_at is not None
    assert session.records.count() == instances
    assert set(session.records.values_list("status", "error_kind")) == {("failed", "broker")}


def assert_lands_on_the_session_with_the_message(resp, session: SyncSession, instances: int) -> None:
    assert resp.status_code == 200
    assert resp.redirect_chain[-1][0] == reverse("admin:sync_syncsession_change", args=[str(session.session_id)])
    (message,) = [m for m in texts(resp) if MESSAGE in m]
    assert f"{instances} instances of sync session {str(session.session_id)[:8]}" in message
    assert "could not be queued and are marked failed" in message
    page = resp.content.decode()
    assert 'class="error"' in page and MESSAGE in page  # rendered as an error on the batch-details page
    assert "[broker]" in page


def test_sync_selected_with_the_broker_down_shows_an_error(client_for, two):
    resp = post_action(client_for("bob"), "sync_selected", [i.pk for i in two])
    session = SyncSession.objects.get()
    assert_failed_for_the_broker(session, 2)
    assert_lands_on_the_session_with_the_message(resp, session, 2)
    assert not [m for m in texts(resp) if "started for" in m]


def test_sync_all_button_with_the_broker_down_shows_an_error(client_for, two):
    resp = client_for("alice").post(reverse("admin:instances_instance_sync_all"), follow=True)
    session = SyncSession.objects.get()
    assert_failed_for_the_broker(session, 2)
    assert_lands_on_the_session_with_the_message(resp, session, 2)


def test_retry_failed_with_the_broker_down_shows_an_error(client_for, two, alice):
    original = sync_session_start(instances=two, sync_type="manual_batch", created_by=alice, enqueue=False)
    sync_session_run(session=original)  # both ports are closed: two classified failures
    resp = client_for("bob").post(reverse("admin:sync_syncsession_retry", args=[original.pk]), follow=True)
    retry = SyncSession.objects.exclude(pk=original.pk).get()
    assert retry.retry_of == original
    assert_failed_for_the_broker(retry, 2)
    assert_lands_on_the_session_with_the_message(resp, retry, 2)
    assert not [m for m in texts(resp) if "Retrying" in m]

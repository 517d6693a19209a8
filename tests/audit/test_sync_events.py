"""Who started, cancelled or retried a sync, through the admin, the API, the command line and the schedule."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.urls import reverse

from audit.models import AuditEvent
from sync.models import SyncSession
from sync.services import sync_scheduled_start, sync_session_run, sync_session_start
from tests.audit.conftest import only_event

pytestmark = pytest.mark.django_db

INSTANCES = reverse("admin:instances_instance_changelist")


@pytest.fixture
def two(unreachable_instance):
    return [unreachable_instance("db-a"), unreachable_instance("db-b")]


@pytest.fixture
def failed_session(two, alice):
    session = sync_session_start(instances=two, sync_type="manual_batch", created_by=alice, enqueue=False)
    sync_session_run(session=session)  # both ports are closed: two classified failures
    session.refresh_from_db()
    assert session.status == "failed"
    AuditEvent.objects.all().delete()  # the fixture's own start
    return session


def assert_session_event(event: AuditEvent, session: SyncSession, *, actor: str, via: str, address: str | None):
    assert (event.actor.username, event.actor_username, event.via) == (actor, actor, via)
    assert event.remote_addr == address
    assert (event.object_type, event.object_id) == ("sync.syncsession", str(session.session_id))
    assert event.details["session_id"] == str(session.session_id)
    assert event.details["sync_type"] == session.sync_type


# --- admin -----------------------------------------------------------------------------------


def test_admin_start_is_recorded_with_user_address_and_instances(client_for, two, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        client_for("bob").post(INSTANCES, {"action": "sync_selected", "_selected_action": [i.pk for i in two]})
    session = SyncSession.objects.get()
    event = only_event("sync_started")
    assert_session_event(event, session, actor="bob", via="admin", address="10.9.8.7")
    assert event.details["instance_count"] == 2 and event.details["instances"] == ["db-a", "db-b"]


def test_admin_cancel_is_recorded_with_the_user_that_pressed_it(client_for, two, alice):
    session = sync_session_start(instances=two, sync_type="manual_batch", created_by=alice, enqueue=False)
    client_for("bob").post(reverse("admin:sync_syncsession_cancel", args=[session.pk]))
    event = only_event("sync_cancelled")
    assert_session_event(event, session, actor="bob", via="admin", address="10.9.8.7")
    assert event.details["pending_cancelled"] == 2
    client_for("bob").post(reverse("admin:sync_syncsession_cancel", args=[session.pk]))  # already ended
    assert AuditEvent.objects.filter(kind="sync_cancelled").count() == 1


def test_admin_retry_is_recorded_on_the_new_session(client_for, failed_session):
    client_for("bob").post(reverse("admin:sync_syncsession_retry", args=[failed_session.pk]))
    retry = SyncSession.objects.get(retry_of=failed_session)
    event = only_event("sync_retried")
    assert_session_event(event, retry, actor="bob", via="admin", address="10.9.8.7")
    assert event.details["retry_of"] == str(failed_session.session_id)
    assert not AuditEvent.objects.filter(kind="sync_started").exists()


def test_a_viewer_refused_a_start_leaves_no_event(client_for, two):
    client_for("charlie").post(INSTANCES, {"action": "sync_selected", "_selected_action": [i.pk for i in two]})
    assert not AuditEvent.objects.filter(kind__startswith="sync_").exists()


# --- API -------------------------------------------------------------------------------------


def test_api_start_cancel_and_retry_are_recorded_with_the_token_user(
    api_client, bob, two, failed_session, django_capture_on_commit_callbacks
):
    client = api_client(bob)
    with django_capture_on_commit_callbacks(execute=False):
        started = client.post("/api/v1/sync-sessions/", {"instance_ids": [two[0].pk]}, REMOTE_ADDR="10.1.1.1")
    assert started.status_code == 202
    session = SyncSession.objects.get(session_id=started.json()["session_id"])
    assert_session_event(only_event("sync_started"), session, actor="bob", via="api", address="10.1.1.1")

    assert client.post(f"/api/v1/sync-sessions/{session.session_id}/cancel/").status_code == 200
    assert_session_event(only_event("sync_cancelled"), session, actor="bob", via="api", address="127.0.0.1")

    with django_capture_on_commit_callbacks(execute=False):
        retried = client.post(f"/api/v1/sync-sessions/{failed_session.session_id}/retry-failed/")
    assert retried.status_code == 202
    retry = SyncSession.objects.get(session_id=retried.json()["session_id"])
    event = only_event("sync_retried")
    assert_session_event(event, retry, actor="bob", via="api", address="127.0.0.1")
    assert event.details["retry_of"] == str(failed_session.session_id)


def test_api_single_sync_is_recorded_on_the_instance(api_client, bob, two):
    response = api_client(bob).post(f"/api/v1/instances/{two[0].pk}/sync/", {})
    assert response.status_code == 400  # the port is closed: the sync ran and failed
    event = only_event("sync_started")
    assert (event.actor_username, event.via, event.remote_addr) == ("bob", "api", "127.0.0.1")
    assert (event.object_type, event.object_id, event.object_repr) == ("instances.instance", str(two[0].pk), "db-a")
    assert event.details["sync_type"] == "manual_single"


# --- command line and schedule ------------------------------------------------------------------


def test_cli_single_and_batch_syncs_are_recorded_with_the_user(two, bob):
    with pytest.raises(SystemExit):  # exit 1: the instance is unreachable
        call_command("sync_accounts", "--instance", "db-a", "--user", "bob", "--json")
    event = only_event("sync_started")
    assert (event.actor_username, event.via, event.remote_addr) == ("bob", "cli", None)
    assert event.details["sync_type"] == "manual_single" and event.object_repr == "db-a"

    with pytest.raises(SystemExit):
        call_command("sync_accounts", "--all", "--user", "bob", "--json")
    session = SyncSession.objects.get()
    assert_session_event(
        only_event("sync_started", details__sync_type="manual_batch"), session, actor="bob", via="cli", address=None
    )


def test_cli_without_user_is_recorded_without_actor(two):
    with pytest.raises(SystemExit):
        call_command("sync_accounts", "--instance", "db-b", "--json")
    event = only_event("sync_started")
    assert (event.actor, event.actor_username, event.via) == (None, "", "cli")


def test_scheduled_start_is_recorded_as_the_schedule(two, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        session = sync_scheduled_start()
    event = only_event("sync_started")
    assert (event.actor, event.via, event.details["instance_count"]) == (None, "schedule", 2)
    assert event.object_id == str(session.session_id)


def test_a_failing_audit_write_never_fails_the_sync_start(two, alice, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("audit table is gone")

    monkeypatch.setattr(AuditEvent.objects, "create", broken)
    session = sync_session_start(instances=two, sync_type="manual_batch", created_by=alice, enqueue=False)
    assert session.records.count() == 2
    assert any("audit event sync_started could not be recorded" in r.getMessage() for r in caplog.records)
    assert any(r.exc_info for r in caplog.records if r.name == "whalefall.audit")

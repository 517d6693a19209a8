"""Starting, watching, cancelling and retrying syncs from the admin; who may; what bad input gets."""

from __future__ import annotations

import socket
import uuid
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from sync.models import SyncInstanceRecord, SyncSession
from sync.services import sync_session_run, sync_session_start

pytestmark = pytest.mark.django_db

INSTANCES = reverse("admin:instances_instance_changelist")
SESSIONS = reverse("admin:sync_syncsession_changelist")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def two(make_instance):
    return [make_instance(name="db-a", port=closed_port()), make_instance(name="db-b", port=closed_port())]


def texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def post_action(client, action: str, ids: list[int], follow: bool = False):
    return client.post(INSTANCES, {"action": action, "_selected_action": ids, "index": 0}, follow=follow)


# --- starting a batch ------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["alice", "bob"])
def test_sync_selected_starts_a_manual_batch_and_opens_its_page(
    client_for, two, role, django_capture_on_commit_callbacks
):
    client = client_for(role)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        resp = post_action(client, "sync_selected", [i.pk for i in two])
    session = SyncSession.objects.get()
    assert resp.status_code == 302
    assert resp["Location"] == reverse("admin:sync_syncsession_change", args=[session.pk])
    assert session.sync_type == "manual_batch" and session.created_by.username == role
    assert sorted(session.records.values_list("instance_name", "status")) == [("db-a", "pending"), ("db-b", "pending")]
    assert len(callbacks) == 1  # the workers' tasks are queued once the transaction commits
    assert "started for 2 instances on the workers" in texts(resp)[0]


def test_sync_all_active_button_skips_inactive_instances(client_for, two, make_instance):
    make_instance(name="retired", is_active=False)
    resp = client_for("bob").post(reverse("admin:instances_instance_sync_all"))
    session = SyncSession.objects.get()
    assert resp["Location"] == reverse("admin:sync_syncsession_change", args=[session.pk])
    assert sorted(session.records.values_list("instance_name", flat=True)) == ["db-a", "db-b"]


def test_viewer_sees_no_sync_action_or_button_and_forged_posts_start_nothing(client_for, two):
    charlie = client_for("charlie")
    html = charlie.get(INSTANCES).content.decode()
    assert 'value="sync_selected"' not in html and 'value="test_connection"' not in html
    assert "wf-sync-all" not in html
    assert 'id="wf-sync-all"' in client_for("bob").get(INSTANCES).content.decode()

    resp = post_action(charlie, "sync_selected", [i.pk for i in two], follow=True)
    assert "You do not have permission to start, cancel or retry syncs" in resp.content.decode()
    resp = charlie.post(reverse("admin:instances_instance_sync_all"), follow=True)
    assert "You do not have permission to start, cancel or retry syncs" in resp.content.decode()
    assert not SyncSession.objects.exists()


def test_empty_selection_and_inactive_instances_start_nothing(client_for, two, make_instance):
    alice = client_for("alice")
    resp = post_action(alice, "sync_selected", [], follow=True)
    assert "Items must be selected in order to perform actions" in resp.content.decode()
    resp = post_action(alice, "sync_selected", [987654], follow=True)  # an instance deleted meanwhile
    assert "None of the selected instances exists any more; nothing was started." in resp.content.decode()
    retired = make_instance(name="retired", is_active=False)
    resp = post_action(alice, "sync_selected", [two[0].pk, retired.pk], follow=True)
    assert "Instance retired is inactive: activate it or leave it out. Nothing was started." in resp.content.decode()
    assert not SyncSession.objects.exists()


def test_sync_all_with_no_active_instance_says_so(client_for, make_instance):
    make_instance(name="retired", is_active=False)
    resp = client_for("alice").post(reverse("admin:instances_instance_sync_all"), follow=True)
    assert "There is no active instance to sync; nothing was started." in resp.content.decode()
    assert not SyncSession.objects.exists()
    assert client_for("alice").get(reverse("admin:instances_instance_sync_all")).status_code == 405


# --- the batch-details page --------------------------------------------------------------------


def test_batch_details_and_progress_json_follow_the_records(client_for, two, alice):
    session = sync_session_start(instances=two, sync_type="manual_batch", created_by=alice, enqueue=False)
    first, second = session.records.order_by("pk")
    first.mark_running()
    first.mark_completed(synced=7, created=7, updated=0, deleted=0, details={})
    client = client_for("charlie")
    page = client.get(reverse("admin:sync_syncsession_change", args=[session.pk])).content.decode()
    assert 'data-running="1"' in page and reverse("admin:sync_syncsession_progress", args=[session.pk]) in page
    assert 'id="wf-succeeded">1<' in page and 'id="wf-accounts">7<' in page
    assert "wf-retry" not in page and "wf-cancel" not in page  # a viewer gets no buttons

    data = client.get(reverse("admin:sync_syncsession_progress", args=[session.pk])).json()
    assert (data["status"], data["total"], data["done"], data["succeeded"], data["failed"]) == ("running", 2, 1, 1, 0)
    assert [(r["instance"], r["status"]) for r in data["records"]] == [("db-a", "completed"), ("db-b", "pending")]

    second.mark_running()
    second.mark_failed(error_kind="connection", error_message="db-b: cannot connect to 127.0.0.1")
    session.finalize()
    data = client.get(reverse("admin:sync_syncsession_progress", args=[str(session.session_id)])).json()
    assert (data["status"], data["running"], data["failed"]) == ("failed", False, 1)
    assert data["records"][1]["error_kind"] == "connection"
    page = client_for("alice").get(reverse("admin:sync_syncsession_change", args=[session.session_id])).content
    assert b'data-running="0"' in page and b'id="wf-retry"' in page and b"[connection]" in page


def test_unknown_session_ids_get_a_message_not_an_error(client_for):
    client = client_for("alice")
    for bad in ("999999", str(uuid.uuid4()), "not-a-session"):
        resp = client.get(reverse("admin:sync_syncsession_change", args=[bad]), follow=True)
        assert resp.redirect_chain[-1][0] == SESSIONS
        assert f"Sync session “{bad}” does not exist" in resp.content.decode()
        assert client.get(reverse("admin:sync_syncsession_progress", args=[bad])).status_code == 404
        resp = client.post(reverse("admin:sync_syncsession_retry", args=[bad]), follow=True)
        assert "does not exist" in resp.content.decode()
    assert not SyncSession.objects.exists()


def test_cancel_marks_pending_records_cancelled_and_is_refused_to_viewers(client_for, two, alice):
    session = sync_session_start(instances=two, sync_type="manual_batch", created_by=alice, enqueue=False)
    url = reverse("admin:sync_syncsession_cancel", args=[session.pk])
    assert client_for("alice").get(url).status_code == 405
    resp = client_for("charlie").post(url, follow=True)
    assert "You do not have permission" in resp.content.decode()
    assert SyncSession.objects.get().status == "running"

    resp = client_for("bob").post(url, follow=True)
    assert "cancelled" in resp.content.decode()
    assert SyncSession.objects.get().status == "cancelled"
    assert set(SyncInstanceRecord.objects.values_list("status", flat=True)) == {"cancelled"}
    resp = client_for("bob").post(url, follow=True)
    assert "had already ended (Cancelled); nothing to cancel" in resp.content.decode()


def test_retry_failed_starts_a_new_session_with_only_the_failed_instances(client_for, make_instance, two, alice):
    session = sync_session_start(instances=two, sync_type="manual_batch", created_by=alice, enqueue=False)
    sync_session_run(session=session)  # both ports are closed: two classified failures
    session.refresh_from_db()
    assert session.status == "failed"
    url = reverse("admin:sync_syncsession_retry", args=[session.pk])

    resp = client_for("charlie").post(url, follow=True)
    assert "You do not have permission" in resp.content.decode()
    assert SyncSession.objects.count() == 1

    resp = client_for("bob").post(url)
    retry = SyncSession.objects.exclude(pk=session.pk).get()
    assert resp["Location"] == reverse("admin:sync_syncsession_change", args=[retry.pk])
    assert retry.retry_of == session and retry.total_instances == 2
    assert "Retrying 2 failed instances in new session" in texts(resp)[0]

    page = client_for("bob").get(reverse("admin:sync_syncsession_change", args=[session.pk])).content.decode()
    assert str(retry.session_id)[:8] in page  # "Retried in" link

    resp = client_for("bob").post(reverse("admin:sync_syncsession_retry", args=[retry.pk]), follow=True)
    assert "still running" in resp.content.decode()
    assert SyncSession.objects.count() == 2


def test_retry_of_a_session_without_failures_starts_nothing(client_for, alice, make_instance):
    inst = make_instance(name="ok")
    session = sync_session_start(instances=[inst], sync_type="manual_batch", created_by=alice, enqueue=False)
    record = session.records.get()
    record.mark_running()
    record.mark_completed(synced=1, created=1, updated=0, deleted=0, details={})
    session.finalize()
    resp = client_for("alice").post(reverse("admin:sync_syncsession_retry", args=[session.pk]), follow=True)
    assert "no failed instance that still exists; nothing to retry" in resp.content.decode()
    assert SyncSession.objects.count() == 1


# --- the sync records list -------------------------------------------------------------------


@pytest.fixture
def history(alice, make_instance):
    """Sessions of each type and status, started today, 5 days ago and 20 days ago."""
    inst = make_instance(name="h1")
    made = {}
    for key, sync_type, status, days in (
        ("today_batch_failed", "manual_batch", "failed", 0),
        ("today_task_completed", "manual_task", "completed", 0),
        ("five_batch_completed", "manual_batch", "completed", 5),
        ("twenty_sched_failed", "scheduled_task", "failed", 20),
    ):
        session = sync_session_start(instances=[inst], sync_type=sync_type, created_by=alice, enqueue=False)
        SyncSession.objects.filter(pk=session.pk).update(
            status=status, started_at=timezone.now() - timedelta(days=days), completed_at=timezone.now()
        )
        made[key] = session
    return made


@pytest.fixture
def shown(history, client_for):
    client = client_for("charlie")
    sids = {key: str(s.session_id)[:8] for key, s in history.items()}

    def run(**params) -> set[str]:
        resp = client.get(SESSIONS, params)
        assert resp.status_code == 200
        html = resp.content.decode()
        return {key for key, sid in sids.items() if f">{sid}<" in html}

    run.client = client
    return run


def test_sessions_filter_by_type_status_and_started_range(shown):
    everything = {"today_batch_failed", "today_task_completed", "five_batch_completed", "twenty_sched_failed"}
    assert shown() == everything
    assert shown(sync_type__exact="manual_batch") == {"today_batch_failed", "five_batch_completed"}
    assert shown(status__exact="failed") == {"today_batch_failed", "twenty_sched_failed"}
    assert shown(started="today") == {"today_batch_failed", "today_task_completed"}
    assert shown(started="7d") == everything - {"twenty_sched_failed"}
    assert shown(started="30d") == everything
    day = (timezone.localdate() - timedelta(days=5)).isoformat()
    assert shown(started_from=day, started_to=day) == {"five_batch_completed"}
    assert shown(started_to=day) == {"five_batch_completed", "twenty_sched_failed"}
    assert shown(sync_type__exact="manual_batch", status__exact="failed", started="today") == {"today_batch_failed"}


def test_bad_date_ranges_say_so_and_hide_nothing(shown):
    everything = {"today_batch_failed", "today_task_completed", "five_batch_completed", "twenty_sched_failed"}
    html = shown.client.get(SESSIONS, {"started_from": "2026-03-02", "started_to": "2026-03-01"}).content.decode()
    assert "The date range starts (2026-03-02) after it ends (2026-03-01): showing all dates." in html
    assert shown(started_from="2026-03-02", started_to="2026-03-01") == everything
    assert (
        "Dates must look like 2026-01-31" in shown.client.get(SESSIONS, {"started_from": "yesterday"}).content.decode()
    )
    assert "Unknown date range" in shown.client.get(SESSIONS, {"started": "fortnight"}).content.decode()


def test_sessions_list_columns_and_search_by_short_id(shown, history):
    target = history["five_batch_completed"]
    assert shown(q=str(target.session_id)[:8]) == {"five_batch_completed"}
    assert shown(q=str(target.session_id)) == {"five_batch_completed"}
    html = shown.client.get(SESSIONS, {"q": "zz-not-hex"}).content.decode()
    assert "is not a session id" in html
    html = shown.client.get(SESSIONS).content.decode()
    assert "wf-badge-failed" in html and "wf-progress" in html and "Sync records" in html


def test_sessions_list_pages_by_twenty_newest_first(client_for, alice, make_instance):
    inst = make_instance(name="p1")
    for _ in range(21):
        sync_session_start(instances=[inst], sync_type="manual_batch", created_by=alice, enqueue=False)
    newest = SyncSession.objects.order_by("-started_at", "-id").first()
    resp = client_for("charlie").get(SESSIONS)
    rows = list(resp.context["cl"].result_list)
    assert len(rows) == 20 and rows[0] == newest
    assert "?p=2" in resp.content.decode()


def test_records_list_filters_by_classified_error(client_for, two, alice, make_instance):
    failed = sync_session_start(instances=two, sync_type="manual_batch", created_by=alice, enqueue=False)
    sync_session_run(session=failed)
    sync_session_start(
        instances=[make_instance(name="waiting")], sync_type="manual_batch", created_by=alice, enqueue=False
    )
    client = client_for("charlie")
    url = reverse("admin:sync_syncinstancerecord_changelist")

    def shown(**params) -> list[str]:
        return sorted(r.instance_name for r in client.get(url, params).context["cl"].result_list)

    assert shown() == ["db-a", "db-b", "waiting"]
    assert shown(error_kind="connection") == ["db-a", "db-b"]
    assert shown(error_kind="permission") == []
    assert shown(status__exact="pending") == ["waiting"]

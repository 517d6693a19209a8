"""Every sync flow through the API: single sync, sessions (start, all, cancel, retry), batch details."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.conf import Conf

from sync.leases import lease_acquire
from sync.models import SyncSession

pytestmark = pytest.mark.django_db


@pytest.fixture
def workers_inline(monkeypatch, django_capture_on_commit_callbacks):
    """Run enqueued django-q2 tasks in this process (Q_CLUSTER sync mode) once the request commits."""
    monkeypatch.setattr(Conf, "SYNC", True)
    return lambda: django_capture_on_commit_callbacks(execute=True)


def test_single_sync_of_an_unreachable_instance_is_400_with_the_seed_result(api_client, bob, unreachable_instance):
    instance = unreachable_instance()
    response = api_client(bob).post(f"/api/v1/instances/{instance.pk}/sync/")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "instance_unreachable"
    assert body["result"]["success"] is False
    assert body["result"]["error_kind"] == "connection"
    assert instance.name in body["detail"]
    assert set(body["result"]) >= {"synced_count", "added_count", "modified_count", "removed_count", "details"}
    assert SyncSession.objects.count() == 0  # manual_single has no session


def test_single_sync_while_another_holds_the_instance_is_409(api_client, bob, unreachable_instance):
    instance = unreachable_instance()
    assert lease_acquire(instance_id=instance.pk, holder="someone-else").acquired
    response = api_client(bob).post(f"/api/v1/instances/{instance.pk}/sync/")
    assert response.status_code == 409
    assert response.json()["code"] == "sync_already_running"


def test_single_sync_of_an_inactive_instance_is_refused(api_client, bob, unreachable_instance):
    instance = unreachable_instance(is_active=False)
    response = api_client(bob).post(f"/api/v1/instances/{instance.pk}/sync/")
    assert response.status_code == 400
    assert response.json()["code"] == "instance_inactive"


def test_single_sync_of_live_mariadb_then_accounts_and_change_logs(api_client, bob, live_mariadb_instance):
    client = api_client(bob)
    response = client.post(f"/api/v1/instances/{live_mariadb_instance.pk}/sync/", {"force": False})
    assert response.status_code == 200, response.json()
    result = response.json()["result"]
    assert result["success"] is True
    assert result["synced_count"] > 0
    assert result["added_count"] == result["synced_count"]

    accounts = client.get(f"/api/v1/accounts/?instance={live_mariadb_instance.pk}&search=root&page_size=200").json()
    root = next(a for a in accounts["results"] if a["identity"].startswith("'root'@"))
    assert root["is_superuser"] is True
    assert root["db_type"] == "mysql"
    assert root["permissions"]["snapshot"]["privileges"]
    assert len(root["permissions"]["digest"]) == 64

    changes = client.get(f"/api/v1/change-logs/?instance={live_mariadb_instance.pk}&change_type=added").json()
    assert changes["count"] == result["added_count"]


def test_start_a_session_for_instances_runs_it_on_the_workers(api_client, bob, unreachable_instance, workers_inline):
    first, second = unreachable_instance("u1"), unreachable_instance("u2")
    with workers_inline() as callbacks:
        response = api_client(bob).post(
            "/api/v1/sync-sessions/", {"instance_ids": [second.pk, first.pk, second.pk], "sync_type": "manual_task"}
        )
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["sync_type"] == "manual_task"
    assert body["status"] == "running"
    assert [r["instance_name"] for r in body["records"]] == ["u2", "u1"]  # order kept, duplicate dropped
    assert {r["status"] for r in body["records"]} == {"pending"}
    # one enqueue of the whole session (the others are the failed records' announcements, sync.hooks)
    assert [c.__qualname__ for c in callbacks].count("_enqueue_records.<locals>.<lambda>") == 1

    session = api_client(bob).get(f"/api/v1/sync-sessions/{body['session_id']}/").json()
    assert session["status"] == "failed"
    assert session["progress"]["failed_instances"] == 2
    assert {r["error_kind"] for r in session["records"]} == {"connection"}


def test_start_a_session_for_all_active_instances(api_client, alice, unreachable_instance):
    unreachable_instance("a1")
    unreachable_instance("a2")
    unreachable_instance("off", is_active=False)
    response = api_client(alice).post("/api/v1/sync-sessions/", {"all": True})
    assert response.status_code == 202
    body = response.json()
    assert body["sync_type"] == "manual_batch"
    assert sorted(r["instance_name"] for r in body["records"]) == ["a1", "a2"]
    assert body["progress"]["pending_instances"] == 2


def test_cancel_a_running_session_then_cancel_again_is_409(api_client, bob, unreachable_instance, make_session):
    session = make_session([unreachable_instance("c1"), unreachable_instance("c2")])
    client = api_client(bob)
    response = client.post(f"/api/v1/sync-sessions/{session.session_id}/cancel/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "cancelled"
    assert body["progress"]["cancelled_instances"] == 2
    again = client.post(f"/api/v1/sync-sessions/{session.session_id}/cancel/")
    assert again.status_code == 409
    assert again.json()["code"] == "session_not_running"


def test_retry_failed_starts_a_new_session_for_the_failed_instances(
    api_client, bob, unreachable_instance, make_session
):
    ok, bad = unreachable_instance("ok"), unreachable_instance("bad")
    session = make_session([ok, bad], ["completed", "failed"], status="failed")
    response = api_client(bob).post(f"/api/v1/sync-sessions/{session.session_id}/retry-failed/")
    assert response.status_code == 202
    body = response.json()
    assert body["retry_of"] == str(session.session_id)
    assert [r["instance_name"] for r in body["records"]] == ["bad"]


def test_retry_failed_without_failures_is_409(api_client, bob, unreachable_instance, make_session):
    session = make_session([unreachable_instance()], ["completed"], status="completed")
    response = api_client(bob).post(f"/api/v1/sync-sessions/{session.session_id}/retry-failed/")
    assert response.status_code == 409
    assert response.json()["code"] == "nothing_to_retry"
    assert SyncSession.objects.count() == 1


def test_batch_details_for_record_ids(api_client, charlie, unreachable_instance, make_session):
    session = make_session(
        [unreachable_instance("b1"), unreachable_instance("b2"), unreachable_instance("b3")],
        ["completed", "failed", "completed"],
    )
    ids = list(session.records.order_by("pk").values_list("pk", flat=True))
    client = api_client(charlie)
    response = client.get(f"/api/v1/sync-records/?ids={ids[0]},{ids[1]}")
    assert response.status_code == 200
    body = response.json()
    assert body["summary"] == {
        "total_instances": 2,
        "successful_instances": 1,
        "failed_instances": 1,
        "pending_instances": 0,
        "running_instances": 0,
        "cancelled_instances": 0,
        "total_accounts": 5,
    }
    failed = next(r for r in body["records"] if r["status"] == "failed")
    assert failed["instance_name"] == "b2"
    assert failed["error_kind"] == "connection"
    assert failed["session_id"] == str(session.session_id)

    whole = client.get(f"/api/v1/sync-records/?session={session.session_id}").json()
    assert whole["summary"]["total_instances"] == 3
    assert whole["summary"]["total_accounts"] == 10
    assert client.get(f"/api/v1/sync-records/{ids[2]}/").json()["instance_name"] == "b3"


def test_session_list_filters_ordering_and_page_size(api_client, charlie, unreachable_instance, make_session):
    instance = unreachable_instance()
    old = make_session([instance], ["completed"], status="completed", started_at=timezone.now() - timedelta(days=3))
    for _ in range(21):
        make_session([instance], ["failed"], status="failed")
    client = api_client(charlie)
    page = client.get("/api/v1/sync-sessions/").json()
    assert page["count"] == 22
    assert len(page["results"]) == 20
    assert page["results"][-1]["session_id"] != str(old.session_id)  # newest first
    assert client.get("/api/v1/sync-sessions/?page=2").json()["results"][-1]["session_id"] == str(old.session_id)

    def ids(query: str) -> set[str]:
        response = client.get(f"/api/v1/sync-sessions/?{query}&page_size=100")
        assert response.status_code == 200, response.json()
        return {row["session_id"] for row in response.json()["results"]}

    assert ids("status=completed") == {str(old.session_id)}
    assert len(ids("status=failed")) == 21
    assert ids("sync_type=scheduled_task") == set()
    before = (timezone.now() - timedelta(days=1)).isoformat()
    assert ids(f"started_before={before.replace('+', '%2B')}") == {str(old.session_id)}
    assert str(old.session_id) not in ids(f"started_after={before.replace('+', '%2B')}")
    ordered = client.get("/api/v1/sync-sessions/?ordering=started_at").json()["results"]
    assert ordered[0]["session_id"] == str(old.session_id)


def test_unknown_session_is_404(api_client, charlie):
    for sid in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        response = api_client(charlie).get(f"/api/v1/sync-sessions/{sid}/")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"


def test_accounts_and_change_logs_filters(api_client, charlie, make_instance, make_history):
    mysql, pg = make_instance(name="m"), make_instance(name="p", db_type="postgresql", port=5432)
    make_history(mysql, 2, prefix="app")
    make_history(pg, 1, superuser=True, prefix="admin")
    client = api_client(charlie)

    def identities(url: str) -> list[str]:
        response = client.get(url)
        assert response.status_code == 200, response.json()
        return [row.get("identity") or row.get("account_identity") for row in response.json()["results"]]

    assert identities("/api/v1/accounts/?db_type=postgresql") == ["'admin0'@'%'"]
    assert identities("/api/v1/accounts/?superuser=true") == ["'admin0'@'%'"]
    assert identities(f"/api/v1/accounts/?instance={mysql.pk}&search=app1") == ["'app1'@'%'"]
    assert identities("/api/v1/accounts/?active=false") == []
    assert len(identities(f"/api/v1/change-logs/?instance={mysql.pk}&change_type=added")) == 2
    future = (timezone.now() + timedelta(days=1)).date().isoformat()
    assert identities(f"/api/v1/change-logs/?detected_after={future}") == []
    assert len(identities(f"/api/v1/change-logs/?detected_before={future}")) == 3


def test_single_sync_tripping_the_removal_guard_then_forced(api_client, bob, live_mariadb_instance, make_history):
    """Accounts the server does not have would all be deactivated: refused with removal_guard, forced with force."""
    make_history(live_mariadb_instance, 10, prefix="ghost")
    client = api_client(bob)
    url = f"/api/v1/instances/{live_mariadb_instance.pk}/sync/"
    refused = client.post(url, {})
    assert refused.status_code == 400
    assert refused.json()["code"] == "removal_guard"
    assert client.get("/api/v1/accounts/?search=ghost&active=true").json()["count"] == 10
    forced = client.post(url, {"force": True})
    assert forced.status_code == 200, forced.json()
    assert forced.json()["result"]["removed_count"] == 10
    assert client.get("/api/v1/accounts/?search=ghost&active=true").json()["count"] == 0

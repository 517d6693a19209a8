"""Issue #22 part 3: a sync refused by the mass-removal guard can be run again, accepting the removals."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accountsync.adapters.base import AccountRecord, Privilege
from accountsync.models import InstanceAccount
from sync.models import SyncInstanceRecord, SyncSession
from sync.services import sync_accounts, sync_record_execute, sync_session_run, sync_session_start

pytestmark = pytest.mark.django_db

RECORDS = reverse("admin:sync_syncinstancerecord_changelist")


def account(name: str) -> AccountRecord:
    return AccountRecord(identity=f"'{name}'@'%'", username=name, host="%", privileges=[Privilege("global", "SELECT")])


@pytest.fixture
def refused(chosen_server, make_instance, alice):
    """An instance with four accounts whose next sync lists one: the guard refuses it in a session."""
    inst = make_instance(name="guarded")
    chosen_server.accounts = [account(n) for n in ("app", "etl", "report", "backup")]
    assert sync_accounts(instance=inst, sync_type="manual_single")["success"]
    chosen_server.accounts = [account("app")]
    session = sync_session_start(instances=[inst], sync_type="manual_batch", created_by=alice, enqueue=False)
    sync_session_run(session=session)
    record = session.records.get()
    assert (record.status, record.error_kind) == ("failed", "guard")
    return inst, session, record


def test_the_refused_record_keeps_what_it_would_have_deactivated(refused):
    _inst, _session, record = refused
    assert record.details["guard"] == {
        "would_deactivate": 3,
        "active": 4,
        "identities": ["'backup'@'%'", "'etl'@'%'", "'report'@'%'"],
    }


def test_the_session_page_offers_it_and_the_confirmation_lists_the_accounts(client_for, refused):
    inst, session, record = refused
    page = reverse("admin:sync_syncsession_change", args=[session.pk])
    confirm = reverse("admin:sync_syncsession_accept_removals", args=[session.pk, record.pk])
    html = client_for("bob").get(page).content.decode()
    assert "Sync again, accepting the removals" in html and confirm in html
    assert "Failed — 0 of 1 succeeded" in html

    html = client_for("bob").get(confirm).content.decode()
    assert "The refused sync would have deactivated 3 of the 4 active accounts of guarded" in html
    table = html.split('id="wf-would-deactivate"')[1].split("</table>")[0]
    for name in ("backup", "etl", "report"):
        acc = InstanceAccount.objects.get(instance=inst, username=name)
        assert reverse("admin:accountsync_instanceaccount_change", args=[acc.pk]) in table
    assert "&#x27;app&#x27;" not in table
    assert 'id="wf-accept-removals"' in html


def test_a_viewer_is_offered_nothing_and_is_refused(client_for, refused):
    _inst, session, record = refused
    charlie = client_for("charlie")
    html = charlie.get(reverse("admin:sync_syncsession_change", args=[session.pk])).content.decode()
    assert "accepting the removals" not in html
    confirm = reverse("admin:sync_syncsession_accept_removals", args=[session.pk, record.pk])
    for resp in (charlie.get(confirm, follow=True), charlie.post(confirm, follow=True)):
        assert "You do not have permission to start, cancel or retry syncs" in resp.content.decode()
    assert SyncSession.objects.count() == 1


def test_accepting_starts_a_forced_sync_that_deactivates_them(
    client_for, refused, monkeypatch, django_capture_on_commit_callbacks
):
    inst, session, record = refused
    queued: list[tuple] = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kw: queued.append(args))
    confirm = reverse("admin:sync_syncsession_accept_removals", args=[session.pk, record.pk])
    with django_capture_on_commit_callbacks(execute=True):
        resp = client_for("bob").post(confirm)
    forced = SyncSession.objects.exclude(pk=session.pk).get()
    assert resp.status_code == 302
    assert resp["Location"] == reverse("admin:sync_syncsession_change", args=[forced.pk])
    [(task, record_id, force)] = queued
    assert task == "sync.tasks.run_sync_record" and force is True
    sync_record_execute(record_id=record_id, force=force)
    assert SyncInstanceRecord.objects.get(pk=record_id).status == "completed"
    assert set(InstanceAccount.objects.filter(instance=inst, is_active=True).values_list("username", flat=True)) == {
        "app"
    }


def test_only_a_guard_refusal_can_be_accepted(client_for, make_instance, alice):
    from tests.sync.conftest import closed_port

    inst = make_instance(name="dead", port=closed_port(), options={"connect_timeout": 1})
    session = sync_session_start(instances=[inst], sync_type="manual_batch", created_by=alice, enqueue=False)
    sync_session_run(session=session)
    record = session.records.get()
    assert record.error_kind == "connection"
    html = client_for("alice").get(reverse("admin:sync_syncsession_change", args=[session.pk])).content.decode()
    assert "accepting the removals" not in html
    resp = client_for("alice").post(
        reverse("admin:sync_syncsession_accept_removals", args=[session.pk, record.pk]), follow=True
    )
    assert "was not refused by the mass-removal guard" in resp.content.decode()
    assert SyncSession.objects.count() == 1


def test_the_error_kind_filter_lists_guard_with_translated_labels(client_for, refused):
    client = client_for("charlie")
    resp = client.get(RECORDS)
    html = resp.content.decode()
    flt = html.split('id="changelist-filter"')[1]
    assert "?error_kind=guard" in flt and "Mass-removal guard" in flt and "Connection" in flt
    assert ">guard<" not in flt and ">connection<" not in flt
    assert [r.pk for r in client.get(RECORDS, {"error_kind": "guard"}).context["cl"].result_list] == [refused[2].pk]
    with_zh = client.get(RECORDS, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "?error_kind=guard" in with_zh

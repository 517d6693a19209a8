"""Issue #22 part 8: a failed record's error is stored with a code and parameters and shown in the reader's language.

The English text stays in `error_message` (logs, the API's message); the admin renders the code at
display time. A real sync against a closed local port makes the connection error (the MariaDB adapter
and its driver, nothing mocked); the reaper makes the sync layer's own "worker lost" message.
"""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone, translation

from accountsync.adapters.base import CONNECTION_FAILED, message_render
from sync.models import WORKER_LOST, SyncInstanceRecord, SyncSession
from sync.services import sync_reap, sync_session_run, sync_session_start

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def failed_session(make_instance, alice) -> tuple[SyncSession, SyncInstanceRecord]:
    port = closed_port()
    instance = make_instance(name="legacy-eu1", port=port, options={"connect_timeout": 2})
    session = sync_session_start(instances=[instance], sync_type="manual_batch", created_by=alice, enqueue=False)
    sync_session_run(session=session, force=True)
    return session, session.records.get()


@pytest.mark.django_db(transaction=True)
def test_a_connection_error_is_stored_with_its_code_and_rendered_in_chinese(failed_session, client_for):
    session, record = failed_session
    port = record.instance.port
    assert record.status == "failed" and record.error_kind == "connection"
    assert record.error_code == CONNECTION_FAILED
    assert record.error_params["endpoint"] == f"127.0.0.1:{port}"
    assert record.error_params["instance_prefix"] == "legacy-eu1"
    # the English text, for logs and the API, is the one it always was
    assert record.error_message.startswith(f"legacy-eu1: cannot connect to 127.0.0.1:{port} (")
    assert record.error_message.endswith("); check host, port, firewall and that the server is running")
    with translation.override("en"):
        assert record.error_display == record.error_message
    with translation.override("zh-hans"):
        shown = record.error_display
    assert shown.startswith(f"legacy-eu1: 无法连接到 127.0.0.1:{port}\uff08")  # a full-width parenthesis
    assert "服务器正在运行" in shown  # the adapter's own words ("the server is running") are translated too
    assert record.error_params["detail"] in shown  # the driver's words are shown as they are

    client = client_for("alice")
    for url in (
        reverse("admin:sync_syncsession_change", args=[session.pk]),
        reverse("admin:sync_syncinstancerecord_change", args=[record.pk]),
        reverse("admin:instances_instance_change", args=[record.instance_id]),
        reverse("admin:sync_syncsession_progress", args=[session.pk]),
    ):
        response = client.get(url, **ZH)
        zh = str(response.json()) if url.endswith("/progress/") else response.content.decode()
        assert f"无法连接到 127.0.0.1:{port}" in zh, url
        assert "cannot connect to" not in zh, url
        response = client.get(url, HTTP_ACCEPT_LANGUAGE="en")
        en = str(response.json()) if url.endswith("/progress/") else response.content.decode()
        assert f"cannot connect to 127.0.0.1:{port}" in en, url


@pytest.mark.django_db(transaction=True)
def test_the_api_keeps_the_english_message_and_adds_code_and_params(failed_session, alice):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    _session, record = failed_session
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=alice)[0].key}")
    body = client.get(f"/api/v1/sync-records/{record.pk}/", HTTP_ACCEPT_LANGUAGE="zh-hans").json()
    assert body["error_message"] == record.error_message
    assert body["error_code"] == CONNECTION_FAILED
    assert body["error_params"]["endpoint"] == record.error_params["endpoint"]


@pytest.mark.django_db
def test_server_words_are_escaped_and_old_rows_keep_their_english(make_instance, client_for):
    instance = make_instance(name="html-eu1")
    session = SyncSession.objects.create(sync_type="scheduled_task", status="failed")
    params = {"endpoint": "db:1", "detail": "<script>alert(1)</script>", "running": "the server is running"}
    SyncInstanceRecord.objects.create(
        session=session,
        instance=instance,
        instance_name=instance.name,
        status="failed",
        error_kind="connection",
        error_code=CONNECTION_FAILED,
        error_params={**params, "instance_prefix": instance.name},
        error_message="html-eu1: cannot connect to db:1 (<script>alert(1)</script>); check ...",
    )
    old = make_instance(name="old-eu1")
    SyncInstanceRecord.objects.create(
        session=session,
        instance=old,
        instance_name=old.name,
        status="failed",
        error_kind="timeout",
        error_message="old-eu1: stored before message codes",
    )
    html = client_for("alice").get(reverse("admin:sync_syncsession_change", args=[session.pk]), **ZH).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert "old-eu1: stored before message codes" in html


def test_a_translation_that_does_not_fit_its_parameters_falls_back_to_the_english():
    with translation.override("zh-hans"):
        assert message_render(CONNECTION_FAILED, {"endpoint": "x"}, "the stored English") == "the stored English"
        assert message_render("no_such_code", {}, "the stored English") == "the stored English"
        assert message_render("", {}, "the stored English") == "the stored English"


@pytest.mark.django_db
def test_the_reaper_words_a_lost_worker_with_its_code(make_instance, client_for):
    instance = make_instance(name="lost-eu1")
    session = SyncSession.objects.create(sync_type="scheduled_task")
    stale = timezone.now() - timedelta(seconds=3600)
    record = SyncInstanceRecord.objects.create(
        session=session,
        instance=instance,
        instance_name=instance.name,
        status="running",
        started_at=stale,
        heartbeat_at=stale,
    )
    assert sync_reap(stale_after=60) >= 1
    record.refresh_from_db()
    assert record.error_code == WORKER_LOST
    assert record.error_message.startswith("worker lost: no heartbeat from the sync of lost-eu1 for ")
    assert record.error_message.endswith(
        "(limit 60s); the worker was killed or crashed. Retry failed to sync it again."
    )
    with translation.override("zh-hans"):
        assert record.error_display.startswith("工作进程丢失\uff1alost-eu1 的同步已有 ")
        assert "上限 60 秒" in record.error_display

"""Issue #22 part 7: status words with numbers, one date format, bad input said, @ searches, page buttons."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accountsync.adapters.base import AccountRecord, Privilege
from accountsync.models import AccountChangeLog, InstanceAccount
from sync.models import SyncSession
from sync.services import sync_session_run, sync_session_start
from tests.sync.conftest import closed_port

from .conftest import account, apply

pytestmark = pytest.mark.django_db

ACCOUNTS = reverse("admin:accountsync_instanceaccount_changelist")
SESSIONS = reverse("admin:sync_syncsession_changelist")
ONE_FORMAT = re.compile(r"\b\d{4}-\d{2}-\d{2} \d{2}:\d{2}\b")


@pytest.fixture
def mixed_session(chosen_server, make_instance, alice):
    """Three MySQL instances (the chosen catalog answers) and one PostgreSQL on a closed port."""
    chosen_server.accounts = [
        AccountRecord(identity="'app'@'%'", username="app", host="%", privileges=[Privilege("global", "USAGE")])
    ]
    instances = [make_instance(name=f"ok-{i}") for i in range(3)]
    instances.append(
        make_instance(db_type="postgresql", name="pg-down", port=closed_port(), options={"connect_timeout": 1})
    )
    session = sync_session_start(instances=instances, sync_type="manual_batch", created_by=alice, enqueue=False)
    sync_session_run(session=session)
    session.refresh_from_db()
    assert (session.status, session.successful_instances, session.failed_instances) == ("failed", 3, 1)
    return session


def test_a_failed_session_says_how_many_succeeded(client_for, mixed_session):
    client = client_for("charlie")
    assert "Failed — 3 of 4 succeeded" in client.get(SESSIONS).content.decode()
    page = client.get(reverse("admin:sync_syncsession_change", args=[mixed_session.pk])).content.decode()
    assert re.search(r'id="wf-status"[^>]*>Failed — 3 of 4 succeeded<', page)
    progress = client.get(reverse("admin:sync_syncsession_progress", args=[mixed_session.pk])).json()
    assert progress["status"] == "failed" and progress["status_display"] == "Failed — 3 of 4 succeeded"


def test_dates_read_the_same_on_every_page(client_for, mixed_session, make_instance):
    client = client_for("charlie")
    acc = InstanceAccount.objects.filter(username="app").first()
    change = AccountChangeLog.objects.first()
    pages = [
        SESSIONS,
        reverse("admin:sync_syncsession_change", args=[mixed_session.pk]),
        reverse("admin:sync_syncinstancerecord_changelist"),
        ACCOUNTS,
        reverse("admin:accountsync_instanceaccount_change", args=[acc.pk]),
        reverse("admin:accountsync_accountchangelog_changelist"),
        reverse("admin:accountsync_accountchangelog_change", args=[change.pk]),
        reverse("admin:instances_instance_change", args=[acc.instance_id]),
    ]
    for url in pages:
        html = client.get(url).content.decode()
        assert ONE_FORMAT.search(html), url
        assert not re.search(r"\d (a|p)\.m\.", html), url
        assert not re.search(r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\.? \d{1,2}, \d{4}", html), url
    zh = client.get(SESSIONS, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert ONE_FORMAT.search(zh) and "年" not in zh.split('id="result_list"')[1]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("garbage", "is not a date and time"),
        ("2026-13-01", "is not a date and time"),
        ("2999-01-01T10:00", "is in the future"),
        ("2999-01-01", "is in the future"),
    ],
)
def test_a_bad_point_in_time_is_an_error_not_ignored(client_for, make_instance, value, message):
    apply(make_instance(name="pit"), account("tim"))
    acc = InstanceAccount.objects.get(username="tim")
    html = (
        client_for("charlie")
        .get(reverse("admin:accountsync_instanceaccount_change", args=[acc.pk]), {"at": value})
        .content.decode()
    )
    assert message in html.split('class="messagelist"')[1].split("</ul>")[0]
    assert message in html.split('id="wf-at-error"')[1].split("</p>")[0]
    assert "Current permissions" in html


def test_a_point_in_time_today_or_earlier_is_answered(client_for, make_instance):
    apply(make_instance(name="pit"), account("tim"))
    acc = InstanceAccount.objects.get(username="tim")
    url = reverse("admin:accountsync_instanceaccount_change", args=[acc.pk])
    for value in (timezone.localdate().isoformat(), (timezone.now() - timedelta(days=400)).strftime("%Y-%m-%dT%H:%M")):
        html = client_for("charlie").get(url, {"at": value}).content.decode()
        assert 'id="wf-at-error"' not in html and "Permissions at" in html


@pytest.fixture
def at_fleet(make_instance):
    my = make_instance(name="my-prod")
    pg = make_instance(db_type="postgresql", name="pg-az", port=5432)
    apply(my, account("app", "%"), account("app", "10.0.0.1"), account("other", "%"))
    apply(pg, AccountRecord(identity="svc@corp", username="svc@corp", privileges=[]))
    return my, pg


def found(client, q: str) -> tuple[set[str], list[str]]:
    resp = client.get(ACCOUNTS, {"q": q})
    assert resp.status_code == 200
    errors = [str(m) for m in resp.context["messages"] if m.level_tag == "error"]
    return {a.identity for a in resp.context["cl"].result_list}, errors


def test_searching_with_at_behaves(client_for, at_fleet):
    client = client_for("charlie")
    assert found(client, "app@") == ({"'app'@'%'", "'app'@'10.0.0.1'"}, [])  # the name on every host
    assert found(client, "app@%") == ({"'app'@'%'"}, [])
    assert found(client, "'app'@'10.0.0.1'") == ({"'app'@'10.0.0.1'"}, [])  # the identity as the list shows it
    assert found(client, "@%") == ({"'app'@'%'", "'other'@'%'"}, [])
    assert found(client, "svc@corp") == ({"svc@corp"}, [])  # a PostgreSQL role with an @ in its name
    everyone_with_a_host, errors = found(client, "@")
    assert errors == [] and "'other'@'%'" in everyone_with_a_host


def test_the_instance_page_has_test_connection_and_sync_now(
    client_for, make_instance, django_capture_on_commit_callbacks
):
    inst = make_instance(name="buttons", port=closed_port(), options={"connect_timeout": 1})
    url = reverse("admin:instances_instance_change", args=[inst.pk])
    html = client_for("bob").get(url).content.decode()
    assert 'id="wf-test-connection"' in html and 'id="wf-sync-now"' in html
    viewer = client_for("charlie").get(url).content.decode()
    assert 'id="wf-test-connection"' not in viewer and 'id="wf-sync-now"' not in viewer

    tested = client_for("bob").post(reverse("admin:instances_instance_test_connection", args=[inst.pk]), follow=True)
    assert "[connection error] buttons: cannot connect" in tested.content.decode()
    assert tested.redirect_chain[-1][0] == url

    with django_capture_on_commit_callbacks(execute=False):
        resp = client_for("bob").post(reverse("admin:instances_instance_sync_now", args=[inst.pk]))
    session = SyncSession.objects.get()
    assert resp["Location"] == reverse("admin:sync_syncsession_change", args=[session.pk])
    assert list(session.records.values_list("instance_name", flat=True)) == ["buttons"]

    for name in ("instances_instance_sync_now", "instances_instance_test_connection"):
        refused = client_for("charlie").post(reverse(f"admin:{name}", args=[inst.pk]), follow=True)
        assert "You do not have permission" in refused.content.decode()
        assert client_for("bob").get(reverse(f"admin:{name}", args=[inst.pk])).status_code == 405
    assert SyncSession.objects.count() == 1


def test_app_index_pages_do_not_repeat_the_dashboard(client_for):
    client = client_for("alice")
    assert "wf-dashboard" in client.get(reverse("admin:index")).content.decode()
    for app in ("sync", "accountsync", "instances", "findings"):
        html = client.get(reverse("admin:app_list", args=[app])).content.decode()
        assert "wf-dashboard" not in html and "dashboard/dashboard.css" not in html, app


def test_every_page_has_a_favicon(client_for, client):
    icon = '<link rel="icon" href="/static/whalefall/favicon.svg" type="image/svg+xml">'
    assert icon in client.get(reverse("admin:login")).content.decode()
    assert icon in client_for("charlie").get(SESSIONS).content.decode()
    assert Path(finders.find("whalefall/favicon.svg")).read_text().startswith("<svg")
    assert settings.STATIC_URL == "/static/"


def test_api_v1_lists_the_endpoints(charlie):
    client = APIClient()
    assert client.get("/api/v1/").status_code == 401
    client.force_authenticate(charlie)
    body = client.get("/api/v1/").json()
    for name in ("credentials", "instances", "sync-sessions", "sync-records", "accounts", "change-logs", "findings"):
        assert body[name].endswith(f"/api/v1/{name}/"), body
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert "/api/v1/" not in schema["paths"]

"""Who exported what: the kind, the filters and the rows streamed, written when the stream ends."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from tests.audit.conftest import only_event

pytestmark = pytest.mark.django_db


def csv_rows(content: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(content.decode("utf-8-sig"))))


@pytest.fixture
def accounts(make_instance, make_history):
    mysql = make_instance(name="db-m")
    pg = make_instance(name="db-p", db_type="postgresql", port=5432)
    make_history(mysql, 3)
    make_history(pg, 2, prefix="pg")
    return {"mysql": mysql, "pg": pg}


def test_an_api_export_is_recorded_when_its_rows_end(api_client, charlie, accounts):
    response = api_client(charlie).get("/api/v1/accounts/export/", {"db_type": "postgresql", "format": "ndjson"})
    assert response.status_code == 200
    assert not AuditEvent.objects.exists()  # nothing streamed yet
    body = b"".join(response.streaming_content)
    assert len(body.splitlines()) == 2
    event = only_event("export")
    assert (event.actor_username, event.via, event.remote_addr) == ("charlie", "api", "127.0.0.1")
    assert event.details == {
        "kind": "accounts",
        "format": "ndjson",
        "filters": {"db_type": "postgresql"},
        "rows": 2,
        "complete": True,
    }


def test_a_permissions_export_counts_rows_not_accounts(api_client, charlie, accounts):
    response = api_client(charlie).get("/api/v1/change-logs/export/", {"instance": accounts["mysql"].pk})
    rows = csv_rows(b"".join(response.streaming_content))
    event = only_event("export")
    assert event.details["kind"] == "change_logs" and event.details["rows"] == len(rows) == 3
    assert event.details["filters"] == {"instance": str(accounts["mysql"].pk)}


def test_an_abandoned_export_is_told_as_incomplete(accounts):
    from accountsync.models import InstanceAccount
    from exports.writers import export_observed, stream_export

    told = []
    with export_observed(lambda rows, complete: told.append((rows, complete))):
        chunks, _, _ = stream_export("accounts", InstanceAccount.objects.order_by("pk"), "csv")
    assert next(chunks).startswith("\ufeff")  # the header row, before any account is read
    chunks.close()  # the client went away: the server closes the response, and so the stream
    assert told == [(0, False)]
    with export_observed(lambda rows, complete: told.append((rows, complete))):
        chunks, _, _ = stream_export("accounts", InstanceAccount.objects.order_by("pk"), "ndjson")
    assert len("".join(chunks).splitlines()) == 5
    assert told == [(0, False), (5, True)]
    chunks, _, _ = stream_export("accounts", InstanceAccount.objects.order_by("pk"), "csv")
    "".join(chunks)  # outside the block: no observer
    assert len(told) == 2


def test_an_admin_export_action_is_recorded_with_the_selection(client_for, accounts):
    from accountsync.models import InstanceAccount

    selected = list(InstanceAccount.objects.filter(instance=accounts["mysql"]).values_list("pk", flat=True))
    url = reverse("admin:accountsync_instanceaccount_changelist") + f"?instance__id__exact={accounts['mysql'].pk}"
    response = client_for("charlie").post(
        url, {"action": "export_accounts_csv", "_selected_action": selected[:2], "index": 0}
    )
    assert response.status_code == 200, response.content[:500]
    assert len(csv_rows(b"".join(response.streaming_content))) == 2
    event = only_event("export")
    assert (event.actor_username, event.via, event.remote_addr) == ("charlie", "admin", "10.9.8.7")
    assert event.details["kind"] == "accounts" and event.details["rows"] == 2 and event.details["selection"] == 2
    assert event.details["filters"] == {"instance__id__exact": str(accounts["mysql"].pk)}


def test_exporting_the_audit_trail_is_itself_recorded(client_for, api_client, alice, accounts):
    api_client(alice).get("/api/v1/accounts/export/").getvalue()
    response = api_client(alice).get("/api/v1/audit-events/export/", {"format": "json", "kind": "export"})
    rows = json.loads(b"".join(response.streaming_content))
    assert [r["details"]["kind"] for r in rows] == ["accounts"]
    audit_export = only_event("export", details__kind="audit_events")
    assert audit_export.details["rows"] == 1 and audit_export.details["filters"] == {"kind": "export"}

    response = client_for("alice").post(
        reverse("admin:audit_auditevent_changelist"),
        {"action": "export_audit_events_csv", "_selected_action": [audit_export.pk], "index": 0},
    )
    rows = csv_rows(b"".join(response.streaming_content))
    assert [r["kind"] for r in rows] == ["export"] and rows[0]["actor"] == "alice"
    assert AuditEvent.objects.filter(kind="export", via="admin", details__kind="audit_events").count() == 1

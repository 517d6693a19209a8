"""Coverage lost / regained reaches the channels that subscribed, once per sync, with the fix (#16 part 1)."""

from __future__ import annotations

import pytest
from django.core import mail

from accountsync.adapters.base import CoverageGap
from alerts.models import AlertChannel, AlertDelivery
from sync.services import sync_accounts
from tests.alerts.conftest import account

pytestmark = pytest.mark.django_db

PROCS = CoverageGap(
    scope="routine",
    reason="SELECT command denied to user 'monitor'@'127.0.0.1' for table 'procs_priv'",
    fix="GRANT SELECT ON mysql.procs_priv TO 'monitor'@'127.0.0.1'",
)


def sync(inst, capture) -> dict:
    with capture(execute=True):
        result = sync_accounts(instance=inst, sync_type="manual_single")
    assert result["success"], result["message"]
    return result


def test_lost_then_regained_each_one_delivery_with_reason_and_fix(
    server, make_instance, receiver, q_sync, django_capture_on_commit_callbacks
):
    hook = AlertChannel.objects.create(name="ops", kind="webhook", webhook_url=receiver.url, coverage_events=True)
    AlertChannel.objects.create(name="not subscribed", kind="webhook", webhook_url=receiver.url)
    inst = make_instance(name="maria-1", environment="production")
    server.accounts = [account("app", select_on="sales"), account("dba")]
    sync(inst, django_capture_on_commit_callbacks)
    assert receiver.requests == []

    server.coverage = [PROCS]
    result = sync(inst, django_capture_on_commit_callbacks)
    assert "completed with gaps" in result["message"]
    assert len(receiver.requests) == 1
    body = receiver.requests[0].body
    assert receiver.requests[0].headers["x-whalefall-event"] == "coverage"
    assert (body["kind"], body["count"], body["instance"]["name"]) == ("coverage_lost", 1, "maria-1")
    assert [(g["scope"], g["fix"]) for g in body["gaps"]] == [("routine", PROCS.fix)]
    assert body["gaps"][0]["reason"] == PROCS.reason
    assert AlertDelivery.objects.get().channel == hook

    # the same gap again is not news
    sync(inst, django_capture_on_commit_callbacks)
    assert len(receiver.requests) == 1

    server.coverage = []
    sync(inst, django_capture_on_commit_callbacks)
    assert len(receiver.requests) == 2
    back = receiver.requests[1].body
    assert (back["kind"], back["gaps"]) == ("coverage_regained", [{"scope": "routine"}])
    assert list(AlertDelivery.objects.order_by("id").values_list("event_kind", "status")) == [
        ("coverage_lost", "sent"),
        ("coverage_regained", "sent"),
    ]


def test_email_names_the_scope_the_reason_and_the_fix(
    server, make_instance, q_sync, settings, django_capture_on_commit_callbacks
):
    settings.WHALEFALL_ALERT_FROM_EMAIL = "whalefall@example.com"
    AlertChannel.objects.create(name="dba", kind="email", email_recipients="dba@example.com", coverage_events=True)
    AlertChannel.objects.create(
        name="other env", kind="email", email_recipients="x@example.com", coverage_events=True, environments=["test"]
    )
    inst = make_instance(name="maria-2", environment="production")
    server.accounts = [account("app")]
    server.coverage = [PROCS]
    sync(inst, django_capture_on_commit_callbacks)  # a gap on the first sync is a gap too
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.subject == "[WhaleFall] maria-2: 1 scope(s) no longer readable"
    assert "Scope:       routine" in message.body and f"Fix:         {PROCS.fix}" in message.body
    assert "nothing is reported as revoked" in message.body

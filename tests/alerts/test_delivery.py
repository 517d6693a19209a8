"""Delivery: a sync's escalation reaches a real HTTP receiver or Django's mail outbox, after commit,
with retries on failure, and a broken channel never fails the sync."""

from __future__ import annotations

import ast
import logging
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone
from django_q.models import Schedule
from django_q.scheduler import scheduler

from alerts.models import AlertChannel, AlertDelivery
from alerts.tasks import deliver_alert
from sync.services import sync_accounts, sync_session_run, sync_session_start
from tests.alerts.conftest import account

pytestmark = pytest.mark.django_db

PASSWORD = "s3cr3t-Pa55"  # the monitoring credential's password (conftest.make_credential)


@pytest.fixture
def escalate(server, make_instance, django_capture_on_commit_callbacks):
    """Baseline sync of a plain `dba`, then a sync where `dba` became a superuser; tasks run on commit."""

    def run(instance=None, **sync_kw):
        inst = instance or make_instance(name="prod-db-1", environment="production")
        server.accounts = [account("app", select_on="sales"), account("dba")]
        assert sync_accounts(instance=inst, sync_type="manual_single")["success"]
        server.accounts = [account("app", select_on="sales"), account("dba", superuser=True)]
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            result = sync_accounts(instance=inst, sync_type="manual_single", **sync_kw)
        assert result["success"], result["message"]
        return inst, result, callbacks

    return run


def test_webhook_receives_one_post_after_commit(receiver, q_sync, escalate, caplog):
    AlertChannel.objects.create(name="ops hook", kind="webhook", webhook_url=receiver.url)
    caplog.set_level(logging.INFO, logger="alerts.services")
    inst, result, callbacks = escalate()
    assert len(callbacks) == 1  # queued on commit, not during the sync
    assert len(receiver.requests) == 1
    hit = receiver.requests[0]
    assert hit.path == "/hooks/whalefall?token=hook-token-123"
    assert hit.headers["content-type"] == "application/json"
    body = hit.body
    delivery = AlertDelivery.objects.get()
    assert body["event"] == "privilege_escalation" and body["kind"] == "capability_gained"
    assert body["severity"] == "critical"
    assert body["instance"] == {"id": inst.pk, "name": "prod-db-1", "db_type": "mysql", "environment": "production"}
    assert body["account"]["identity"] == "'dba'@'localhost'"
    assert body["escalation"] == {"capabilities": ["SUPERUSER"], "findings": []}
    assert "+SUPERUSER" in body["change"]["summary"] and "ALL PRIVILEGES on global" in body["change"]["summary"]
    assert body["account_url"] == f"/admin/accountsync/instanceaccount/{body['account']['id']}/change/"
    assert body["session_id"] is None and body["delivery_id"] == delivery.pk
    assert hit.headers["x-whalefall-delivery"] == str(delivery.pk)
    assert PASSWORD not in str(hit.body) and "password" not in str(hit.body).lower()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sent", 1, "")
    assert delivery.sent_at is not None and result["details"]["alerts"] == {"escalations": 1, "deliveries": 1}
    sent = [r for r in caplog.records if getattr(r, "wf", {}).get("phase") == "sent"]
    assert len(sent) == 1
    assert sent[0].wf["module"] == "alerts" and sent[0].wf["instance_id"] == inst.pk
    assert sent[0].wf["db_type"] == "mysql" and "token" not in sent[0].getMessage()


def test_retry_after_the_receiver_fails_once(receiver, q_sync, escalate, settings):
    settings.WHALEFALL_ALERT_BACKOFF_SECONDS = 30
    AlertChannel.objects.create(name="flaky", kind="webhook", webhook_url=receiver.url)
    receiver.statuses = [500]
    before = timezone.now()
    escalate()
    delivery = AlertDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert delivery.last_error.startswith("HTTP 500 from http://127.0.0.1:") and "token" not in delivery.last_error
    retry = Schedule.objects.get(func="alerts.tasks.deliver_alert")
    assert ast.literal_eval(retry.args) == (delivery.pk,) and retry.schedule_type == Schedule.ONCE
    assert before + timedelta(seconds=29) < retry.next_run == delivery.next_attempt_at
    assert retry.next_run < timezone.now() + timedelta(seconds=31)

    scheduler()  # not due yet: nothing happens
    assert len(receiver.requests) == 1
    Schedule.objects.filter(pk=retry.pk).update(next_run=timezone.now() - timedelta(seconds=1))
    scheduler()  # django-q2's own scheduler turns the due schedule into the task
    assert len(receiver.requests) == 2
    assert receiver.bodies()[0] == receiver.bodies()[1]  # same delivery id: receivers can deduplicate
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sent", 2, "")
    assert not Schedule.objects.filter(pk=retry.pk).exists()


def test_gives_up_after_max_attempts_with_backoff(receiver, q_sync, escalate, settings):
    settings.WHALEFALL_ALERT_MAX_ATTEMPTS = 3
    settings.WHALEFALL_ALERT_BACKOFF_SECONDS = 10
    AlertChannel.objects.create(name="down", kind="webhook", webhook_url=receiver.url)
    receiver.statuses = [503, 503, 503, 200]
    escalate()
    delivery = AlertDelivery.objects.get()
    delays = []
    for expected in ("pending", "failed"):
        delays.append((delivery.next_attempt_at - delivery.last_attempt_at).total_seconds())
        assert deliver_alert(delivery.pk) == expected
        delivery.refresh_from_db()
    assert [round(d) for d in delays] == [10, 20]
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("failed", 3, delivery.last_error)
    assert "HTTP 503" in delivery.last_error
    assert deliver_alert(delivery.pk) == "failed"  # a late duplicate task sends nothing
    assert len(receiver.requests) == 3


def test_a_duplicate_task_never_sends_twice(receiver, q_sync, escalate):
    AlertChannel.objects.create(name="once", kind="webhook", webhook_url=receiver.url)
    escalate()
    delivery = AlertDelivery.objects.get()
    assert deliver_alert(delivery.pk) == "sent"
    assert len(receiver.requests) == 1


def test_a_redirect_is_a_failure_not_a_resend_elsewhere(receiver, q_sync, escalate):
    AlertChannel.objects.create(name="moved", kind="webhook", webhook_url=receiver.url)
    receiver.statuses = [302]
    escalate()
    delivery = AlertDelivery.objects.get()
    assert delivery.status == "pending" and "HTTP 302" in delivery.last_error
    assert len(receiver.requests) == 1


def test_email_through_django_mail_backend(q_sync, escalate, settings):
    settings.WHALEFALL_ALERT_FROM_EMAIL = "whalefall@example.com"
    AlertChannel.objects.create(name="dba team", kind="email", email_recipients="dba@example.com,\nsec@example.com")
    escalate()
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["dba@example.com", "sec@example.com"] and message.from_email == "whalefall@example.com"
    assert message.subject == "[WhaleFall] CRITICAL: 'dba'@'localhost' on prod-db-1 (SUPERUSER)"
    assert "Gained:      SUPERUSER" in message.body and "/admin/accountsync/instanceaccount/" in message.body
    assert PASSWORD not in message.body
    assert AlertDelivery.objects.get().status == "sent"


def test_an_unreachable_webhook_never_fails_the_sync(q_sync, escalate, settings, unused_port):
    settings.WHALEFALL_ALERT_TIMEOUT = 1
    AlertChannel.objects.create(name="dead", kind="webhook", webhook_url=f"http://127.0.0.1:{unused_port}/hook")
    AlertChannel.objects.create(name="mail", kind="email", email_recipients="dba@example.com")
    _inst, result, _ = escalate()
    assert result["success"]
    dead = AlertDelivery.objects.get(channel_name="dead")
    assert dead.status == "pending" and dead.last_error.startswith(f"cannot reach http://127.0.0.1:{unused_port}/…")
    assert AlertDelivery.objects.get(channel_name="mail").status == "sent"  # one bad channel does not block others


def test_a_broken_channel_row_is_logged_and_the_sync_succeeds(escalate, caplog):
    AlertChannel.objects.create(name="corrupt", kind="webhook", webhook_url="https://x.example.com", db_types=5)
    caplog.set_level(logging.ERROR, logger="alerts.services")
    _inst, result, _ = escalate()
    assert result["success"] and "alerts" not in result["details"]
    errors = [r for r in caplog.records if getattr(r, "wf", {}).get("phase") == "error"]
    assert len(errors) == 1 and "alert detection failed (TypeError" in errors[0].getMessage()
    assert AlertDelivery.objects.count() == 0


def test_a_broker_that_refuses_marks_the_delivery_failed(escalate, monkeypatch):
    import django_q.tasks

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker at 127.0.0.1:6379 refused")

    monkeypatch.setattr(django_q.tasks, "async_task", broker_down)
    AlertChannel.objects.create(name="hook", kind="webhook", webhook_url="https://x.example.com")
    _inst, result, _ = escalate()
    assert result["success"]
    delivery = AlertDelivery.objects.get()
    assert delivery.status == "failed" and "could not queue the delivery (ConnectionError" in delivery.last_error


def test_a_deactivated_channel_fails_its_pending_delivery_without_sending(receiver, escalate):
    channel = AlertChannel.objects.create(name="later off", kind="webhook", webhook_url=receiver.url)
    escalate()  # no q_sync: the task is queued on the ORM broker, not run
    channel.is_active = False
    channel.save()
    delivery = AlertDelivery.objects.get()
    assert deliver_alert(delivery.pk) == "failed"
    delivery.refresh_from_db()
    assert "deleted or deactivated" in delivery.last_error and receiver.requests == []


def test_a_session_sync_carries_its_session_id(
    receiver, q_sync, server, make_instance, alice, django_capture_on_commit_callbacks
):
    AlertChannel.objects.create(name="ops", kind="webhook", webhook_url=receiver.url)
    inst = make_instance()
    server.accounts = [account("dba")]
    sync_session_run(
        session=sync_session_start(instances=[inst], sync_type="manual_batch", created_by=alice, enqueue=False)
    )
    server.accounts = [account("dba", grant_admin=True, select_on="sales")]
    session = sync_session_start(instances=[inst], sync_type="manual_batch", created_by=alice, enqueue=False)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = sync_session_run(session=session)
    assert outcome["status"] == "completed"
    assert [b["session_id"] for b in receiver.bodies()] == [str(session.session_id)]
    assert receiver.bodies()[0]["escalation"]["capabilities"] == ["GRANT_ADMIN"]
    assert receiver.bodies()[0]["severity"] == "high"
    assert session.records.get().details["alerts"] == {"escalations": 1, "deliveries": 1}


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_digest_is_one_post_and_one_mail(
    receiver, q_sync, server, make_instance, settings, django_capture_on_commit_callbacks
):
    settings.WHALEFALL_ALERT_DIGEST_OVER = 2
    AlertChannel.objects.create(name="hook", kind="webhook", webhook_url=receiver.url)
    AlertChannel.objects.create(name="mail", kind="email", email_recipients="dba@example.com")
    inst = make_instance(name="fleet-7")
    server.accounts = [account(f"u{i}") for i in range(4)]
    sync_accounts(instance=inst, sync_type="manual_single")
    server.accounts = [account(f"u{i}", grant_admin=True, select_on="sales") for i in range(4)]
    with django_capture_on_commit_callbacks(execute=True):
        assert sync_accounts(instance=inst, sync_type="manual_single")["success"]
    assert [(b["kind"], b["count"], b["severity"]) for b in receiver.bodies()] == [("escalation_digest", 4, "high")]
    assert len(mail.outbox) == 1
    assert mail.outbox[0].subject == "[WhaleFall] HIGH: 4 privilege escalations on fleet-7"
    assert mail.outbox[0].body.count("Gained:      GRANT_ADMIN") == 4


def test_a_slow_receiver_times_out_and_is_retried_later(receiver, q_sync, escalate, settings):
    settings.WHALEFALL_ALERT_TIMEOUT = 0.5
    receiver.delay = 2.0
    AlertChannel.objects.create(name="slow", kind="webhook", webhook_url=receiver.url)
    escalate()
    delivery = AlertDelivery.objects.get()
    assert delivery.status == "pending" and delivery.attempts == 1
    assert "timed out" in delivery.last_error and "hook-token-123" not in delivery.last_error
    assert Schedule.objects.filter(func="alerts.tasks.deliver_alert").count() == 1


def test_nothing_is_sent_when_the_surrounding_transaction_rolls_back(
    receiver, q_sync, server, make_instance, django_capture_on_commit_callbacks
):
    import contextlib

    from django.db import transaction

    AlertChannel.objects.create(name="ops", kind="webhook", webhook_url=receiver.url)
    inst = make_instance()
    server.accounts = [account("dba")]
    sync_accounts(instance=inst, sync_type="manual_single")
    server.accounts = [account("dba", superuser=True)]
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        contextlib.suppress(RuntimeError),
        transaction.atomic(),
    ):
        assert sync_accounts(instance=inst, sync_type="manual_single")["details"]["alerts"]["deliveries"] == 1
        raise RuntimeError("the caller's transaction fails after the sync")
    assert callbacks == [] and receiver.requests == [] and AlertDelivery.objects.count() == 0


def _signature(key: str, hit) -> str:
    import hashlib
    import hmac

    stamp = hit.headers["x-whalefall-timestamp"]
    return "sha256=" + hmac.new(key.encode(), stamp.encode() + b"." + hit.raw, hashlib.sha256).hexdigest()


def test_webhooks_are_signed_with_the_channels_own_secret(receiver, q_sync, escalate, settings):
    settings.WHALEFALL_ALERT_SIGNING_KEY = "sign-me-7f3a"
    channel = AlertChannel.objects.create(name="signed", kind="webhook", webhook_url=receiver.url)
    secret = channel.new_signing_secret
    assert secret and len(secret) >= 40
    escalate()
    hit = receiver.requests[0]
    stamp = hit.headers["x-whalefall-timestamp"]
    assert abs(int(stamp) - timezone.now().timestamp()) < 60
    assert hit.headers["x-whalefall-signature"] == _signature(secret, hit)
    assert hit.headers["x-whalefall-signature"] != _signature("sign-me-7f3a", hit)  # not the environment's
    assert secret not in str(hit.headers) + str(hit.body) and "sign-me-7f3a" not in str(hit.headers)


def test_a_channel_without_its_own_secret_signs_with_the_environment_key(receiver, q_sync, escalate, settings):
    settings.WHALEFALL_ALERT_SIGNING_KEY = "sign-me-7f3a"
    channel = AlertChannel.objects.create(name="old", kind="webhook", webhook_url=receiver.url)
    AlertChannel.objects.filter(pk=channel.pk).update(signing_secret_encrypted="")  # as migrated from before
    escalate()
    hit = receiver.requests[0]
    assert hit.headers["x-whalefall-signature"] == _signature("sign-me-7f3a", hit)


def test_webhooks_are_unsigned_without_any_key(receiver, q_sync, escalate):
    channel = AlertChannel.objects.create(name="plain", kind="webhook", webhook_url=receiver.url)
    AlertChannel.objects.filter(pk=channel.pk).update(signing_secret_encrypted="")
    escalate()
    assert "x-whalefall-signature" not in receiver.requests[0].headers

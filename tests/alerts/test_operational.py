"""Operational alerts (#20 part 2): failed syncs in a row, instances not synced for too long, per environment.

Everything runs for real down to the HTTP receiver (tests/alerts/conftest.py): the sync engine with the
chosen-catalog adapter, django-q2 tasks in-process (``q_sync``), the post-sync hook, sync's record-failed
hook, the periodic check (its task, django-q2's scheduler, the cron command) and the
delivery of every alert. Time is never measured: a stale instance is made by moving its timestamps back.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core import mail
from django.core.checks import Error
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule

from accountsync.adapters.base import ConnectionFailed
from alerts import operational
from alerts.checks import alert_thresholds_check
from alerts.models import AlertChannel, AlertDelivery, OperationalAlertState
from alerts.operational import failure_streak, operational_after_failed_record, operational_check
from alerts.tasks import check_operational_alerts
from instances.models import Instance
from sync.models import SyncInstanceRecord, SyncSession
from sync.services import sync_accounts, sync_session_start
from tests.alerts.conftest import account

pytestmark = pytest.mark.django_db

PASSWORD = "s3cr3t-Pa55"  # the monitoring credential's password (conftest.make_credential)
DOWN = ConnectionFailed("cannot connect to 127.0.0.1:3306 (Connection refused)")


@pytest.fixture
def scheduled(server, django_capture_on_commit_callbacks):
    """One scheduled session of `inst` run by a django-q2 worker (in-process), like the daily sync does it."""

    def run(inst, *, fail: bool) -> SyncInstanceRecord:
        server.error = DOWN if fail else None
        server.accounts = [account("app", select_on="sales"), account("dba")]
        with django_capture_on_commit_callbacks(execute=True):
            session = sync_session_start(instances=[inst], sync_type="scheduled_task", created_by=None)
        record = session.records.get()
        assert record.status == ("failed" if fail else "completed"), record.error_message
        return record

    return run


def ago(**delta) -> timezone.datetime:
    return timezone.now() - timedelta(**delta)


def kinds(receiver) -> list[str]:
    return [r.body["kind"] for r in receiver.requests]


def test_streak_alerts_once_when_it_reaches_n_and_recovers_once(receiver, q_sync, make_instance, scheduled):
    ops = AlertChannel.objects.create(name="ops", kind="webhook", webhook_url=receiver.url, failure_streak_events=True)
    AlertChannel.objects.create(name="escalations only", kind="webhook", webhook_url=receiver.url)
    inst = make_instance(name="prod-db-1", environment="production")
    scheduled(inst, fail=False)

    scheduled(inst, fail=True)
    scheduled(inst, fail=True)
    assert receiver.requests == [] and failure_streak(inst.pk) == 2
    scheduled(inst, fail=True)  # the third in a row (WHALEFALL_ALERT_FAILURE_STREAK defaults to 3)
    assert kinds(receiver) == ["failure_streak"]
    hit = receiver.requests[0]
    body = hit.body
    assert hit.headers["x-whalefall-event"] == "operational"
    assert (body["failures"], body["threshold"], body["severity"]) == (3, 3, "high")
    assert body["instance"] == {"id": inst.pk, "name": "prod-db-1", "db_type": "mysql", "environment": "production"}
    assert body["message"].startswith("prod-db-1 failed 3 syncs in a row (alert threshold for Production: 3).")
    assert "Last error (connection): " in body["message"] and "Connection refused" in body["message"]
    assert [f["error_kind"] for f in body["recent_failures"]] == ["connection"] * 3
    assert body["instance_url"] == f"/admin/instances/instance/{inst.pk}/change/"
    assert PASSWORD not in str(body)
    assert AlertDelivery.objects.get().channel == ops

    scheduled(inst, fail=True)
    scheduled(inst, fail=True)
    operational_check()  # the periodic check sees the open streak and says nothing more
    assert kinds(receiver) == ["failure_streak"], "not again on the 4th and 5th failure"

    record = scheduled(inst, fail=False)
    assert kinds(receiver) == ["failure_streak", "failure_streak_recovered"]
    back = receiver.requests[1].body
    assert back["message"] == "prod-db-1 synced successfully again, after 3 failed syncs in a row."
    assert (back["severity"], back["session_id"]) == ("low", str(record.session.session_id))
    scheduled(inst, fail=False)
    operational_check()
    assert kinds(receiver) == ["failure_streak", "failure_streak_recovered"], "recovered once"
    assert list(AlertDelivery.objects.values_list("status", flat=True)) == ["sent", "sent"]

    state = OperationalAlertState.objects.get(instance=inst, kind="failure_streak")
    assert not state.is_open and state.opened_at < state.closed_at and state.details["failures"] == 3

    # a new streak is a new alert
    for _ in range(3):
        scheduled(inst, fail=True)
    assert kinds(receiver) == ["failure_streak", "failure_streak_recovered", "failure_streak"]


def test_the_same_failure_reported_twice_opens_one_alert(receiver, q_sync, make_instance, scheduled):
    AlertChannel.objects.create(name="ops", kind="webhook", webhook_url=receiver.url, failure_streak_events=True)
    inst = make_instance(name="prod-db-2")
    records = [scheduled(inst, fail=True) for _ in range(3)]
    assert len(receiver.requests) == 1
    # django-q2 delivers at least once: the same task's end seen again, and the periodic check after it
    assert operational_after_failed_record(record_id=records[-1].pk) is None
    assert operational_check().opened == []
    assert AlertDelivery.objects.count() == 1 and len(receiver.requests) == 1


def test_syncs_run_in_one_process_alert_at_once_and_a_manual_sync_ends_them(
    server, receiver, q_sync, make_instance, django_capture_on_commit_callbacks
):
    """`sync_accounts` without workers (CLI): sync's record-failed hook reports each failure as it commits."""
    AlertChannel.objects.create(name="ops", kind="webhook", webhook_url=receiver.url, failure_streak_events=True)
    inst = make_instance(name="prod-db-3")
    server.error = DOWN
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(2):
            assert not sync_accounts(instance=inst, sync_type="scheduled_task")["success"]
    assert receiver.requests == []
    with django_capture_on_commit_callbacks(execute=True):
        assert not sync_accounts(instance=inst, sync_type="scheduled_task")["success"]
    assert kinds(receiver) == ["failure_streak"] and receiver.requests[0].body["failures"] == 3

    # a manual_single sync has no record, but its success still ends the streak (Instance.last_success_at)
    server.error = None
    server.accounts = [account("app")]
    with django_capture_on_commit_callbacks(execute=True):
        assert sync_accounts(instance=inst, sync_type="manual_single")["success"]
    assert kinds(receiver) == ["failure_streak", "failure_streak_recovered"]
    assert failure_streak(inst.pk) == 0


def test_a_reaped_record_counts_at_once(receiver, q_sync, make_instance, scheduled, django_capture_on_commit_callbacks):
    """A worker that died: the reaper fails its record, and that failure is announced like any other."""
    from sync.services import sync_reap

    AlertChannel.objects.create(name="ops", kind="webhook", webhook_url=receiver.url, failure_streak_events=True)
    inst = make_instance(name="prod-db-5")
    scheduled(inst, fail=True)
    scheduled(inst, fail=True)
    session = SyncSession.objects.create(sync_type="manual_batch", total_instances=1)
    stuck = SyncInstanceRecord.objects.create(session=session, instance=inst, instance_name=inst.name)
    assert stuck.mark_running()
    SyncInstanceRecord.objects.filter(pk=stuck.pk).update(heartbeat_at=ago(hours=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert sync_reap(stale_after=60) == 1
    assert kinds(receiver) == ["failure_streak"]
    assert receiver.requests[0].body["recent_failures"][0]["error_kind"] == "timeout"


def test_a_failure_nobody_announced_is_caught_by_the_check(
    server, receiver, q_sync, make_instance, django_capture_on_commit_callbacks
):
    """A process that died between the failure's commit and its announcement: the periodic check catches up."""
    AlertChannel.objects.create(name="ops", kind="webhook", webhook_url=receiver.url, failure_streak_events=True)
    inst = make_instance(name="prod-db-6")
    server.error = DOWN
    for _ in range(3):  # outside a capture: the on-commit announcements are dropped, as by a crash
        assert not sync_accounts(instance=inst, sync_type="scheduled_task")["success"]
    assert receiver.requests == []
    with django_capture_on_commit_callbacks(execute=True):
        summary = check_operational_alerts()
    assert summary["opened"] == [{"instance": "prod-db-6", "kind": "failure_streak"}]
    assert kinds(receiver) == ["failure_streak"]


def test_failures_that_say_nothing_about_the_instance_do_not_count(make_instance):
    inst = make_instance(name="prod-db-4")
    for kind in ("connection", "conflict", "cancelled", "timeout"):
        session = SyncSession.objects.create(sync_type="scheduled_task")
        SyncInstanceRecord.objects.create(
            session=session,
            instance=inst,
            instance_name=inst.name,
            status="failed",
            error_kind=kind,
            completed_at=timezone.now(),
        )
    assert failure_streak(inst.pk) == 2  # connection and timeout; not "another sync held it", not "cancelled"


def test_stale_via_the_cron_command_when_no_sync_ever_ran_then_recovered(
    server, receiver, q_sync, make_instance, django_capture_on_commit_callbacks
):
    """No cluster, no schedule, no sync at all: the command finds the instance stale and sends the alert itself."""
    AlertChannel.objects.create(name="ops", kind="webhook", webhook_url=receiver.url, stale_events=True)
    AlertChannel.objects.create(
        name="streaks only", kind="webhook", webhook_url=receiver.url, failure_streak_events=True
    )
    inst = make_instance(name="prod-db-5", environment="production")
    fresh = make_instance(name="prod-db-new")  # added an hour ago: not stale yet
    Instance.objects.filter(pk=inst.pk).update(created_at=ago(hours=30))
    Instance.objects.filter(pk=fresh.pk).update(created_at=ago(hours=1))
    retired = make_instance(name="prod-db-old", is_active=False)  # inactive instances are never stale
    Instance.objects.filter(pk=retired.pk).update(created_at=ago(days=30))

    out, err = StringIO(), StringIO()
    call_command("check_staleness", stdout=out, stderr=err)  # no django-q2 task: sent from this process
    assert kinds(receiver) == ["stale"]
    body = receiver.requests[0].body
    assert body["instance"]["name"] == "prod-db-5" and body["never_synced"] is True
    assert body["message"].startswith(
        "prod-db-5 has never been synced successfully; it was added 30 hours ago "
        "(alert threshold for Production: 26 hours)."
    )
    assert "No sync is scheduled" in body["message"] and "manage.py setup_schedules" in body["message"]
    assert body["scheduler"]["ok"] is False
    assert AlertDelivery.objects.get().status == "sent"
    assert "opened: stale prod-db-5" in out.getvalue() and "1 sent" in out.getvalue()
    assert "scheduler: No sync is scheduled" in err.getvalue()

    call_command("check_staleness", stdout=StringIO(), stderr=StringIO())
    check_operational_alerts()
    assert kinds(receiver) == ["stale"], "an open alert is not sent again"

    server.accounts = [account("app")]
    with django_capture_on_commit_callbacks(execute=True):
        assert sync_accounts(instance=inst, sync_type="manual_single")["success"]
    assert kinds(receiver) == ["stale", "stale_recovered"]
    assert receiver.requests[1].body["message"].startswith("prod-db-5 synced successfully again; the alert opened at")
    call_command("check_staleness", stdout=StringIO(), stderr=StringIO())
    assert kinds(receiver) == ["stale", "stale_recovered"]


def test_stale_via_the_schedule_run_by_django_q2_when_no_sync_ever_ran(
    receiver, q_sync, make_instance, django_capture_on_commit_callbacks
):
    from django_q.scheduler import scheduler

    AlertChannel.objects.create(name="ops", kind="webhook", webhook_url=receiver.url, stale_events=True)
    inst = make_instance(name="prod-db-6")
    Instance.objects.filter(pk=inst.pk).update(created_at=ago(hours=40))
    call_command("setup_schedules", stdout=StringIO())
    check = Schedule.objects.get(name="whalefall: operational alert check")
    assert (check.func, check.schedule_type, check.minutes) == ("alerts.tasks.check_operational_alerts", "I", 15)
    # the daily sync was removed by hand: the scheduler runs, but nothing would ever sync
    Schedule.objects.filter(name="whalefall: daily account sync").delete()
    Schedule.objects.exclude(pk=check.pk).update(next_run=timezone.now() + timedelta(hours=1))
    Schedule.objects.filter(pk=check.pk).update(next_run=ago(seconds=5))

    with django_capture_on_commit_callbacks(execute=True):
        scheduler()  # django-q2's scheduler runs the due check, which queues the alert to the workers
    assert kinds(receiver) == ["stale"]
    body = receiver.requests[0].body
    assert body["never_synced"] is True and body["hours_since_success"] == 40.0
    assert "whalefall: daily account sync" in body["message"] and "does not exist" in body["message"]
    assert SyncSession.objects.count() == 0, "the check itself syncs nothing"


def test_the_check_says_when_the_scheduler_is_not_running(receiver, make_instance):
    AlertChannel.objects.create(name="ops", kind="webhook", webhook_url=receiver.url, stale_events=True)
    inst = make_instance(name="prod-db-7")
    Instance.objects.filter(pk=inst.pk).update(
        last_success_at=ago(hours=30), last_sync_at=ago(hours=30), last_sync_status="completed"
    )
    call_command("setup_schedules", stdout=StringIO())
    Schedule.objects.update(next_run=ago(hours=5))  # nothing ran them: no qcluster

    call_command("check_staleness", stdout=StringIO(), stderr=StringIO())
    body = receiver.requests[0].body
    assert body["message"].startswith("prod-db-7 has not been synced successfully for 30 hours, since ")
    assert "The scheduler is not running scheduled syncs" in body["message"]
    assert "5 hours ago. Is manage.py qcluster running?" in body["message"]
    assert body["never_synced"] is False and body["last_sync_status"] == "completed"


def test_the_check_says_when_the_scheduled_sync_started_no_session(make_instance):
    """The scheduler ran the daily sync (its task is recorded) but no scheduled session started since it was due."""
    make_instance(name="prod-db-8")
    call_command("setup_schedules", stdout=StringIO())
    Schedule.objects.update(next_run=timezone.now() + timedelta(hours=1))
    Schedule.objects.filter(name="whalefall: daily account sync").update(cron="0 * * * *", task="a-task-id")
    old = SyncSession.objects.create(sync_type="scheduled_task")
    SyncSession.objects.filter(pk=old.pk).update(started_at=ago(days=2))
    now = timezone.now().replace(minute=30)
    problems = operational.scheduler_problems(now)
    assert len(problems) == 1 and "started no sync session" in problems[0]
    SyncSession.objects.create(sync_type="scheduled_task", started_at=now.replace(minute=1))
    assert operational.scheduler_problems(now) == []


def test_thresholds_per_environment(
    receiver, q_sync, make_instance, scheduled, settings, django_capture_on_commit_callbacks
):
    settings.WHALEFALL_ALERT_THRESHOLDS = (
        '{"production": {"failure_streak": 2, "stale_hours": 6}, "development": {"failure_streak": 0}}'
    )
    AlertChannel.objects.create(
        name="ops", kind="webhook", webhook_url=receiver.url, failure_streak_events=True, stale_events=True
    )
    prod = make_instance(name="prod", environment="production")
    staging = make_instance(name="staging", environment="staging")
    dev = make_instance(name="dev", environment="development")
    for inst in (prod, staging):
        Instance.objects.filter(pk=inst.pk).update(last_success_at=ago(hours=7), created_at=ago(days=9))

    with django_capture_on_commit_callbacks(execute=True):
        check_operational_alerts()
    assert [(r.body["kind"], r.body["instance"]["name"]) for r in receiver.requests] == [("stale", "prod")]
    assert receiver.requests[0].body["threshold_hours"] == 6.0
    assert "(alert threshold for Production: 6 hours)" in receiver.requests[0].body["message"]

    scheduled(prod, fail=True)
    scheduled(prod, fail=True)  # production alerts at 2
    for _ in range(2):
        scheduled(staging, fail=True)  # staging keeps the default 3
    for _ in range(4):
        scheduled(dev, fail=True)  # 0: off in development
    assert [(r.body["kind"], r.body["instance"]["name"]) for r in receiver.requests] == [
        ("stale", "prod"),
        ("failure_streak", "prod"),
    ]
    assert receiver.requests[1].body["threshold"] == 2
    scheduled(staging, fail=True)
    assert [r.body["instance"]["name"] for r in receiver.requests] == ["prod", "prod", "staging"]
    assert receiver.requests[2].body["threshold"] == 3


@pytest.mark.django_db(transaction=True)
def test_two_checks_at_once_open_one_alert(make_instance, monkeypatch):
    """Two processes decide at the same moment that an instance is stale: one alert, not two."""
    AlertChannel.objects.create(name="ops", kind="webhook", webhook_url="http://127.0.0.1:9/x", stale_events=True)
    inst = make_instance(name="prod-db-9")
    Instance.objects.filter(pk=inst.pk).update(created_at=ago(hours=30))
    barrier = threading.Barrier(2, timeout=30)
    decide = operational._candidates

    def both_decide_before_either_opens(now, table):
        todo = decide(now, table)
        barrier.wait()
        return todo

    monkeypatch.setattr(operational, "_candidates", both_decide_before_either_opens)
    summaries, errors = [], []

    def check() -> None:
        try:
            summaries.append(operational_check(queue=False))
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=check) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(len(s.opened) for s in summaries) == [0, 1]
    assert AlertDelivery.objects.filter(event_kind="stale").count() == 1
    assert OperationalAlertState.objects.get(instance=inst, kind="stale").is_open


def test_a_deactivated_instance_closes_its_alert_without_a_message(receiver, make_instance):
    AlertChannel.objects.create(name="ops", kind="webhook", webhook_url=receiver.url, stale_events=True)
    inst = make_instance(name="prod-db-10")
    Instance.objects.filter(pk=inst.pk).update(created_at=ago(hours=30))
    call_command("check_staleness", stdout=StringIO(), stderr=StringIO())
    Instance.objects.filter(pk=inst.pk).update(is_active=False)
    summary = operational_check(queue=False)
    assert summary.closed == [("prod-db-10", "stale")] and summary.deliveries == []
    assert kinds(receiver) == ["stale"]


def test_email_channel_gets_readable_operational_mail(q_sync, make_instance, scheduled, settings):
    settings.WHALEFALL_ALERT_FROM_EMAIL = "whalefall@example.com"
    AlertChannel.objects.create(
        name="dba", kind="email", email_recipients="dba@example.com", failure_streak_events=True
    )
    AlertChannel.objects.create(
        name="staging only",
        kind="email",
        email_recipients="x@example.com",
        failure_streak_events=True,
        environments=["staging"],
    )
    inst = make_instance(name="prod-db-11", environment="production")
    for _ in range(3):
        scheduled(inst, fail=True)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.subject == "[WhaleFall] HIGH: prod-db-11 failed 3 syncs in a row"
    assert message.to == ["dba@example.com"]
    assert "Instance: prod-db-11 (mysql, production)" in message.body
    assert "Connection refused" in message.body and PASSWORD not in message.body
    scheduled(inst, fail=False)
    assert mail.outbox[1].subject == "[WhaleFall] prod-db-11 syncs successfully again"


BAD_THRESHOLDS = [
    ('{"production": {"failure_streak": 2,}', "WHALEFALL_ALERT_THRESHOLDS is not valid JSON"),
    ('["production"]', "must be a JSON object of environments"),
    ('{"prod": {"stale_hours": 6}}', "unknown environment 'prod' (production, staging, development, testing)"),
    ('{"production": 6}', "must be an object with failure_streak and/or stale_hours"),
    ('{"production": {"stale": 6}}', "unknown key 'stale'"),
    ('{"production": {"failure_streak": -1}}', "['failure_streak'] must be a whole number of syncs, 0 or more"),
    ('{"production": {"failure_streak": 2.5}}', "['failure_streak'] must be a whole number of syncs"),
    ('{"production": {"stale_hours": "6"}}', "['stale_hours'] must be a number of hours, 0 or more (got '6')"),
]


@pytest.mark.parametrize(("raw", "message"), BAD_THRESHOLDS)
def test_the_system_check_rejects_bad_thresholds(settings, raw, message):
    settings.WHALEFALL_ALERT_THRESHOLDS = raw
    errors = alert_thresholds_check()
    assert len(errors) == 1 and isinstance(errors[0], Error)
    assert errors[0].id == "alerts.E001" and message in errors[0].msg, errors[0].msg
    assert '{"production": {"failure_streak": 2, "stale_hours": 6}' in errors[0].hint
    with pytest.raises(SystemCheckError, match=r"alerts\.E001"):
        call_command("check")


def test_the_system_check_accepts_good_thresholds_and_checks_the_defaults(settings):
    settings.WHALEFALL_ALERT_THRESHOLDS = '{"production": {"failure_streak": 2, "stale_hours": 6.5}, "testing": {}}'
    assert alert_thresholds_check() == []
    settings.WHALEFALL_ALERT_THRESHOLDS = ""
    settings.WHALEFALL_ALERT_FAILURE_STREAK = -2
    (error,) = alert_thresholds_check()
    assert "WHALEFALL_ALERT_FAILURE_STREAK must be a whole number of syncs, 0 or more (got -2)" in error.msg


def test_invalid_thresholds_at_run_time_fall_back_to_the_defaults(settings, make_instance, receiver, caplog):
    """A web or worker process runs no system check: bad settings must not stop the alerts."""
    settings.WHALEFALL_ALERT_THRESHOLDS = "{not json"
    AlertChannel.objects.create(name="ops", kind="webhook", webhook_url=receiver.url, stale_events=True)
    inst = make_instance(name="prod-db-12")
    Instance.objects.filter(pk=inst.pk).update(created_at=ago(hours=27))
    call_command("check_staleness", stdout=StringIO(), stderr=StringIO())
    assert kinds(receiver) == ["stale"] and receiver.requests[0].body["threshold_hours"] == 26.0
    assert any("thresholds are invalid" in r.getMessage() for r in caplog.records)


def test_admin_shows_the_subscriptions_and_the_open_alerts(client, bob, charlie, make_instance):
    client.force_login(bob)
    page = client.get(reverse("admin:alerts_alertchannel_add")).content.decode()
    assert 'name="failure_streak_events"' in page and 'name="stale_events"' in page
    response = client.post(
        reverse("admin:alerts_alertchannel_add"),
        {
            "name": "ops",
            "kind": "webhook",
            "webhook_url": "https://hooks.example.com/T0/abc",
            "email_recipients": "",
            "min_severity": "high",
            "failure_streak_events": "on",
            "stale_events": "on",
            "is_active": "on",
            "description": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    channel = AlertChannel.objects.get()
    assert (channel.failure_streak_events, channel.stale_events, channel.coverage_events) == (True, True, False)
    listing = client.get(reverse("admin:alerts_alertchannel_changelist")).content.decode()
    assert "escalations, failed syncs in a row, not synced for too long" in listing

    inst = make_instance(name="prod-db-13")
    Instance.objects.filter(pk=inst.pk).update(created_at=ago(hours=30))
    operational_check(queue=False)
    client.force_login(charlie)  # viewers see which alerts are open
    states = client.get(reverse("admin:alerts_operationalalertstate_changelist"))
    assert states.status_code == 200
    assert "prod-db-13" in states.content.decode() and "30 h without a successful sync" in states.content.decode()

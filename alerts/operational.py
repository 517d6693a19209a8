"""Operational alerts: an instance that keeps failing, one not synced for too long (docs/alerts.md).

Two conditions, each open until the instance syncs successfully again:

- **failure streak**: the instance's last N sync records failed (N = ``failure_streak`` of its
  environment, ``alerts.thresholds``). Records cancelled, or failed because another sync held the
  instance (``conflict``) or the session was cancelled, say nothing about the instance and are not
  counted; a successful sync of any type (also ``manual_single``, which has no record) ends the
  streak, because the streak counts failed records since ``Instance.last_success_at``.
- **stale**: an active instance whose last successful sync (or, never synced, its creation) is
  older than ``stale_hours``. Found by the periodic check, which needs no sync to happen, so it
  also fires when nothing syncs at all; the check then says whether the scheduler looks down.

Why a state row per (instance, kind) (``OperationalAlertState``): the alert must go out once when
the condition starts, not on every failed sync or every check after it, and a "recovered" must go
once, to the channels that heard the alert, whichever process sees it first: the worker that ran
the sync (sync's record-failed hook for failures, the ``alerts`` post-sync hook for successes),
the scheduled check, or ``manage.py check_staleness`` from cron. Opening and closing lock that row
(``select_for_update``), re-read the condition under the lock and flip ``is_open`` with a
conditional UPDATE, so two processes that both see the condition produce one delivery; the
deliveries are written in the same transaction, so a crash loses neither the state nor the alert.

Why the failure side is a record-failed hook (``config.registry``): ``sync`` announces applied syncs
to its post-sync hooks, and every record that ends failed (in a worker, in one process, in the
reaper, refused by the broker) to its record-failed hooks, after the failure committed; it may not
import alerts. The periodic check still catches up with anything a crash left unreported.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Max, Q
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from alerts.models import (
    AlertChannel,
    AlertDelivery,
    DeliveryStatusChoices,
    EventKindChoices,
    OperationalAlertState,
    OperationalKindChoices,
)
from alerts.services import BATCH_SIZE, _log, alert_delivery_attempt, enqueue_on_commit
from alerts.thresholds import Thresholds, limits_for, threshold_table
from findings.models import SeverityChoices
from instances.models import Instance
from sync.hooks import PostSyncEvent
from sync.models import SyncInstanceRecord, SyncRecordStatusChoices, SyncSession, SyncTypeChoices

logger = logging.getLogger(__name__)

# failed records that say nothing about the instance: another sync held it, the session was cancelled
NOT_INSTANCE_FAILURES = ("conflict", "cancelled")
RECENT_FAILURES = 5
ERROR_TEXT_MAX = 300
# how late a WhaleFall schedule may be before the scheduler counts as not running (django-q2 looks every ~30 s)
SCHEDULER_GRACE = timedelta(minutes=10)
SCHEDULE_PREFIX = "whalefall:"
DAILY_SCHEDULE = "whalefall: daily account sync"

SUBSCRIPTION_FIELD = {
    OperationalKindChoices.FAILURE_STREAK: "failure_streak_events",
    OperationalKindChoices.STALE: "stale_events",
}
OPEN_EVENT = {
    OperationalKindChoices.FAILURE_STREAK: EventKindChoices.FAILURE_STREAK,
    OperationalKindChoices.STALE: EventKindChoices.STALE,
}
RECOVERED_EVENT = {
    OperationalKindChoices.FAILURE_STREAK: EventKindChoices.FAILURE_STREAK_RECOVERED,
    OperationalKindChoices.STALE: EventKindChoices.STALE_RECOVERED,
}
OPERATIONAL_EVENTS = frozenset({*OPEN_EVENT.values(), *RECOVERED_EVENT.values()})


@dataclass
class CheckSummary:
    """What one periodic check did (returned by the task, printed by the command)."""

    checked: int = 0
    opened: list[tuple[str, str]] = field(default_factory=list)  # (instance name, kind)
    closed: list[tuple[str, str]] = field(default_factory=list)
    deliveries: list[int] = field(default_factory=list)
    scheduler_problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "opened": [{"instance": name, "kind": kind} for name, kind in self.opened],
            "closed": [{"instance": name, "kind": kind} for name, kind in self.closed],
            "deliveries": list(self.deliveries),
            "scheduler_problems": list(self.scheduler_problems),
        }


# --- conditions ------------------------------------------------------------------------------


def _failed_records(instance_ids: Iterable[int] | None = None):
    """Failed records that count against their instance, since its last successful sync."""
    rows = SyncInstanceRecord.objects.filter(status=SyncRecordStatusChoices.FAILED).exclude(
        error_kind__in=NOT_INSTANCE_FAILURES
    )
    if instance_ids is not None:
        rows = rows.filter(instance_id__in=list(instance_ids))
    return rows.filter(Q(instance__last_success_at__isnull=True) | Q(completed_at__gt=F("instance__last_success_at")))


def failure_streak(instance_id: int) -> int:
    """How many syncs of the instance failed in a row, up to now."""
    return _failed_records([instance_id]).count()


def _recent_failures(instance_id: int) -> list[dict[str, Any]]:
    rows = (
        _failed_records([instance_id])
        .order_by("-completed_at", "-pk")
        .values("session__session_id", "error_kind", "error_message", "completed_at")[:RECENT_FAILURES]
    )
    return [
        {
            "session_id": str(row["session__session_id"]),
            "error_kind": row["error_kind"],
            "error_message": (row["error_message"] or "")[:ERROR_TEXT_MAX],
            "completed_at": row["completed_at"].isoformat() if row["completed_at"] else None,
        }
        for row in rows
    ]


def _stale_hours(instance: Instance, now: datetime) -> float:
    """Hours since the instance's last successful sync (never synced: since it was added)."""
    since = instance.last_success_at or instance.created_at
    return max((now - since).total_seconds() / 3600.0, 0.0)


def _is_stale(instance: Instance, limits: Thresholds, now: datetime) -> bool:
    return bool(limits.stale_hours) and _stale_hours(instance, now) >= limits.stale_hours


def _is_failing(streak: int, limits: Thresholds) -> bool:
    return bool(limits.failure_streak) and streak >= limits.failure_streak


def _recovered_since(instance: Instance, state: OperationalAlertState) -> bool:
    """A sync succeeded after the alert opened (only that ends an alert; a threshold change does not)."""
    return bool(instance.last_success_at and state.opened_at and instance.last_success_at > state.opened_at)


def _when(value: datetime | None) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M %Z") if value else "-"


def _hours(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def scheduler_problems(now: datetime | None = None) -> list[str]:
    """Why no scheduled sync may be running, from the django-q2 schedules and the scheduled sessions.

    The scheduler (in ``manage.py qcluster``) moves each schedule's ``next_run`` forward when it
    runs it, so a WhaleFall schedule more than ``SCHEDULER_GRACE`` past its ``next_run`` means no
    scheduler is running. A daily sync that has run before but started no ``scheduled_task``
    session since its last due time means the scheduler fired it and the task never started a session.
    """
    from django_q.models import Schedule

    now = now or timezone.now()
    schedules = {s.name: s for s in Schedule.objects.filter(name__startswith=SCHEDULE_PREFIX)}
    problems = []
    daily = schedules.get(DAILY_SCHEDULE)
    if daily is None:
        problems.append(
            _("No sync is scheduled: the django-q2 schedule “%(name)s” does not exist (run manage.py setup_schedules).")
            % {"name": DAILY_SCHEDULE}
        )
    late = sorted(
        (s for s in schedules.values() if s.next_run and s.next_run < now - SCHEDULER_GRACE), key=lambda s: s.next_run
    )
    if late:
        first = late[0]
        problems.append(
            _(
                "The scheduler is not running scheduled syncs: the schedule “%(name)s” was due at %(due)s, "
                "%(hours)s hours ago. Is manage.py qcluster running?"
            )
            % {
                "name": first.name,
                "due": _when(first.next_run),
                "hours": _hours((now - first.next_run).total_seconds() / 3600.0),
            }
        )
    elif daily is not None and daily.task and daily.cron:
        due = _previous_run(daily.cron, now)
        if due is not None and due < now - SCHEDULER_GRACE:
            last = SyncSession.objects.filter(sync_type=SyncTypeChoices.SCHEDULED_TASK).aggregate(
                last=Max("started_at")
            )["last"]
            if last is None or last < due - SCHEDULER_GRACE:
                problems.append(
                    _(
                        "The scheduled sync due at %(due)s started no sync session (the last one started at "
                        "%(last)s); see the failed tasks of django-q2."
                    )
                    % {"due": _when(due), "last": _when(last)}
                )
    return problems


def _previous_run(cron: str, now: datetime) -> datetime | None:
    """The last time before ``now`` the cron expression was due (django-q2 reads cron in local time)."""
    try:
        from croniter import croniter

        return croniter(cron, timezone.localtime(now)).get_prev(datetime)
    except Exception:  # an invalid expression or no croniter: the schedule check above still works
        return None


# --- payloads --------------------------------------------------------------------------------


def _instance_part(instance: Instance) -> dict[str, Any]:
    return {"id": instance.pk, "name": instance.name, "db_type": instance.db_type, "environment": instance.environment}


def _instance_url(instance: Instance) -> str:
    base = (getattr(settings, "WHALEFALL_ALERT_BASE_URL", "") or "").rstrip("/")
    return f"{base}{reverse('admin:instances_instance_change', args=[instance.pk])}"


def _environment_label(instance: Instance) -> str:
    return str(instance.get_environment_display())


def failure_streak_payload(
    *, instance: Instance, streak: int, limits: Thresholds, recent: list[dict[str, Any]], now: datetime
) -> dict[str, Any]:
    """The alert that an instance failed ``streak`` syncs in a row (no credential, no grant)."""
    last = recent[0] if recent else {}
    message = ngettext(
        "%(name)s failed %(count)d sync in a row (alert threshold for %(environment)s: %(limit)d).",
        "%(name)s failed %(count)d syncs in a row (alert threshold for %(environment)s: %(limit)d).",
        streak,
    ) % {
        "name": instance.name,
        "count": streak,
        "environment": _environment_label(instance),
        "limit": limits.failure_streak,
    }
    if last:
        message += " " + _("Last error (%(kind)s): %(error)s") % {
            "kind": last.get("error_kind") or "-",
            "error": last.get("error_message") or "-",
        }
    return {
        "event": "operational",
        "kind": EventKindChoices.FAILURE_STREAK,
        "severity": SeverityChoices.HIGH,
        "instance": _instance_part(instance),
        "message": message,
        "failures": streak,
        "threshold": limits.failure_streak,
        "last_success_at": instance.last_success_at.isoformat() if instance.last_success_at else None,
        "recent_failures": recent,
        "opened_at": now.isoformat(),
        "session_id": last.get("session_id"),
        "instance_url": _instance_url(instance),
    }


def stale_payload(*, instance: Instance, limits: Thresholds, now: datetime, problems: list[str]) -> dict[str, Any]:
    """The alert that an instance has not been synced successfully for too long (or ever)."""
    hours = _stale_hours(instance, now)
    values = {
        "name": instance.name,
        "hours": _hours(hours),
        "environment": _environment_label(instance),
        "limit": _hours(limits.stale_hours),
        "last": _when(instance.last_success_at),
    }
    if instance.last_success_at is None:
        message = (
            _(
                "%(name)s has never been synced successfully; it was added %(hours)s hours ago "
                "(alert threshold for %(environment)s: %(limit)s hours)."
            )
            % values
        )
    else:
        message = (
            _(
                "%(name)s has not been synced successfully for %(hours)s hours, since %(last)s "
                "(alert threshold for %(environment)s: %(limit)s hours)."
            )
            % values
        )
    if instance.last_sync_status == "failed":
        message += " " + _("Its syncs fail: see the failed-syncs-in-a-row alert or the instance's sync records.")
    if problems:
        message += " " + " ".join(problems)
    return {
        "event": "operational",
        "kind": EventKindChoices.STALE,
        "severity": SeverityChoices.HIGH,
        "instance": _instance_part(instance),
        "message": message,
        "hours_since_success": round(hours, 1),
        "threshold_hours": limits.stale_hours,
        "never_synced": instance.last_success_at is None,
        "last_success_at": instance.last_success_at.isoformat() if instance.last_success_at else None,
        "last_sync_at": instance.last_sync_at.isoformat() if instance.last_sync_at else None,
        "last_sync_status": instance.last_sync_status or None,
        "scheduler": {"ok": not problems, "problems": problems},
        "opened_at": now.isoformat(),
        "session_id": None,
        "instance_url": _instance_url(instance),
    }


def recovered_payload(
    *, instance: Instance, state: OperationalAlertState, now: datetime, session_id: uuid.UUID | str | None
) -> dict[str, Any]:
    """The "recovered" message: the instance synced successfully after the alert opened."""
    details = state.details or {}
    if state.kind == OperationalKindChoices.FAILURE_STREAK:
        failures = int(details.get("failures") or 0)
        message = ngettext(
            "%(name)s synced successfully again, after %(count)d failed sync in a row.",
            "%(name)s synced successfully again, after %(count)d failed syncs in a row.",
            failures,
        ) % {"name": instance.name, "count": failures}
    else:
        message = _(
            "%(name)s synced successfully again; the alert opened at %(opened)s, when it had not been synced "
            "successfully for %(hours)s hours."
        ) % {"name": instance.name, "opened": _when(state.opened_at), "hours": _hours(details.get("hours") or 0)}
    return {
        "event": "operational",
        "kind": RECOVERED_EVENT[state.kind],
        "severity": SeverityChoices.LOW,
        "instance": _instance_part(instance),
        "message": message,
        "opened_at": state.opened_at.isoformat() if state.opened_at else None,
        "recovered_at": now.isoformat(),
        "last_success_at": instance.last_success_at.isoformat() if instance.last_success_at else None,
        "details": details,
        "session_id": str(session_id) if session_id else None,
        "instance_url": _instance_url(instance),
    }


def operational_email_text(payload: dict[str, Any]) -> tuple[str, list[str]]:
    """Subject and body lines of an operational alert e-mail (``alert_email_text`` appends the JSON)."""
    inst = payload.get("instance") or {}
    kind = payload.get("kind")
    name = inst.get("name", "?")
    with translation.override(settings.LANGUAGE_CODE):
        if kind == EventKindChoices.FAILURE_STREAK:
            subject = _("[WhaleFall] HIGH: %(name)s failed %(count)s syncs in a row") % {
                "name": name,
                "count": payload.get("failures"),
            }
        elif kind == EventKindChoices.STALE:
            subject = (
                _("[WhaleFall] HIGH: %(name)s has never been synced")
                if payload.get("never_synced")
                else _("[WhaleFall] HIGH: %(name)s not synced for %(hours)s hours")
            ) % {"name": name, "hours": _hours(float(payload.get("hours_since_success") or 0))}
        elif kind == EventKindChoices.FAILURE_STREAK_RECOVERED:
            subject = _("[WhaleFall] %(name)s syncs successfully again") % {"name": name}
        else:
            subject = _("[WhaleFall] %(name)s is synced again") % {"name": name}
        lines = [
            str(payload.get("message") or ""),
            "",
            _("Instance: %(name)s (%(db_type)s, %(environment)s)")
            % {"name": name, "db_type": inst.get("db_type"), "environment": inst.get("environment")},
            _("Instance page: %(url)s") % {"url": payload.get("instance_url")},
            _("Last successful sync: %(when)s") % {"when": payload.get("last_success_at") or "-"},
        ]
        for failure in payload.get("recent_failures") or []:
            lines += [
                "",
                _("Failed: %(when)s, %(kind)s, session %(session)s")
                % {
                    "when": failure.get("completed_at"),
                    "kind": failure.get("error_kind"),
                    "session": failure.get("session_id"),
                },
                f"  {failure.get('error_message')}",
            ]
        for problem in (payload.get("scheduler") or {}).get("problems") or []:
            lines += ["", _("Scheduler: %(problem)s") % {"problem": problem}]
    return subject, lines


# --- state transitions -------------------------------------------------------------------------


def _subscribed(channels: Iterable[AlertChannel], kind: str, instance: Instance) -> list[AlertChannel]:
    """Active channels that chose this kind of operational alert and whose filters take the instance."""
    flag = SUBSCRIPTION_FIELD[kind]
    return [
        c
        for c in channels
        if c.is_active
        and getattr(c, flag)
        and (not c.db_types or instance.db_type in c.db_types)
        and (not c.environments or instance.environment in c.environments)
    ]


def _state_locked(instance_id: int, kind: str) -> OperationalAlertState:
    """The (instance, kind) state row, created on first need, locked until the transaction ends."""
    rows = OperationalAlertState.objects.select_for_update()
    state = rows.filter(instance_id=instance_id, kind=kind).first()
    if state is None:
        try:
            with transaction.atomic():  # a savepoint: a concurrent creator wins, this one reads its row
                OperationalAlertState.objects.create(instance_id=instance_id, kind=kind)
        except IntegrityError:
            pass
        state = rows.get(instance_id=instance_id, kind=kind)
    return state


def _deliveries_write(
    *, channels: list[AlertChannel], instance: Instance, payload: dict[str, Any], summary: str, queue: bool
) -> list[int]:
    """One pending delivery per channel, in the caller's transaction; queued on commit when ``queue``."""
    if not channels:
        return []
    session = payload.get("session_id")
    rows = [
        AlertDelivery(
            channel=channel,
            channel_name=channel.name,
            event_kind=payload["kind"],
            severity=payload["severity"],
            instance=instance,
            account_identity=summary[:512],
            session_id=uuid.UUID(session) if session else None,
            payload=payload,
        )
        for channel in channels
    ]
    created = AlertDelivery.objects.bulk_create(rows, batch_size=BATCH_SIZE)
    ids = [row.pk for row in created if row.pk is not None]
    if len(ids) != len(rows):  # a backend that returns no ids from a bulk insert
        ids = list(
            AlertDelivery.objects.filter(
                instance=instance,
                event_kind=payload["kind"],
                channel__in=channels,
                status=DeliveryStatusChoices.PENDING,
                attempts=0,
            ).values_list("id", flat=True)
        )
    if queue:
        enqueue_on_commit(ids)
    return ids


def _open(
    *,
    instance_id: int,
    kind: str,
    limits: Thresholds,
    now: datetime,
    queue: bool,
    problems: list[str] | None = None,
) -> list[int] | None:
    """Open the alert if its condition holds under the state's lock; None when this call did not open it."""
    with transaction.atomic():
        state = _state_locked(instance_id, kind)
        if state.is_open:
            return None
        instance = Instance.objects.filter(pk=instance_id, is_active=True).first()  # fresh, after the lock
        if instance is None:
            return None
        if kind == OperationalKindChoices.FAILURE_STREAK:
            streak = failure_streak(instance_id)
            if not _is_failing(streak, limits):
                return None
            payload = failure_streak_payload(
                instance=instance, streak=streak, limits=limits, recent=_recent_failures(instance_id), now=now
            )
            details = {"failures": streak, "threshold": limits.failure_streak}
            summary = ngettext("%(count)d failed sync", "%(count)d failed syncs", streak) % {"count": streak}
        else:
            if not _is_stale(instance, limits, now):
                return None
            payload = stale_payload(instance=instance, limits=limits, now=now, problems=problems or [])
            hours = round(_stale_hours(instance, now), 1)
            details = {"hours": hours, "threshold_hours": limits.stale_hours, "never_synced": payload["never_synced"]}
            summary = _("%(hours)s h without a successful sync") % {"hours": _hours(hours)}
        channels = _subscribed(AlertChannel.objects.filter(is_active=True).order_by("pk"), kind, instance)
        flipped = OperationalAlertState.objects.filter(pk=state.pk, is_open=False).update(
            is_open=True,
            opened_at=now,
            closed_at=None,
            details=details,
            channel_ids=[c.pk for c in channels],
            updated_at=now,
        )
        if not flipped:  # cannot happen under the lock; never send twice on a surprise
            return None
        ids = _deliveries_write(channels=channels, instance=instance, payload=payload, summary=summary, queue=queue)
    _log(
        logging.WARNING,
        f"{instance.name}: operational alert {kind} opened ({summary}); {len(ids)} alert deliveries",
        instance=instance,
        session_id=payload.get("session_id"),
        phase="operational_open",
        alert_kind=kind,
    )
    return ids


def _close(
    *,
    instance_id: int,
    kind: str,
    now: datetime,
    queue: bool,
    session_id: uuid.UUID | str | None = None,
    announce: bool = True,
    require_recovery: bool = True,
) -> list[int] | None:
    """Close an open alert; the channels that heard it get a "recovered". None when this call did not close it.

    ``require_recovery``: close only if a sync succeeded after the alert opened (re-read under the lock).
    ``announce=False`` closes without a message (the instance was deactivated).
    """
    with transaction.atomic():
        state = (
            OperationalAlertState.objects.select_for_update()
            .filter(instance_id=instance_id, kind=kind, is_open=True)
            .first()
        )
        if state is None:
            return None
        instance = Instance.objects.filter(pk=instance_id).first()
        if instance is None or (require_recovery and not _recovered_since(instance, state)):
            return None
        closed = OperationalAlertState.objects.filter(pk=state.pk, is_open=True).update(
            is_open=False, closed_at=now, updated_at=now
        )
        if not closed:
            return None
        ids: list[int] = []
        if announce and state.channel_ids:
            heard = AlertChannel.objects.filter(pk__in=state.channel_ids, is_active=True).order_by("pk")
            channels = _subscribed(heard, kind, instance)
            payload = recovered_payload(instance=instance, state=state, now=now, session_id=session_id)
            ids = _deliveries_write(
                channels=channels, instance=instance, payload=payload, summary=_("recovered"), queue=queue
            )
    _log(
        logging.INFO,
        f"{instance.name}: operational alert {kind} closed"
        + (f"; {len(ids)} recovered deliveries" if announce else " (instance deactivated, no message)"),
        instance=instance,
        session_id=session_id,
        phase="operational_close",
        alert_kind=kind,
    )
    return ids


# --- entry points ----------------------------------------------------------------------------


def operational_on_sync_applied(event: PostSyncEvent) -> None:
    """After a successful sync (called by the ``alerts`` post-sync hook): its open operational alerts end.

    Each sends "recovered" to the channels that heard it open. Costs one query when nothing is
    open (the usual case).
    """
    open_kinds = list(
        OperationalAlertState.objects.filter(instance_id=event.instance.pk, is_open=True).values_list("kind", flat=True)
    )
    if not open_kinds:
        return
    now = timezone.now()
    with translation.override(settings.LANGUAGE_CODE):
        for kind in open_kinds:
            _close(instance_id=event.instance.pk, kind=kind, now=now, queue=True, session_id=event.session_id)


def operational_after_failed_record(*, record_id: int, queue: bool = True) -> list[int] | None:
    """After a record failed: open the failure-streak alert if this failure made the streak reach its threshold."""
    record = (
        SyncInstanceRecord.objects.filter(pk=record_id)
        .values("instance_id", "status", "error_kind", "instance__environment", "instance__is_active")
        .first()
    )
    if (
        record is None
        or record["instance_id"] is None
        or not record["instance__is_active"]
        or record["status"] != SyncRecordStatusChoices.FAILED
        or record["error_kind"] in NOT_INSTANCE_FAILURES
    ):
        return None
    limits = limits_for(threshold_table(), record["instance__environment"])
    if not limits.failure_streak:
        return None
    if not _is_failing(failure_streak(record["instance_id"]), limits):
        return None
    with translation.override(settings.LANGUAGE_CODE):
        return _open(
            instance_id=record["instance_id"],
            kind=OperationalKindChoices.FAILURE_STREAK,
            limits=limits,
            now=timezone.now(),
            queue=queue,
        )


def operational_on_record_failed(record_id: int) -> None:
    """sync's record-failed hook (``config.registry``): after any record's failure has committed.

    Never raises (sync logs a hook that does, but the failure streak must not cost the sync
    anything): a failure here is logged and the periodic check catches up.
    """
    try:
        operational_after_failed_record(record_id=record_id)
    except Exception as exc:
        _log(
            logging.ERROR,
            f"operational alert after record {record_id} failed ({type(exc).__name__}: {exc}); "
            "the periodic check will catch up",
            phase="error",
            operation="operational_alerts",
        )


def _candidates(now: datetime, table: dict[str, Thresholds]) -> tuple[list[tuple[Instance, str, str]], int]:
    """(instance, kind, "open"|"close"|"quiet") to try, from three queries whatever the fleet's size."""
    open_states: dict[tuple[int, str], OperationalAlertState] = {
        (s.instance_id, s.kind): s for s in OperationalAlertState.objects.filter(is_open=True)
    }
    streaks = dict(
        _failed_records()
        .filter(instance__is_active=True)
        .order_by()
        .values("instance_id")
        .annotate(n=Count("pk"))
        .values_list("instance_id", "n")
    )
    instances = list(
        Instance.objects.filter(is_active=True).only(
            "pk", "name", "db_type", "environment", "created_at", "last_success_at", "last_sync_at", "last_sync_status"
        )
    )
    todo: list[tuple[Instance, str, str]] = []
    active = set()
    for instance in instances:
        active.add(instance.pk)
        limits = limits_for(table, instance.environment)
        for kind in (OperationalKindChoices.FAILURE_STREAK, OperationalKindChoices.STALE):
            state = open_states.get((instance.pk, kind))
            if state is not None:
                if _recovered_since(instance, state):
                    todo.append((instance, kind, "close"))
                continue
            if kind == OperationalKindChoices.FAILURE_STREAK:
                if _is_failing(streaks.get(instance.pk, 0), limits):
                    todo.append((instance, kind, "open"))
            elif _is_stale(instance, limits, now):
                todo.append((instance, kind, "open"))
    gone = {instance_id for instance_id, _kind in open_states if instance_id not in active}
    if gone:  # deactivated while an alert was open: it can no longer recover, close it without a message
        for instance in Instance.objects.filter(pk__in=gone).only("pk", "name", "db_type", "environment"):
            for kind in OperationalKindChoices.values:
                if (instance.pk, kind) in open_states:
                    todo.append((instance, kind, "quiet"))
    return todo, len(instances)


def operational_check(*, now: datetime | None = None, queue: bool = True) -> CheckSummary:
    """The periodic check (schedule every 15 minutes, ``manage.py check_staleness``): open and close alerts.

    Needs no sync to have happened: an instance never synced, or not synced because the
    scheduler is down, goes stale all the same, and the alert then says what is wrong with
    the scheduler. It also opens failure streaks that no worker reported (syncs run in one
    process, records failed by the reaper) and closes alerts a missed hook left open.
    ``queue=False`` leaves the deliveries unqueued for the caller to send (the command does,
    in its own process, because the cluster may be what is down).
    """
    now = now or timezone.now()
    summary = CheckSummary()
    table = threshold_table()
    summary.scheduler_problems = scheduler_problems(now)
    todo, summary.checked = _candidates(now, table)
    with translation.override(settings.LANGUAGE_CODE):
        for instance, kind, action in todo:
            if action == "open":
                limits = limits_for(table, instance.environment)
                ids = _open(
                    instance_id=instance.pk,
                    kind=kind,
                    limits=limits,
                    now=now,
                    queue=queue,
                    problems=summary.scheduler_problems,
                )
                done = summary.opened
            else:
                ids = _close(
                    instance_id=instance.pk,
                    kind=kind,
                    now=now,
                    queue=queue,
                    announce=action == "close",
                    require_recovery=action == "close",
                )
                done = summary.closed
            if ids is not None:
                done.append((instance.name, kind))
                summary.deliveries.extend(ids)
    if summary.scheduler_problems:
        _log(
            logging.WARNING,
            "operational check: " + " ".join(summary.scheduler_problems),
            phase="scheduler",
            operation="operational_check",
        )
    return summary


def deliveries_send_now(delivery_ids: Iterable[int]) -> dict[int, str]:
    """Attempt deliveries in this process (the cron command: the cluster may be down); retries are scheduled."""
    return {delivery_id: alert_delivery_attempt(delivery_id=delivery_id) for delivery_id in delivery_ids}


def operational_unsent(*, older_than: timedelta = SCHEDULER_GRACE, now: datetime | None = None) -> list[int]:
    """Operational deliveries still pending with no attempt long after they were written (no worker took them)."""
    now = now or timezone.now()
    return list(
        AlertDelivery.objects.filter(
            event_kind__in=OPERATIONAL_EVENTS,
            status=DeliveryStatusChoices.PENDING,
            attempts=0,
            next_attempt_at__isnull=True,
            created_at__lt=now - older_than,
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )

"""Running account syncs: the seed's sync_type decision table, sessions and their records.

``accountsync`` knows how to sync one instance; this module decides whether that sync is
tracked by a session, and moves records and sessions through their state machines
(docs/architecture.md). Classified failures come back as result dicts, as in the seed; only
malformed requests from our own callers (bad type, missing user) raise ``SyncRequestError``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accountsync.services import SyncCancelled, account_sync_run
from instances.models import Instance
from sync.hooks import PostSyncEvent, post_sync_announce
from sync.leases import lease_acquire, lease_release, lease_release_for_session
from sync.models import (
    SESSION_SYNC_TYPES,
    SyncInstanceRecord,
    SyncRecordStatusChoices,
    SyncSession,
    SyncSessionStatusChoices,
    SyncTypeChoices,
)

logger = logging.getLogger(__name__)

Progress = Callable[[int, int, SyncInstanceRecord, dict[str, Any] | None], None]


class SyncRequestError(ValueError):
    """A caller asked for something the decision table cannot do (a usage error, not a sync failure)."""


class SyncBrokerError(RuntimeError):
    """The session was created but its tasks could not be queued: nothing half-started survives.

    Raised after the records that were not queued have been failed with ``error_kind="broker"``
    and the session finalized, so the caller only has to report it (API 503, CLI exit 3,
    an admin error message). ``session_id`` names the (now ended) session.
    """

    def __init__(self, message: str, *, session_id: str, not_queued: int) -> None:
        super().__init__(message)
        self.session_id = session_id
        self.not_queued = not_queued


def _failure(instance_name: str, message: str, error_kind: str, **extra: Any) -> dict[str, Any]:
    return {
        "success": False,
        "message": message,
        "synced_count": 0,
        "added_count": 0,
        "modified_count": 0,
        "removed_count": 0,
        "details": {},
        "error_kind": error_kind,
        "instance": instance_name,
        **extra,
    }


def _log_extra(
    instance: Instance, sync_type: str, session_id: uuid.UUID | None, phase: str, **more: Any
) -> dict[str, Any]:
    """The structured keys config.logging renders (module, operation, instance_id, ...)."""
    return {
        "wf": {
            "module": "sync",
            "operation": "sync_accounts",
            "instance_id": instance.pk,
            "db_type": instance.db_type,
            "session_id": str(session_id) if session_id else None,
            "sync_type": sync_type,
            "phase": phase,
            **more,
        }
    }


def sync_accounts(
    *,
    instance: Instance,
    sync_type: str,
    session_id: uuid.UUID | str | None = None,
    created_by: Any = None,
    force: bool = False,
) -> dict[str, Any]:
    """Sync one instance following the seed's decision table.

    ``manual_single`` runs with no session. The session types reuse ``session_id`` (which
    must exist) or create a new session, which needs ``created_by`` except for
    ``scheduled_task``. Any other type is run as ``manual_single`` with a warning, as the
    seed does, so an upstream typo degrades to an untracked sync instead of no sync.
    """
    if sync_type not in SyncTypeChoices.values:
        logger.warning(
            "unknown sync_type %r for instance %s: running it as manual_single (no session)",
            sync_type,
            instance.name,
            extra=_log_extra(instance, str(sync_type), None, "dispatch"),
        )
        sync_type = SyncTypeChoices.MANUAL_SINGLE
    if sync_type == SyncTypeChoices.MANUAL_SINGLE:
        holder = f"single:{uuid.uuid4().hex}"
        lease = lease_acquire(instance_id=instance.pk, holder=holder)
        if not lease.acquired:
            return _failure(instance.name, _busy_message(instance.name, lease.session_id), "conflict", session_id=None)
        try:
            result = _engine_run(instance=instance, sync_type=sync_type, session_id=None, force=force)
        finally:
            lease_release(instance_id=instance.pk, holder=holder)
        result["session_id"] = None
        return result

    if session_id is not None:
        session = SyncSession.objects.filter(session_id=session_id).first()
        if session is None:
            return _failure(
                instance.name,
                f"Cannot sync instance {instance.name}: sync session {session_id} does not exist; "
                "start a new session or pass an existing session id.",
                "configuration",
                session_id=str(session_id),
            )
        if session.status != SyncSessionStatusChoices.RUNNING:
            return _failure(
                instance.name,
                f"Cannot sync instance {instance.name} in sync session {session_id}: the session is already "
                f"{session.status}; start a new session.",
                "cancelled" if session.status == SyncSessionStatusChoices.CANCELLED else "configuration",
                session_id=str(session.session_id),
            )
    else:
        session = _session_create(instances=[instance], sync_type=sync_type, created_by=created_by)
    record, _ = SyncInstanceRecord.objects.get_or_create(
        session=session, instance=instance, defaults={"instance_name": instance.name}
    )
    return _record_run(session=session, record=record, force=force)


def _engine_run(
    *,
    instance: Instance,
    sync_type: str,
    session_id: uuid.UUID | None,
    force: bool,
    before_apply: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """account_sync_run as a result dict, announced to the post-sync hooks when it applied.

    A bug in it still yields a classified failure, never a raise; a failing hook is
    logged by ``post_sync_announce`` and never fails the sync.
    """
    try:
        outcome = account_sync_run(instance=instance, session_id=session_id, force=force, before_apply=before_apply)
        result = outcome.as_dict()
        if outcome.success:
            inventory = outcome.details.get("inventory") or {}
            post_sync_announce(
                PostSyncEvent(
                    instance=instance,
                    session_id=session_id,
                    result=result,
                    changed_account_ids=frozenset(outcome.changed_account_ids),
                    catalog_unchanged=bool(inventory.get("catalog_unchanged")),
                )
            )
        return result
    except Exception:
        logger.exception(
            "unexpected error syncing instance %s",
            instance.name,
            extra=_log_extra(instance, sync_type, session_id, "error"),
        )
        where = f" for session {session_id}" if session_id else ""
        return _failure(
            instance.name,
            f"Sync of instance {instance.name} failed with an internal error; see the server log{where}.",
            "internal",
        )


def _record_run(*, session: SyncSession, record: SyncInstanceRecord, force: bool) -> dict[str, Any]:
    """pending -> running -> completed|failed for one record, then try to finalize the session."""
    instance = record.instance
    sid = str(session.session_id)
    if instance is None:
        message = f"Instance {record.instance_name} was deleted before session {sid} reached it; nothing to sync."
        if record.mark_running():
            record.mark_failed(error_kind="configuration", error_message=message)
        session.finalize()
        return _failure(record.instance_name, message, "configuration", session_id=sid)
    if not record.mark_running():
        record.refresh_from_db(fields=["status"])
        if record.status == SyncRecordStatusChoices.CANCELLED:
            session.finalize()
            return _failure(
                instance.name,
                f"Sync of instance {instance.name} was cancelled with session {sid}.",
                "cancelled",
                session_id=sid,
            )
        return _failure(
            instance.name,
            f"Instance {instance.name} is already {record.status} in session {sid}; "
            "start a new session (or retry failed) to sync it again.",
            "configuration",
            session_id=sid,
        )

    holder = f"record:{record.pk}"
    lease = lease_acquire(instance_id=instance.pk, holder=holder, session_id=sid)
    if not lease.acquired:
        message = _busy_message(instance.name, lease.session_id)
        record.mark_failed(error_kind="conflict", error_message=message)
        session.finalize()
        return _failure(instance.name, message, "conflict", session_id=sid, record_id=record.pk)
    try:
        return _record_run_leased(session=session, record=record, instance=instance, force=force)
    finally:
        lease_release(instance_id=instance.pk, holder=holder)


def _busy_message(instance_name: str, session_id: str | None) -> str:
    by = f"session {session_id}" if session_id else "a manual single-instance sync"
    return f"Instance {instance_name} is already being synced by {by}; try again when it has finished."


def _record_run_leased(
    *, session: SyncSession, record: SyncInstanceRecord, instance: Instance, force: bool
) -> dict[str, Any]:
    """The body of a record run, once this worker holds the instance's lease."""
    sid = str(session.session_id)

    def before_apply(phase: str) -> None:
        if not record.heartbeat():
            raise SyncCancelled(f"session {sid} was cancelled before the {phase} phase of {instance.name}")

    started = time.monotonic()
    result = _engine_run(
        instance=instance,
        sync_type=session.sync_type,
        session_id=session.session_id,
        force=force,
        before_apply=before_apply,
    )
    if result["success"]:
        record.mark_completed(
            synced=result.get("synced_count", 0),
            created=result.get("added_count", 0),
            updated=result.get("modified_count", 0),
            deleted=result.get("removed_count", 0),
            details=result.get("details") or {},
        )
    else:
        record.mark_failed(
            error_kind=result.get("error_kind") or "internal",
            error_message=result.get("message") or f"Sync of instance {instance.name} failed.",
            details=result.get("details") or {},
        )
    logger.info(
        "instance %s synced in session %s: %s",
        instance.name,
        sid,
        "ok" if result["success"] else result.get("error_kind"),
        extra=_log_extra(
            instance,
            session.sync_type,
            session.session_id,
            "record",
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        ),
    )
    session.finalize()
    result.update(session_id=sid, record_id=record.pk, instance=instance.name, instance_id=instance.pk)
    return result


def _session_create(
    *, instances: Iterable[Instance], sync_type: str, created_by: Any, retry_of: SyncSession | None = None
) -> SyncSession:
    if sync_type not in SESSION_SYNC_TYPES:
        raise SyncRequestError(
            f"sync type {sync_type!r} cannot have a session; use one of "
            f"{', '.join(sorted(SESSION_SYNC_TYPES))}, or manual_single without a session."
        )
    if created_by is None and sync_type != SyncTypeChoices.SCHEDULED_TASK:
        raise SyncRequestError(
            f"a {sync_type} session records who started it: pass created_by (only scheduled_task runs without a user)."
        )
    instances = list(instances)
    if not instances:
        raise SyncRequestError("a sync session needs at least one instance.")
    with transaction.atomic():
        session = SyncSession.objects.create(
            sync_type=sync_type, created_by=created_by, total_instances=len(instances), retry_of=retry_of
        )
        SyncInstanceRecord.objects.bulk_create(
            SyncInstanceRecord(session=session, instance=inst, instance_name=inst.name) for inst in instances
        )
    return session


def sync_session_start(
    *, instances: Iterable[Instance], sync_type: str, created_by: Any, enqueue: bool = True, force: bool = False
) -> SyncSession:
    """Create a session and one pending record per instance, atomically, then hand them to workers.

    With ``enqueue`` (the default) one django-q2 task per record is queued once the
    transaction commits (``group`` = the session id), so workers never see a record that
    does not exist yet and a rolled-back start queues nothing. ``enqueue=False`` leaves
    the records for ``sync_session_run`` in this process.
    """
    session = _session_create(instances=instances, sync_type=sync_type, created_by=created_by)
    if enqueue:
        _enqueue_records(session, force=force)
    return session


def _enqueue_records(session: SyncSession, *, force: bool = False) -> None:
    from django_q.tasks import async_task

    record_ids = list(
        session.records.filter(status=SyncRecordStatusChoices.PENDING).order_by("pk").values_list("pk", "instance_name")
    )
    group = str(session.session_id)

    def enqueue() -> None:
        for record_id, name in record_ids:
            async_task(
                "sync.tasks.run_sync_record", record_id, force, group=group, task_name=f"sync {name} [{group[:8]}]"
            )

    transaction.on_commit(enqueue)


def sync_record_execute(*, record_id: int, force: bool = False) -> dict[str, Any]:
    """Run one record for a worker; a record that is no longer pending is left alone.

    django-q2 delivers at least once, so the same task can arrive twice: the second
    delivery finds the record running or terminal and reports that instead of syncing.
    """
    record = SyncInstanceRecord.objects.select_related("session", "instance").filter(pk=record_id).first()
    if record is None:
        return _failure(
            "?", f"sync record {record_id} does not exist (deleted session?); nothing to do.", "configuration"
        )
    if record.status != SyncRecordStatusChoices.PENDING:
        return {
            **_failure(
                record.instance_name,
                f"record {record_id} of {record.instance_name} is already {record.status}; nothing to do.",
                "duplicate",
            ),
            "success": record.status == SyncRecordStatusChoices.COMPLETED,
            "duplicate": True,
            "session_id": str(record.session.session_id),
        }
    return _record_run(session=record.session, record=record, force=force)


def sync_scheduled_start() -> SyncSession | None:
    """Start the daily ``scheduled_task`` session over every active instance (None if there is none)."""
    instances = list(Instance.objects.filter(is_active=True).order_by("name"))
    if not instances:
        logger.info(
            "scheduled sync skipped: no active instance", extra={"wf": {"module": "sync", "operation": "scheduled"}}
        )
        return None
    return sync_session_start(instances=instances, sync_type=SyncTypeChoices.SCHEDULED_TASK, created_by=None)


def sync_reap(*, stale_after: int | None = None) -> int:
    """Fail running records whose worker stopped beating; release their leases; finalize sessions.

    A record beats when it starts and between phases, so one that has been silent for
    longer than the longest phase lost its worker (killed, crashed, host gone). Each is
    failed with one conditional UPDATE, so a record that finishes meanwhile is left alone.
    """
    limit = stale_after if stale_after is not None else settings.WHALEFALL_STALE_SECONDS
    now = timezone.now()
    cutoff = now - timedelta(seconds=limit)
    stale = list(
        SyncInstanceRecord.objects.filter(
            status=SyncRecordStatusChoices.RUNNING, heartbeat_at__lt=cutoff
        ).select_related("session")
    )
    reaped = 0
    for record in stale:
        silent = int((now - record.heartbeat_at).total_seconds())
        if record.mark_failed(
            error_kind="timeout",
            error_message=f"worker lost: no heartbeat from the sync of {record.instance_name} for {silent}s "
            f"(limit {limit}s); the worker was killed or crashed. Retry failed to sync it again.",
        ):
            reaped += 1
            if record.instance_id:
                lease_release(instance_id=record.instance_id, holder=f"record:{record.pk}")
            logger.warning(
                "reaped stale record %s of %s",
                record.pk,
                record.instance_name,
                extra={
                    "wf": {
                        "module": "sync",
                        "operation": "reap",
                        "instance_id": record.instance_id,
                        "session_id": str(record.session.session_id),
                        "phase": "reap",
                    }
                },
            )
        record.session.finalize()
    # sessions whose records all ended but that were never finalized (a worker died between the two)
    for session in SyncSession.objects.filter(status=SyncSessionStatusChoices.RUNNING, updated_at__lt=cutoff):
        if session.finalize():
            lease_release_for_session(session_id=str(session.session_id))
    return reaped


def sync_session_run(*, session: SyncSession, force: bool = False, progress: Progress | None = None) -> dict[str, Any]:
    """Run a session's pending records in order, in this process, then finalize it.

    ``progress`` is called before (result None) and after each record so a command can
    show a live line per instance.
    """
    records = list(
        session.records.filter(status=SyncRecordStatusChoices.PENDING).select_related("instance").order_by("pk")
    )
    results = []
    for index, record in enumerate(records, start=1):
        if progress:
            progress(index, len(records), record, None)
        result = _record_run(session=session, record=record, force=force)
        results.append(result)
        if progress:
            progress(index, len(records), record, result)
    session.finalize()
    session.refresh_from_db()
    return {
        "session_id": str(session.session_id),
        "status": session.status,
        "total_instances": session.total_instances,
        "successful_instances": session.successful_instances,
        "failed_instances": session.failed_instances,
        "results": results,
    }


def sync_session_cancel(*, session: SyncSession) -> bool:
    """Cancel a running session and its pending records; running records stop before applying.

    Returns False when the session had already ended (nothing changed).
    """
    with transaction.atomic():
        if not session.mark_cancelled():
            return False
        now = timezone.now()
        SyncInstanceRecord.objects.filter(session=session, status=SyncRecordStatusChoices.PENDING).update(
            status=SyncRecordStatusChoices.CANCELLED, completed_at=now, updated_at=now
        )
    return True


def sync_session_retry_failed(*, session: SyncSession, created_by: Any, enqueue: bool = True) -> SyncSession:
    """Start a new session (``retry_of`` set) for the instances whose record failed."""
    instances = [
        r.instance
        for r in session.records.filter(status=SyncRecordStatusChoices.FAILED, instance__isnull=False)
        .select_related("instance")
        .order_by("pk")
    ]
    if not instances:
        raise SyncRequestError(f"session {session.session_id} has no failed instance that still exists to retry.")
    retry = _session_create(instances=instances, sync_type=session.sync_type, created_by=created_by, retry_of=session)
    if enqueue:
        _enqueue_records(retry)
    return retry

"""Running account syncs: the seed's sync_type decision table, sessions and their records.

``accountsync`` knows how to sync one instance; this module decides whether that sync is
tracked by a session, and moves records and sessions through their state machines
(docs/architecture.md). Classified failures come back as result dicts, as in the seed; only
malformed requests from our own callers (bad type, missing user) raise ``SyncRequestError``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Exists, F, Q
from django.utils import timezone

from accountsync.services import ApplyFence, SyncCancelled, SyncResult, account_sync_run
from audit.models import AuditKind, AuditVia
from audit.services import audit_record
from config.db import on_fresh_connection
from instances.models import Instance
from sync.heartbeat import Heartbeat, HeartbeatGroup
from sync.hooks import PostSyncEvent, post_sync_announce
from sync.leases import InstanceLease, lease_acquire, lease_fence, lease_release, lease_release_for_session
from sync.models import (
    BROKER_REFUSED,
    INSTANCE_BUSY,
    INSTANCE_BUSY_SINGLE,
    INSTANCE_DELETED,
    PROCESS_STOPPED,
    SESSION_SYNC_TYPES,
    SYNC_FAILED,
    TASK_LOST,
    WORKER_LOST,
    SyncInstanceRecord,
    SyncRecordStatusChoices,
    SyncSession,
    SyncSessionStatusChoices,
    SyncTypeChoices,
    coded,
    record_session_running,
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
    via: str | None = None,
) -> dict[str, Any]:
    """Sync one instance following the seed's decision table.

    ``manual_single`` runs with no session. The session types reuse ``session_id`` (which
    must exist) or create a new session, which needs ``created_by`` except for
    ``scheduled_task``. Any other type is run as ``manual_single`` with a warning, as the
    seed does, so an upstream typo degrades to an untracked sync instead of no sync.
    A sync that starts here (``manual_single``, or a new session) is an audit event by
    ``created_by`` through ``via`` (see ``_audit_started``).
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
        audit_record(
            AuditKind.SYNC_STARTED,
            actor=created_by,
            via=via,
            obj=instance,
            details={"sync_type": sync_type, "instance_count": 1, "instances": [instance.name], "force": force},
        )
        holder = f"single:{uuid.uuid4().hex}"
        lease = lease_acquire(instance_id=instance.pk, holder=holder)
        if not lease.acquired:
            return _failure(instance.name, _busy_message(instance.name, lease.session_id), "conflict", session_id=None)
        try:
            with Heartbeat(instance_id=instance.pk, holder=holder):
                result = _engine_run(
                    instance=instance,
                    sync_type=sync_type,
                    session_id=None,
                    force=force,
                    fence=LeaseFence(instance_id=instance.pk, holder=holder),
                )
        finally:
            on_fresh_connection(lambda: lease_release(instance_id=instance.pk, holder=holder), what="lease release")
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
        _audit_started(AuditKind.SYNC_STARTED, session, [instance], actor=created_by, via=via, force=force)
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
    fence: ApplyFence | None = None,
) -> dict[str, Any]:
    """account_sync_run as a result dict, announced to the post-sync hooks when it applied.

    A bug in it still yields a classified failure, never a raise; a failing hook is
    logged by ``post_sync_announce`` and never fails the sync.
    """
    try:
        outcome = account_sync_run(
            instance=instance, session_id=session_id, force=force, before_apply=before_apply, fence=fence
        )
        result = outcome.as_dict()
        if outcome.message_code:  # for the record: its message in the reader's language
            result["message_code"], result["message_params"] = outcome.message_code, outcome.message_params
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


@dataclass(frozen=True)
class _BatchContext:
    """How a record runs inside a batch (``sync_batch_execute``) rather than alone.

    ``beats`` keeps it alive with the batch's one heartbeat thread, ``apply_gate`` bounds
    how many of the batch's records apply at once, and the batch finalizes each session
    once at its end instead of after every record.
    """

    beats: HeartbeatGroup
    apply_gate: threading.Semaphore


class _ApplyGate:
    """A record's turn at the batch's apply semaphore: taken before the apply phase, given back once."""

    def __init__(self, semaphore: threading.Semaphore | None) -> None:
        self.semaphore = semaphore
        self.held = False

    def enter(self) -> None:
        if self.semaphore is not None and not self.held:
            self.semaphore.acquire()
            self.held = True

    def leave(self) -> None:
        if self.semaphore is not None and self.held:
            self.held = False
            self.semaphore.release()


def _record_run(
    *, session: SyncSession, record: SyncInstanceRecord, force: bool, batch: _BatchContext | None = None
) -> dict[str, Any]:
    """pending -> running -> completed|failed for one record, then try to finalize the session.

    In a batch the record beats with the batch's heartbeat, applies when the batch's gate
    lets it, and leaves finalizing the session to the batch.
    """
    instance = record.instance
    sid = str(session.session_id)
    finalize = session.finalize if batch is None else (lambda: False)
    if instance is None:
        failure = coded(INSTANCE_DELETED, instance=record.instance_name, session=sid)
        message = failure["error_message"]
        if record.mark_running():
            record.mark_failed(error_kind="configuration", **failure)
        finalize()
        return _failure(record.instance_name, message, "configuration", session_id=sid)
    # the usual case in one UPDATE: started, and the session still runs (the fetch's cancel check)
    checked = record.mark_running(while_session_runs=True)
    if not checked and not record.mark_running():
        record.refresh_from_db(fields=["status"])
        if record.status == SyncRecordStatusChoices.CANCELLED:
            finalize()
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
        failure = _busy(instance.name, lease.session_id)
        message = failure["error_message"]
        record.mark_failed(error_kind="conflict", **failure)
        finalize()
        return _failure(instance.name, message, "conflict", session_id=sid, record_id=record.pk)
    beating = (
        Heartbeat(instance_id=instance.pk, holder=holder, record_id=record.pk)
        if batch is None
        else batch.beats.member(instance_id=instance.pk, holder=holder, record_id=record.pk)
    )
    try:
        with beating:
            return _record_run_leased(
                session=session,
                record=record,
                instance=instance,
                force=force,
                holder=holder,
                gate=_ApplyGate(batch.apply_gate if batch else None),
                finalize=finalize,
                fetch_checked=checked,
            )
    finally:
        on_fresh_connection(lambda: lease_release(instance_id=instance.pk, holder=holder), what="lease release")


def _busy(instance_name: str, session_id: str | None) -> dict[str, Any]:
    if session_id:
        return coded(INSTANCE_BUSY, instance=instance_name, session=str(session_id))
    return coded(INSTANCE_BUSY_SINGLE, instance=instance_name)


def _busy_message(instance_name: str, session_id: str | None) -> str:
    return _busy(instance_name, session_id)["error_message"]


class LeaseFence:
    """The apply's fence for a sync that holds an instance lease (and maybe a record).

    ``check`` runs first inside the apply's transaction: it locks the lease row (and the
    record's) and refuses when either is no longer ours. ``commit`` marks the record
    completed in that same transaction, so a committed apply always has a completed
    record and a rolled-back one never has.
    """

    def __init__(self, *, instance_id: int, holder: str, record: SyncInstanceRecord | None = None) -> None:
        self.instance_id = instance_id
        self.holder = holder
        self.record = record

    def check(self) -> str:
        if not lease_fence(instance_id=self.instance_id, holder=self.holder):
            return "this sync lost its lease on the instance (it expired and another sync took it over)"
        if self.record is not None and not self.record.fence():
            return f"sync record {self.record.pk} is no longer running (reaped or its session was cancelled)"
        return ""

    def commit_unchanged(self, result: SyncResult, *, catalog_digest: str) -> bool:
        """A no-change apply's fence and commit in one statement; False refuses (``check`` then says why).

        Why one conditional UPDATE is as safe as ``check`` + ``commit`` in a transaction: an
        unchanged catalog writes nothing but the record, so there is no data for the lease
        row's lock to keep consistent with it. The UPDATE completes the record only while it
        runs in a running session, our lease row is still ours, and the instance still has the
        digest the adapter compared (no other sync applied since: what ``_apply_unchanged``'s
        re-read proved). The conditions are subqueries on other tables (no join, see
        ``SyncInstanceRecord._transition``), and the UPDATE holds the record's row lock while it
        runs, so a reaper or canceller behind it then finds the record completed, as behind the
        fence's ``SELECT … FOR UPDATE``. It saves the lease UPDATE, the record lock, the digest
        read and the transaction around them. Without a record (``manual_single``): one read of
        the same lease and digest conditions.
        """
        lease = InstanceLease.objects.filter(instance_id=self.instance_id, holder=self.holder)
        digest = Exists(Instance.objects.filter(pk=self.instance_id, catalog_digest=catalog_digest))
        if self.record is None:
            return lease.filter(digest).exists()
        return self.record.mark_completed(
            synced=result.synced_count,
            created=result.added_count,
            updated=result.modified_count,
            deleted=result.removed_count,
            details=dict(result.details),  # a copy: the post-sync hooks add their summaries to result.details
            where=(Exists(lease), digest, record_session_running()),
        )

    def commit(self, result: SyncResult) -> None:
        if self.record is None:
            return
        done = self.record.mark_completed(
            synced=result.synced_count,
            created=result.added_count,
            updated=result.modified_count,
            deleted=result.removed_count,
            details=dict(result.details),  # a copy: the post-sync hooks add their summaries to result.details
        )
        if not done:  # cannot happen under the fence's lock; refuse rather than commit a contradiction
            raise RuntimeError(f"sync record {self.record.pk} left running before its apply committed")


def _record_run_leased(
    *,
    session: SyncSession,
    record: SyncInstanceRecord,
    instance: Instance,
    force: bool,
    holder: str,
    gate: _ApplyGate,
    finalize: Callable[[], bool],
    fetch_checked: bool = False,
) -> dict[str, Any]:
    """The body of a record run, once this worker holds the instance's lease.

    ``gate`` is taken before the apply phase's cancel check (so a record that waited for
    its turn still sees a cancel that came meanwhile) and given back once the apply and
    the post-sync hooks are done, whatever happened.

    ``fetch_checked``: ``mark_running`` already proved the session running (and set the
    heartbeat) a moment ago, only the lease taken since, so the fetch phase's beat is not
    sent again. Why that is safe: a cancel landing in that moment is still seen before
    anything is written, by the apply phase's check and by the apply's fence; what the
    cancel promises is that a running record stops before applying.
    """
    sid = str(session.session_id)

    def before_apply(phase: str) -> None:
        if phase == "apply":
            gate.enter()
        elif phase == "fetch" and fetch_checked:
            return
        if not record.heartbeat():
            record.refresh_from_db(fields=["status"])
            if record.status == SyncRecordStatusChoices.RUNNING:  # still ours: the session was cancelled
                raise SyncCancelled(f"session {sid} was cancelled before the {phase} phase of {instance.name}")
            raise SyncCancelled(
                f"sync record {record.pk} is already {record.status} (the reaper took it for a lost worker) "
                f"before the {phase} phase",
                error_kind="conflict",
            )

    started = time.monotonic()
    try:
        result = _engine_run(
            instance=instance,
            sync_type=session.sync_type,
            session_id=session.session_id,
            force=force,
            before_apply=before_apply,
            fence=LeaseFence(instance_id=instance.pk, holder=holder, record=record),
        )
    finally:
        gate.leave()
    if result["success"]:  # marked completed inside the apply's transaction; add what the post-sync hooks said
        details = result.get("details") or {}
        if details != record.details:
            on_fresh_connection(
                lambda: SyncInstanceRecord.objects.filter(pk=record.pk).update(details=details), what="record details"
            )
    else:
        on_fresh_connection(
            lambda: record.mark_failed(
                error_kind=result.get("error_kind") or "internal",
                details=result.get("details") or {},
                **_result_failure(result, instance.name),
            ),
            what="record outcome",
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
    on_fresh_connection(finalize, what="session finalize")
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


def _audit_started(
    kind: str,
    session: SyncSession,
    instances: list[Instance],
    *,
    actor: Any,
    via: str | None,
    force: bool = False,
    **details: Any,
) -> None:
    """Record who started (or retried) ``session`` and through what; never fails the start.

    ``via`` names the entry point (``api``, ``cli``, ``schedule``); without it ``audit_record``
    reads it off the request being handled, else ``admin`` when there is a user.
    """
    audit_record(
        kind,
        actor=actor,
        via=via,
        obj=session,
        object_id=str(session.session_id),
        object_repr=f"{session.sync_type} session {session.session_id}",
        details={
            "session_id": str(session.session_id),
            "sync_type": session.sync_type,
            "instance_count": len(instances),
            "instances": [i.name for i in instances[:50]],
            "force": force,
            **details,
        },
    )


def sync_session_start(
    *,
    instances: Iterable[Instance],
    sync_type: str,
    created_by: Any,
    enqueue: bool = True,
    force: bool = False,
    via: str | None = None,
) -> SyncSession:
    """Create a session and one pending record per instance, atomically, then hand them to workers.

    With ``enqueue`` (the default) the records are queued as django-q2 tasks once the
    transaction commits (``group`` = the session id; one task per batch of records, see
    ``_enqueue``), so workers never see a record that does not exist yet and a rolled-back
    start queues nothing. ``enqueue=False`` leaves the records for ``sync_session_run`` in
    this process. The start is an audit event (``created_by``, ``via``), written before the
    tasks are queued.
    """
    instances = list(instances)
    session = _session_create(instances=instances, sync_type=sync_type, created_by=created_by)
    _audit_started(AuditKind.SYNC_STARTED, session, instances, actor=created_by, via=via, force=force)
    if enqueue:
        _enqueue_records(session, force=force)
    return session


def _enqueue_records(session: SyncSession, *, force: bool = False) -> None:
    """Queue the session's pending records (in batches, see ``_enqueue``) once its rows are committed.

    Starting includes queueing: when the broker refuses, the records not queued are failed
    (``error_kind="broker"``), the session is finalized and ``SyncBrokerError`` reaches the
    caller, so no half-started session is left behind. Outside a transaction (every
    caller's case) ``on_commit`` runs at once and the error surfaces from this call.
    """
    record_ids = list(
        session.records.filter(status=SyncRecordStatusChoices.PENDING).order_by("pk").values_list("pk", "instance_name")
    )
    transaction.on_commit(lambda: _enqueue(session, record_ids, force=force))


_clock = time.monotonic  # the batch's start deadline reads this (tests replace it)

# A session is cut into at least this many tasks per worker before batches grow: tasks of
# uneven length then still even out over the workers, and a small session spreads over all of them.
TASKS_PER_WORKER = 4


def batch_size(records: int) -> int:
    """How many records one task carries: ``WHALEFALL_BATCH_SIZE`` at most, 1 for a small session.

    Why batches: a django-q2 task costs a broker round, a pickled result row and a process
    hand-off, which dominates a no-change re-sync of a large fleet; a batch pays it once and
    overlaps its records' remote reads (``sync_batch_execute``). Why not one batch per
    worker: a batch ends with its slowest record, so smaller ones keep the workers evenly fed.
    """
    workers = max(1, int(settings.Q_CLUSTER.get("workers") or 1))
    return max(1, min(settings.WHALEFALL_BATCH_SIZE, records // (workers * TASKS_PER_WORKER)))


def _enqueue(session: SyncSession, record_ids: list[tuple[int, str]], *, force: bool) -> None:
    """Queue the records as tasks: ``run_sync_batch`` per batch, ``run_sync_record`` for a batch of one."""
    from django_q.tasks import async_task

    group = str(session.session_id)
    pending = SyncInstanceRecord.objects.filter(
        pk__in=[pk for pk, _ in record_ids], status=SyncRecordStatusChoices.PENDING
    )
    pending.update(queued_at=timezone.now(), queue_attempts=F("queue_attempts") + 1)
    size = batch_size(len(record_ids))
    queued = 0
    try:
        for start in range(0, len(record_ids), size):
            chunk = record_ids[start : start + size]
            (first_pk, first), more = chunk[0], len(chunk) - 1
            if not more:
                task_name = f"sync {first} [{group[:8]}]"
                async_task("sync.tasks.run_sync_record", first_pk, force, group=group, task_name=task_name)
            else:
                task_name = f"sync {first} +{more} [{group[:8]}]"
                async_task(
                    "sync.tasks.run_sync_batch", [pk for pk, _ in chunk], force, group=group, task_name=task_name
                )
            queued += len(chunk)
    except Exception as exc:
        _enqueue_failed(session, [pk for pk, _ in record_ids[queued:]], queued, exc)


def _result_failure(result: dict[str, Any], instance_name: str) -> dict[str, Any]:
    """A failed engine result's message, code and parameters for the record (the engine prefixes the name)."""
    message = result.get("message")
    if not message:
        return coded(SYNC_FAILED, instance=instance_name)
    code = result.get("message_code") or ""
    params = dict(result.get("message_params") or {})
    if code and message.startswith(f"{instance_name}: "):
        params["instance_prefix"] = instance_name
    return {"error_message": message, "error_code": code, "error_params": params if code else {}}


def _enqueue_failed(session: SyncSession, not_queued: list[int], queued: int, exc: Exception) -> None:
    sid = str(session.session_id)
    reason = f"{type(exc).__name__}: {str(exc)[:300].rstrip('. ')}"
    failed = SyncInstanceRecord.objects.filter(pk__in=not_queued, status=SyncRecordStatusChoices.PENDING).update(
        status=SyncRecordStatusChoices.FAILED,
        completed_at=timezone.now(),
        updated_at=timezone.now(),
        error_kind="broker",
        **coded(BROKER_REFUSED, reason=reason),
    )
    session.finalize()
    logger.error(
        "session %s: %d of %d task(s) could not be queued (%s)",
        sid,
        len(not_queued),
        len(not_queued) + queued,
        reason,
        extra={"wf": {"module": "sync", "operation": "enqueue", "session_id": sid, "phase": "enqueue"}},
    )
    raise SyncBrokerError(
        f"Sync session {sid}: the task queue is unreachable ({reason}); {failed} instance(s) were not queued "
        f"and are marked failed{f', {queued} were queued and will run' if queued else ''}. "
        "Check the broker, then retry the failed instances.",
        session_id=sid,
        not_queued=failed,
    ) from exc


def sync_record_execute(*, record_id: int, force: bool = False, batch: _BatchContext | None = None) -> dict[str, Any]:
    """Run one record for a worker; a record that is no longer pending is left alone.

    django-q2 delivers at least once, so the same task can arrive twice: the second
    delivery finds the record running or terminal and reports that instead of syncing.
    ``batch`` is given by ``sync_batch_execute`` for each record of its batch.
    """
    record = (
        SyncInstanceRecord.objects.select_related("session", "instance", "instance__credential")
        .filter(pk=record_id)
        .first()
    )
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
            "record_id": record.pk,
        }
    result = _record_run(session=record.session, record=record, force=force, batch=batch)
    result.setdefault("record_id", record.pk)
    return result


def sync_batch_execute(*, record_ids: list[int], force: bool = False) -> dict[str, Any]:
    """Run a batch of records in this worker process, their remote reads overlapping.

    Up to ``WHALEFALL_FETCH_CONCURRENCY`` records are in flight at once, each on its own
    thread (with its own database connection) running exactly what ``sync_record_execute``
    runs for one record: its own duplicate check, lease, cancel checks, fence and failure
    classification, so a record's failure, cancel or lost lease touches no other record.
    At most ``WHALEFALL_APPLY_CONCURRENCY`` of them apply at once, so the app database is
    not flooded while the fetches wait on the network. One heartbeat thread beats every
    record in flight. Each session is finalized once, after the batch's last record.

    A record is started only in the first half of the task timeout (``Q_TIMEOUT``); the
    ones left then are queued again as their own tasks, so a batch of slow servers never
    runs into the timeout that would kill its worker mid-sync.
    """
    ids = list(dict.fromkeys(record_ids))
    results: dict[int, dict[str, Any]] = {}
    left: list[int] = []
    timeout = settings.Q_CLUSTER.get("timeout")
    start_until = _clock() + timeout / 2 if timeout else math.inf

    with HeartbeatGroup(name=f"batch-{ids[0] if ids else 0}") as beats:
        gate = threading.BoundedSemaphore(max(1, settings.WHALEFALL_APPLY_CONCURRENCY))
        batch = _BatchContext(beats=beats, apply_gate=gate)

        def run(record_id: int) -> None:
            if _clock() > start_until:
                left.append(record_id)
                return
            try:
                results[record_id] = sync_record_execute(record_id=record_id, force=force, batch=batch)
            except Exception:  # a broken database connection, a bug: this record only; the reaper ends it
                logger.exception(
                    "sync record %s failed unexpectedly in its batch",
                    record_id,
                    extra={"wf": {"module": "sync", "operation": "batch", "phase": "error"}},
                )
                results[record_id] = {
                    **_failure("?", f"sync record {record_id} failed with an internal error.", "internal"),
                    "record_id": record_id,
                }

        _run_bounded(ids, run, settings.WHALEFALL_FETCH_CONCURRENCY)

    for session in SyncSession.objects.filter(
        pk__in=SyncInstanceRecord.objects.filter(pk__in=ids).values("session_id"),
        status=SyncSessionStatusChoices.RUNNING,
    ):
        on_fresh_connection(session.finalize, what="session finalize")
    requeued = _requeue_left(left, force=force)
    outcomes = [results[pk] for pk in ids if pk in results]
    return {
        "records": len(ids),
        "ok": sum(1 for r in outcomes if r.get("success") and not r.get("duplicate")),
        "failed": sum(1 for r in outcomes if not r.get("success") and not r.get("duplicate")),
        "duplicate": sum(1 for r in outcomes if r.get("duplicate")),
        "requeued": requeued,
        "results": [
            {k: r.get(k) for k in ("record_id", "instance", "success", "error_kind", "message")} for r in outcomes
        ],
    }


def _run_bounded(items: list[int], func: Callable[[int], None], concurrency: int) -> None:
    """Call ``func`` on every item, at most ``concurrency`` at once, each on a thread of this pool.

    Items start in order. Every thread exists before the first item starts, so the pool's
    size is fixed from the start. Each thread closes its database connections when it ends.
    """
    work: queue.SimpleQueue[int] = queue.SimpleQueue()
    for item in items:
        work.put(item)
    go = threading.Event()

    def loop() -> None:
        go.wait()
        try:
            while True:
                try:
                    item = work.get_nowait()
                except queue.Empty:
                    return
                func(item)
        finally:
            connections.close_all()  # this thread's connections only

    threads = [
        threading.Thread(target=loop, name=f"wf-sync-{n}", daemon=True)
        for n in range(max(1, min(concurrency, len(items))))
    ]
    for thread in threads:
        thread.start()
    go.set()
    for thread in threads:
        thread.join()


def _requeue_left(record_ids: list[int], *, force: bool) -> int:
    """Queue again the records a batch did not start in time (still pending); returns how many."""
    if not record_ids:
        return 0
    records = (
        SyncInstanceRecord.objects.filter(pk__in=record_ids, status=SyncRecordStatusChoices.PENDING)
        .select_related("session")
        .order_by("pk")
    )
    by_session: dict[int, tuple[SyncSession, list[tuple[int, str]]]] = {}
    for record in records:
        by_session.setdefault(record.session_id, (record.session, []))[1].append((record.pk, record.instance_name))
    requeued = 0
    for session, pairs in by_session.values():
        # a broker that refuses fails these records (error_kind broker) and finalizes the session
        with contextlib.suppress(SyncBrokerError):
            _enqueue(session, pairs, force=force)
            requeued += len(pairs)
    return requeued


def sync_scheduled_start() -> SyncSession | None:
    """Start the daily ``scheduled_task`` session over every active instance (None if there is none)."""
    instances = list(Instance.objects.filter(is_active=True).order_by("name"))
    if not instances:
        logger.info(
            "scheduled sync skipped: no active instance", extra={"wf": {"module": "sync", "operation": "scheduled"}}
        )
        return None
    return sync_session_start(
        instances=instances, sync_type=SyncTypeChoices.SCHEDULED_TASK, created_by=None, via=AuditVia.SCHEDULE
    )


def sync_reap(*, stale_after: int | None = None, pending_after: int | None = None) -> int:
    """Fail running records whose worker stopped beating; deal with pending records nobody runs.

    Running: the background heartbeat beats every few seconds in every phase, so a record
    silent for ``WHALEFALL_STALE_SECONDS`` lost its worker (killed, crashed, host gone). Each
    is failed with one conditional UPDATE, so a record that finishes meanwhile (its apply
    holds the row lock until it commits) is left alone. Pending: see ``_reap_pending``.
    Returns how many records were failed or re-queued.
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
            **coded(WORKER_LOST, instance=record.instance_name, silent=str(silent), limit=str(limit)),
        ):
            reaped += 1
            if record.instance_id:
                lease_release(instance_id=record.instance_id, holder=f"record:{record.pk}")
            _reap_log(record, "reaped stale record %s of %s")
        record.session.finalize()
    reaped += _reap_pending(now=now, stale_cutoff=cutoff, pending_after=pending_after)
    # sessions whose records all ended but that were never finalized (a worker died between the two)
    for session in SyncSession.objects.filter(status=SyncSessionStatusChoices.RUNNING, updated_at__lt=cutoff):
        if session.finalize():
            lease_release_for_session(session_id=str(session.session_id))
    return reaped


def _reap_log(record: SyncInstanceRecord, message: str) -> None:
    logger.warning(
        message,
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


def _reap_pending(*, now: Any, stale_cutoff: Any, pending_after: int | None) -> int:
    """Pending never stays pending, whatever the broker lost.

    A queued record whose task has not started ``WHALEFALL_PENDING_SECONDS`` after it was
    queued, while no worker is busy (no record running with a fresh heartbeat, none started
    within that time), was lost: a Redis broker hands tasks to a cluster that prefetches
    them into memory, and a cluster that dies loses them. It is queued again (a duplicate
    delivery is harmless: the task finds the record no longer pending), up to
    ``WHALEFALL_PENDING_REQUEUES`` times, then failed with ``error_kind="broker"``.
    Why "while no worker is busy": a long queue behind busy workers is not a loss.
    A record that was never queued belongs to a session run in one process (the CLI); it
    is failed once its session has shown no progress for the stale limit.
    """
    limit = pending_after if pending_after is not None else settings.WHALEFALL_PENDING_SECONDS
    pending_cutoff = now - timedelta(seconds=limit)
    open_pending = SyncInstanceRecord.objects.filter(
        status=SyncRecordStatusChoices.PENDING, session__status=SyncSessionStatusChoices.RUNNING
    )
    done = 0
    lost = list(open_pending.filter(queued_at__lt=pending_cutoff).select_related("session").order_by("pk"))
    if lost and not _workers_busy(now=now, since=pending_cutoff):
        tries = settings.WHALEFALL_PENDING_REQUEUES
        requeue: dict[SyncSession, list[tuple[int, str]]] = {}
        for record in lost:
            if record.queue_attempts > tries:
                if record.fail_pending(
                    error_kind="broker",
                    **coded(TASK_LOST, times=str(record.queue_attempts)),
                ):
                    done += 1
                    _reap_log(record, "failed lost pending record %s of %s")
                    record.session.finalize()
            else:
                requeue.setdefault(record.session, []).append((record.pk, record.instance_name))
        for session, record_ids in requeue.items():
            # a broker still down fails the records (error_kind broker) and finalizes the session
            with contextlib.suppress(SyncBrokerError):
                _enqueue(session, record_ids, force=False)
            done += len(record_ids)
    # never queued: a session run by one process that stopped (one progress check per session, not per record)
    unqueued = open_pending.filter(queued_at__isnull=True, created_at__lt=stale_cutoff)
    progressed = set(
        SyncInstanceRecord.objects.filter(session__in=unqueued.values("session"))
        .filter(Q(heartbeat_at__gte=stale_cutoff) | Q(completed_at__gte=stale_cutoff))
        .values_list("session_id", flat=True)
    )
    for record in unqueued.exclude(session__in=progressed).select_related("session"):
        if record.fail_pending(
            error_kind="timeout",
            **coded(PROCESS_STOPPED),
        ):
            done += 1
            _reap_log(record, "failed abandoned pending record %s of %s")
            record.session.finalize()
    return done


def _workers_busy(*, now: Any, since: Any) -> bool:
    """Some worker is running a sync now or started one since ``since``."""
    fresh = now - timedelta(seconds=3 * settings.WHALEFALL_HEARTBEAT_SECONDS)
    return SyncInstanceRecord.objects.filter(
        Q(status=SyncRecordStatusChoices.RUNNING, heartbeat_at__gte=fresh) | Q(started_at__gte=since)
    ).exists()


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


def sync_session_cancel(*, session: SyncSession, cancelled_by: Any = None, via: str | None = None) -> bool:
    """Cancel a running session and its pending records; running records stop before applying.

    Returns False when the session had already ended (nothing changed). A cancel is an audit
    event by ``cancelled_by`` (default: the user of the request being handled) through ``via``.
    """
    with transaction.atomic():
        if not session.mark_cancelled():
            return False
        now = timezone.now()
        cancelled = SyncInstanceRecord.objects.filter(session=session, status=SyncRecordStatusChoices.PENDING).update(
            status=SyncRecordStatusChoices.CANCELLED, completed_at=now, updated_at=now
        )
    audit_record(
        AuditKind.SYNC_CANCELLED,
        actor=cancelled_by,
        via=via,
        obj=session,
        object_id=str(session.session_id),
        object_repr=f"{session.sync_type} session {session.session_id}",
        details={
            "session_id": str(session.session_id),
            "sync_type": session.sync_type,
            "instance_count": session.total_instances,
            "pending_cancelled": cancelled,
        },
    )
    return True


def sync_session_retry_failed(
    *, session: SyncSession, created_by: Any, enqueue: bool = True, via: str | None = None
) -> SyncSession:
    """Start a new session (``retry_of`` set) for the instances whose record failed (an audit event)."""
    instances = [
        r.instance
        for r in session.records.filter(status=SyncRecordStatusChoices.FAILED, instance__isnull=False)
        .select_related("instance")
        .order_by("pk")
    ]
    if not instances:
        raise SyncRequestError(f"session {session.session_id} has no failed instance that still exists to retry.")
    retry = _session_create(instances=instances, sync_type=session.sync_type, created_by=created_by, retry_of=session)
    _audit_started(
        AuditKind.SYNC_RETRIED, retry, instances, actor=created_by, via=via, retry_of=str(session.session_id)
    )
    if enqueue:
        _enqueue_records(retry)
    return retry

"""Running account syncs: the seed's sync_type decision table, sessions and their records.

``accountsync`` knows how to sync one instance; this module decides whether that sync is
tracked by a session, and moves records and sessions through their state machines
(DESIGN.md §2, §4). Classified failures come back as result dicts, as in the seed; only
malformed requests from our own callers (bad type, missing user) raise ``SyncRequestError``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from accountsync.services import SyncCancelled, account_sync_run
from instances.models import Instance
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
        result = _engine_run(instance=instance, sync_type=sync_type, session_id=None, force=force)
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
    """account_sync_run as a result dict; a bug in it still yields a classified failure, never a raise."""
    try:
        return account_sync_run(
            instance=instance, session_id=session_id, force=force, before_apply=before_apply
        ).as_dict()
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

    def before_apply(phase: str) -> None:
        # One UPDATE is both heartbeat and cancel check: it only matches while the record
        # runs and its session is still running.
        alive = SyncInstanceRecord.objects.filter(
            pk=record.pk,
            status=SyncRecordStatusChoices.RUNNING,
            session__status=SyncSessionStatusChoices.RUNNING,
        ).update(heartbeat_at=timezone.now())
        if not alive:
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


def sync_session_start(*, instances: Iterable[Instance], sync_type: str, created_by: Any) -> SyncSession:
    """Create a session and one pending record per instance, atomically.

    Nothing runs yet: ``sync_session_run`` runs it in-process; the django-q2 issue adds a
    ``transaction.on_commit`` enqueue of one task per record here.
    """
    return _session_create(instances=instances, sync_type=sync_type, created_by=created_by)


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


def sync_session_retry_failed(*, session: SyncSession, created_by: Any) -> SyncSession:
    """Start a new session (``retry_of`` set) for the instances whose record failed."""
    instances = [
        r.instance
        for r in session.records.filter(status=SyncRecordStatusChoices.FAILED, instance__isnull=False)
        .select_related("instance")
        .order_by("pk")
    ]
    if not instances:
        raise SyncRequestError(f"session {session.session_id} has no failed instance that still exists to retry.")
    return _session_create(instances=instances, sync_type=session.sync_type, created_by=created_by, retry_of=session)

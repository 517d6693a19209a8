"""django-q2 entry points: take primary keys, call services, stay idempotent.

Why so thin: django-q2 delivers at least once and pickles arguments, so the
tasks receive ids, re-read state, and leave anything already terminal alone.
All decisions live in `sync.services`.
"""

from __future__ import annotations

from typing import Any


def run_sync_record(record_id: int, force: bool = False) -> dict[str, Any]:
    """Run one pending record of a session (a duplicate delivery finds it no longer pending)."""
    from sync.services import sync_record_execute

    return sync_record_execute(record_id=record_id, force=force)


def run_sync_batch(record_ids: list[int], force: bool = False) -> dict[str, Any]:
    """Run a batch of pending records of a session, their remote reads overlapping (each record as above)."""
    from sync.services import sync_batch_execute

    return sync_batch_execute(record_ids=record_ids, force=force)


def run_scheduled_sync() -> str | None:
    """The daily `scheduled_task` session over every active instance."""
    from sync.services import SyncBrokerError, sync_scheduled_start

    try:
        session = sync_scheduled_start()
    except SyncBrokerError as exc:  # the session is already ended and its records failed `broker`
        return exc.session_id
    return str(session.session_id) if session else None


def reap_stale_records() -> int:
    """Fail records whose worker stopped beating, and finalize their sessions."""
    from sync.services import sync_reap

    return sync_reap()

"""Post-sync hooks: how ``sync`` tells the features that an instance was applied.

Why a registry instead of calls: ``sync`` sits below the features that consume a sync
(findings, alerts, and those to come), so it may not import them. Each feature
subscribes from its ``AppConfig.ready()`` with ``config.registry.post_sync_hook_register``
and an explicit ``order``; ``post_sync_announce`` runs them in that order after the apply
has committed. A subscriber that raises is logged with its traceback and rolled back
to its own savepoint; the sync and the other subscribers carry on.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from config.logging import log_event
from config.registry import post_sync_hooks, record_failed_hooks
from instances.models import Instance

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PostSyncEvent:
    """What a subscriber is told about one applied instance.

    ``result`` is the sync's result dict (``SyncResult.as_dict()``), which becomes the
    record's ``details``: a subscriber may add its own summary under
    ``result["details"][<its hook name>]`` and must not change anything else.
    ``changed_account_ids`` are the accounts that got a change-log entry in this apply
    (added, removed, reactivated, privileges or attributes changed); empty when
    ``catalog_unchanged`` (the server's catalog equals the last applied one and nothing
    was written, but time-aware state may still have moved).
    ``memo`` is scratch space the subscribers of this one event share, so work two of them
    need (the instance's open snapshots and effective access:
    ``accountsync.effective_read.instance_effective``) is done once per event; each entry is
    keyed by what it was computed from (the catalog digest), so it is never reused stale.
    """

    instance: Instance
    session_id: uuid.UUID | None
    result: dict[str, Any]
    changed_account_ids: frozenset[int]
    catalog_unchanged: bool
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)


def post_sync_announce(event: PostSyncEvent) -> list[str]:
    """Run every subscriber in order; returns the names of those that failed (already logged)."""
    failed: list[str] = []
    for hook in post_sync_hooks():
        started = time.monotonic()
        try:
            with transaction.atomic():
                hook.func(event)
        except Exception as exc:
            failed.append(hook.name)
            log_event(
                logger,
                logging.ERROR,
                f"{event.instance.name}: post-sync hook {hook.name!r} failed ({type(exc).__name__}: {exc}); "
                "the sync itself succeeded and the other hooks ran",
                exc_info=True,
                module="sync",
                operation="post_sync_hook",
                instance_id=event.instance.pk,
                db_type=event.instance.db_type,
                session_id=event.session_id,
                phase=hook.name,
                duration_ms=int((time.monotonic() - started) * 1000),
            )
    return failed


def record_failed_announce(record_id: int) -> None:
    """Tell the subscribers that a record ended failed (called once its failure has committed).

    Why here and not only from the worker: a record fails in a worker, in one process
    (``sync_accounts`` without ``--async``), in the reaper or when the broker refuses it; the
    subscribers (the failure-streak alert) must hear of each one. A subscriber that raises is
    logged with its traceback; the sync and the other subscribers carry on.
    """
    for name, func in record_failed_hooks():
        try:
            func(record_id)
        except Exception as exc:
            log_event(
                logger,
                logging.ERROR,
                f"record-failed hook {name!r} raised {type(exc).__name__} for record {record_id}: {exc}",
                exc_info=True,
                module=__name__,
                operation=name,
                phase="record_failed_hook",
            )

"""System checks for the sync machinery's timing settings.

Why refuse at start-up instead of warning: each rule below, broken, lets two syncs of
one instance overlap or a live sync be failed as "worker lost" — quietly, under load.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register


@register()
def sync_timing_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    errors = []
    timeout = settings.Q_CLUSTER.get("timeout")
    retry = settings.Q_CLUSTER.get("retry")
    stale = settings.WHALEFALL_STALE_SECONDS
    heartbeat = settings.WHALEFALL_HEARTBEAT_SECONDS
    lease = settings.WHALEFALL_LEASE_SECONDS
    if timeout and stale <= timeout:
        errors.append(
            Error(
                f"WHALEFALL_STALE_SECONDS ({stale}) must be above the task timeout Q_TIMEOUT ({timeout}).",
                hint="Otherwise the reaper can fail a record whose task django-q2 is still running; "
                f"set WHALEFALL_STALE_SECONDS to at least {timeout + 60}.",
                id="sync.E001",
            )
        )
    if heartbeat <= 0 or lease < 3 * heartbeat:
        errors.append(
            Error(
                f"WHALEFALL_LEASE_SECONDS ({lease:g}) must be at least three heartbeats "
                f"(WHALEFALL_HEARTBEAT_SECONDS={heartbeat:g}, which must be positive).",
                hint="A lease renewed less often than it expires is taken over from a live sync.",
                id="sync.E002",
            )
        )
    bounds = {
        name: getattr(settings, name)
        for name in ("WHALEFALL_FETCH_CONCURRENCY", "WHALEFALL_APPLY_CONCURRENCY", "WHALEFALL_BATCH_SIZE")
    }
    if any(not isinstance(value, int) or value < 1 for value in bounds.values()):
        errors.append(
            Error(
                "Batch settings must be whole numbers of at least 1: "
                + ", ".join(f"{name}={value!r}" for name, value in bounds.items())
                + ".",
                hint="1 / 1 / 1 runs one record at a time, one task per record (docs/architecture.md, 'Batches').",
                id="sync.E004",
            )
        )
    if timeout and retry and retry <= timeout:
        errors.append(
            Error(
                f"Q_RETRY ({retry}) must be above Q_TIMEOUT ({timeout}).",
                hint="Otherwise the ORM broker hands a task that is still running to a second worker.",
                id="sync.E003",
            )
        )
    return errors

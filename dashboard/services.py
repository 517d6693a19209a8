"""Writes behind the dashboard: storing the settled days of the change chart.

Why the fill is a service the caller runs after the selector, not a write inside the selector: the
project's rule is that selectors read and services write. The selector (dashboard.selectors.change_series)
already had to count the missing settled days live to draw them, so it hands them back as `unstored`;
the panel (dashboard.panels.change_panel) passes them here. Storing costs one INSERT on the first load
of a day, and none on a warm load. The service checks again that each day is settled (over for
selectors.SETTLE) in the series' zone, so no caller can freeze a day that may still grow.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.utils import timezone

from config.logging import log_event
from dashboard import selectors
from dashboard.models import ChangeDailyCount

logger = logging.getLogger(__name__)
MODULE = "dashboard"


def change_counts_store(rollup: selectors.ChangeSeries, *, now: datetime | None = None) -> int:
    """Store the settled days of `rollup.unstored` (every change type, zeros included); returns the days stored.

    Zeros are stored too: a stored day is one with rows, so a quiet day is not counted again on every
    load. Two page loads storing the same day at once are harmless (the second insert is ignored).
    """
    settled = selectors.settled_before(now=now or timezone.now(), tz=rollup.tz)
    days = [d for d in rollup.unstored if d.day < settled]
    if not days:
        return 0
    key = selectors.tz_key(rollup.tz)
    rows = [
        ChangeDailyCount(tz=key, day=d.day, change_type=change_type, count=n)
        for d in days
        for change_type, n in d.counts.items()
    ]
    ChangeDailyCount.objects.bulk_create(rows, ignore_conflicts=True)
    log_event(
        logger,
        logging.INFO,
        f"stored the change counts of {len(days)} settled day(s) ({key})",
        module=MODULE,
        operation="change_counts_store",
        instance_id=None,
        db_type="",
        session_id=None,
        phase="stored",
    )
    return len(days)


def change_counts_reset() -> int:
    """Forget every stored day, so the next load counts the window again from the change log.

    For when change log rows were written with a past detection time after their day was stored
    (a restore, a bulk import): the rollup never notices on its own, by design.
    """
    deleted, _ = ChangeDailyCount.objects.all().delete()
    return deleted

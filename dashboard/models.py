"""Stored daily totals behind the dashboard's per-day charts.

Why a rollup: the "account changes per day" chart counted the change log of the last 30 days on every
admin index load (2.8-3.0 s over 3.3 M rows at the issue's scale). A change log row is written once with
its detection time and never edited, so the count of a day that is over cannot change any more: it is
counted once, stored here, and read back as 150 small rows. Today (and a day that is not settled yet)
is always counted live.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class ChangeDailyCount(models.Model):
    """How many change log entries of one type were detected on one calendar day in one time zone.

    `tz` is the zone the day was cut in (the project's TIME_ZONE when it was stored): after a change of
    TIME_ZONE the old rows no longer match and the days are counted again in the new zone, instead of
    showing days cut at the old midnight. The counts are as detected: when the history retention later
    deletes old change log rows, the stored days keep their counts (the chart shows what was detected,
    the change log shows what is kept).
    """

    tz = models.CharField(_("time zone"), max_length=64)
    day = models.DateField(_("day"))
    change_type = models.CharField(_("change type"), max_length=24)
    count = models.PositiveIntegerField(_("changes"))

    class Meta:
        ordering = ["tz", "day", "change_type"]
        verbose_name = _("daily change count")
        verbose_name_plural = _("daily change counts")
        constraints = [
            models.UniqueConstraint(fields=["tz", "day", "change_type"], name="dashboard_change_daily_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.change_type} ({self.tz}): {self.count}"

"""Read-only aggregates behind the admin index dashboard.

Why aggregates only: the dashboard is the first page every user opens, so it
must cost the same few queries whether the fleet has ten instances or ten
thousand and the history a million rows. Each selector below is one GROUP BY
query (the change series two: its stored days, then the rest live); the
zero-filling and shaping happen in Python on the (small, bounded) grouped rows.

Days are calendar days in the project's TIME_ZONE (not UTC), so a sync at
00:30 local time counts for the local day on which people saw it run, and the
per-day links open the admin's date filters on the same day boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo

from django.db.models import Count, Exists, Model, OuterRef, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from accountsync.models import AccountChangeLog, ChangeType, CoverageGapEpisode
from dashboard.models import ChangeDailyCount
from findings.models import SEVERITY_RANK, Finding, SeverityChoices
from instances.models import DbType, Instance, SyncStatus
from sync.models import SyncInstanceRecord, SyncRecordStatusChoices

DAYS = 30
# "high severity" on the dashboard means high or worse
HIGH_SEVERITIES = tuple(s for s, rank in SEVERITY_RANK.items() if rank >= SEVERITY_RANK[SeverityChoices.HIGH])


def project_timezone() -> tzinfo:
    """settings.TIME_ZONE as a tzinfo, whatever zone a request may have activated."""
    return timezone.get_default_timezone()


def day_window(*, days: int = DAYS, now: datetime | None = None, tz: tzinfo | None = None) -> list[date]:
    """The last `days` calendar days in `tz`, oldest first, today (as of `now`) last."""
    tz = tz or project_timezone()
    today = timezone.localtime(now or timezone.now(), tz).date()
    return [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]


def _day_start(day: date, tz: tzinfo) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min), tz)


# --- instances -----------------------------------------------------------------------------


@dataclass
class InstanceTypeRow:
    """One database type: its instances split by last sync status (active) and inactive ones."""

    db_type: str
    label: str
    completed: int = 0
    gaps: int = 0  # completed, but part of the instance is unreadable (open coverage gaps)
    failed: int = 0
    never: int = 0
    inactive: int = 0

    @property
    def active(self) -> int:
        return self.completed + self.gaps + self.failed + self.never

    @property
    def total(self) -> int:
        return self.active + self.inactive


def instance_status_by_type() -> list[InstanceTypeRow]:
    """Instances per db type and last sync status, in one GROUP BY; types with no instance are left out.

    Inactive instances are counted apart: they are never synced, so their last
    status says nothing about the fleet today.
    """
    rows = {value: InstanceTypeRow(db_type=value, label=str(label)) for value, label in DbType.choices}
    open_gap = CoverageGapEpisode.objects.filter(instance=OuterRef("pk"), closed_at__isnull=True, kind="unreadable")
    grouped = (
        Instance.objects.order_by()
        .annotate(has_gaps=Exists(open_gap))
        .values("db_type", "last_sync_status", "is_active", "has_gaps")
        .annotate(n=Count("id"))
        .values_list("db_type", "last_sync_status", "is_active", "has_gaps", "n")
    )
    for db_type, status, is_active, has_gaps, n in grouped:
        row = rows.setdefault(db_type, InstanceTypeRow(db_type=db_type, label=db_type))
        if not is_active:
            row.inactive += n
        elif status == SyncStatus.COMPLETED and has_gaps:
            row.gaps += n
        elif status == SyncStatus.COMPLETED:
            row.completed += n
        elif status == SyncStatus.FAILED:
            row.failed += n
        else:
            row.never += n
    return [row for row in rows.values() if row.total]


# --- per-day series ------------------------------------------------------------------------


@dataclass
class DayCounts:
    """One calendar day and its counts per key (status or change type), zero for keys not seen."""

    day: date
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _grouped(
    queryset: QuerySet[Model],
    *,
    field_name: str,
    key: str,
    keys: list[str],
    start: datetime,
    end: datetime,
    tz: tzinfo,
) -> list[tuple[date, str, int]]:
    """(local day, key, count) of the rows with `field_name` in [start, end): one GROUP BY."""
    grouped = (
        queryset.order_by()
        .filter(**{f"{field_name}__gte": start, f"{field_name}__lt": end, f"{key}__in": keys})
        .annotate(day=TruncDate(field_name, tzinfo=tz))
        .values("day", key)
        .annotate(n=Count("id"))
        .values_list("day", key, "n")
    )
    rows = []
    for day, value, n in grouped:
        if isinstance(day, datetime):  # some backends hand back a datetime for a date cast
            day = day.date()
        rows.append((day, value, n))
    return rows


def _per_day(
    queryset: QuerySet[Model],
    *,
    field_name: str,
    key: str,
    keys: list[str],
    days: int,
    now: datetime | None,
    tz: tzinfo | None,
) -> list[DayCounts]:
    tz = tz or project_timezone()
    window = day_window(days=days, now=now, tz=tz)
    start, end = _day_start(window[0], tz), _day_start(window[-1] + timedelta(days=1), tz)
    series = {day: DayCounts(day=day, counts=dict.fromkeys(keys, 0)) for day in window}
    for day, value, n in _grouped(queryset, field_name=field_name, key=key, keys=keys, start=start, end=end, tz=tz):
        if day in series:
            series[day].counts[value] += n
    return list(series.values())


SYNC_STATUSES = [SyncRecordStatusChoices.COMPLETED.value, SyncRecordStatusChoices.FAILED.value]


def syncs_per_day(*, days: int = DAYS, now: datetime | None = None, tz: tzinfo | None = None) -> list[DayCounts]:
    """Instance syncs that ended completed or failed, per day they started, zero-filled; one query.

    Counted per instance sync (SyncInstanceRecord), not per session: a batch of
    forty instances with two failures is 38 successes and 2 failures, which is
    what an operator needs to see.
    """
    return _per_day(
        SyncInstanceRecord.objects,
        field_name="started_at",
        key="status",
        keys=SYNC_STATUSES,
        days=days,
        now=now,
        tz=tz,
    )


CHANGE_TYPES = [value for value, _label in ChangeType.choices]
# How long after its midnight a day is settled. An apply stamps its change log rows with the time it
# started (accountsync.services.account_sync_apply) and commits them up to a long transaction later, so
# a day is not counted for good until every apply that may have started before its end has committed.
SETTLE = timedelta(hours=1)


def tz_key(tz: tzinfo) -> str:
    """The zone's name as stored with the rollup (`Asia/Shanghai`, `UTC`)."""
    return str(getattr(tz, "key", None) or tz)


def settled_before(*, now: datetime, tz: tzinfo) -> date:
    """The first local day that is not settled at `now`: every day before it is over since SETTLE or more.

    Never later than today, so today is never stored, whatever SETTLE is.
    """
    return timezone.localtime(now - SETTLE, tz).date()


@dataclass
class ChangeSeries:
    """The change chart's days, and the settled days that had to be counted live because none was stored.

    `unstored` is what the caller hands to dashboard.services.change_counts_store, so the next load
    reads them back instead of counting them again (a selector does not write).
    """

    series: list[DayCounts]
    tz: tzinfo
    unstored: list[DayCounts] = field(default_factory=list)


def change_series(*, days: int = DAYS, now: datetime | None = None, tz: tzinfo | None = None) -> ChangeSeries:
    """Change log entries per detection day and type, zero-filled: stored days read back, the others live.

    Two queries whatever the history: the stored rows of the window (dashboard.models.ChangeDailyCount,
    in this zone), then one GROUP BY over the change log from the first day without stored rows to the end
    of today; with a warm rollup that is today only, a few thousand index entries instead of a month.
    The stored counts are as detected: rows the retention deletes later are still counted on their day.
    """
    tz = tz or project_timezone()
    now = now or timezone.now()
    window = day_window(days=days, now=now, tz=tz)
    series = {day: DayCounts(day=day, counts=dict.fromkeys(CHANGE_TYPES, 0)) for day in window}
    stored: set[date] = set()
    rows = ChangeDailyCount.objects.filter(tz=tz_key(tz), day__gte=window[0], day__lte=window[-1]).values_list(
        "day", "change_type", "count"
    )
    for day, change_type, n in rows:
        stored.add(day)
        if change_type in series[day].counts:  # a type since removed from ChangeType is not drawn
            series[day].counts[change_type] = n
    live = [day for day in window if day not in stored]
    if live:
        start, end = _day_start(live[0], tz), _day_start(window[-1] + timedelta(days=1), tz)
        for day, change_type, n in _grouped(
            AccountChangeLog.objects,
            field_name="detected_at",
            key="change_type",
            keys=CHANGE_TYPES,
            start=start,
            end=end,
            tz=tz,
        ):
            if day in series and day not in stored:
                series[day].counts[change_type] += n
    settled = settled_before(now=now, tz=tz)
    return ChangeSeries(series=list(series.values()), tz=tz, unstored=[series[day] for day in live if day < settled])


def changes_per_day(*, days: int = DAYS, now: datetime | None = None, tz: tzinfo | None = None) -> list[DayCounts]:
    """Account change log entries per detection day and change type, zero-filled (see change_series)."""
    return change_series(days=days, now=now, tz=tz).series


# --- findings ------------------------------------------------------------------------------


@dataclass
class FindingRuleRow:
    """Open findings of one rule at one severity."""

    rule_code: str
    severity: str
    count: int


def open_high_findings() -> list[FindingRuleRow]:
    """Open findings of high severity or worse per (severity, rule), worst and largest first; one query."""
    grouped = (
        Finding.objects.order_by()
        .filter(is_open=True, severity__in=HIGH_SEVERITIES)
        .values("severity", "rule_code")
        .annotate(n=Count("id"))
        .values_list("severity", "rule_code", "n")
    )
    rows = [FindingRuleRow(rule_code=rule, severity=severity, count=n) for severity, rule, n in grouped]
    rows.sort(key=lambda r: (-SEVERITY_RANK.get(r.severity, 0), -r.count, r.rule_code))
    return rows

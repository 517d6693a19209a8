"""The scrape: one Collector whose values are aggregate queries over WhaleFall's tables.

A scrape runs ``QUERIES_PER_SCRAPE`` queries, however many rows the tables hold, each through an
existing index (docs/operations.md, "Metrics", lists what each one reads). What comes from history
(results, durations, changes, deliveries) is counted over a sliding window
(``WHALEFALL_METRICS_WINDOW_SECONDS``, default one day), so its cost follows the window and not the
age of the database; the account count is the one query that grows with the data (the current
accounts, answered from ``acct_instance_active_idx``).

Windowed counts are gauges, never counters: they go down when old rows leave the window, and a counter
that goes down is read by ``rate()`` as a restart. A monotonic total of, say, changes would have to
count the whole change log on every scrape. The one counter, ``whalefall_instance_syncs_total``, is
``Instance.sync_count``, which only ever grows. Durations are a gauge histogram (OpenMetrics
``gaugehistogram``): read them with ``histogram_quantile()`` directly, without ``rate()``.

No transaction wraps the queries: on SQLite WhaleFall opens IMMEDIATE transactions, which would make
every scrape take the write lock. Each query is its own consistent read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, Sum
from django.utils import timezone
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)

from accountsync.models import AccountChangeLog, ChangeType, CoverageGapEpisode, GapKindChoices, InstanceAccount
from alerts.models import AlertDelivery, DeliveryStatusChoices
from config.logging import log_event
from instances.models import Instance, SyncStatus
from sync.models import RECORD_TERMINAL, SyncInstanceRecord, SyncRecordStatusChoices

logger = logging.getLogger("whalefall.metrics")

DEFAULT_WINDOW_SECONDS = 86400
# seconds; a sync of 10,000 accounts takes ~2 s, a stuck one ends at the task timeout (900 s by default)
DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
SCHEDULE_PREFIX = "whalefall:"  # the schedules of manage.py setup_schedules
UNKNOWN = "unknown"  # db_type of a record whose instance was deleted
INSTANCE_LABELS = ["instance_name", "db_type", "environment"]

# instances, gaps, accounts, current records, results, durations, changes, deliveries, queue (ORM broker), schedules
QUERIES_PER_SCRAPE = 10


def window_seconds() -> int:
    """``WHALEFALL_METRICS_WINDOW_SECONDS``: how far back the windowed families count (at least one minute)."""
    try:
        value = int(getattr(settings, "WHALEFALL_METRICS_WINDOW_SECONDS", DEFAULT_WINDOW_SECONDS))
    except (TypeError, ValueError):
        value = DEFAULT_WINDOW_SECONDS
    return max(value, 60)


def _age(now: datetime, then: datetime | None) -> float:
    return max((now - then).total_seconds(), 0.0) if then is not None else 0.0


def _seconds(value: timedelta | float | int | None) -> float:
    if value is None:
        return 0.0
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value) / 1_000_000  # a backend without an interval type sums microseconds


def _bucket_key(phase: str, index: int | str) -> str:
    return f"{phase}_le_{index}"


class WhaleFallCollector:
    """A prometheus_client collector; ``collect()`` runs the queries, so every scrape reads fresh values."""

    def describe(self) -> list[Metric]:
        # nothing to describe up front: registering must not query the database
        return []

    def collect(self) -> Iterator[Metric]:
        started = time.monotonic()
        now = timezone.now()
        window = window_seconds()
        since = now - timedelta(seconds=window)
        yield from self._instances(now)
        yield from self._records(now)
        yield from self._results(since)
        yield from self._durations(since)
        yield from self._changes(since)
        yield from self._deliveries(now, since)
        yield from self._queue(now)
        yield from self._schedules(now)
        yield GaugeMetricFamily(
            "whalefall_metrics_window_seconds",
            "How far back the windowed families (results, durations, changes, deliveries) count.",
            value=window,
        )
        yield GaugeMetricFamily(
            "whalefall_metrics_scrape_duration_seconds",
            "Time this scrape spent reading WhaleFall's database and broker.",
            value=time.monotonic() - started,
        )

    # --- instances, coverage, accounts --------------------------------------------------

    def _instances(self, now: datetime) -> Iterator[Metric]:
        rows = list(
            Instance.objects.order_by("name").values_list(
                "pk",
                "name",
                "db_type",
                "environment",
                "is_active",
                "created_at",
                "last_success_at",
                "last_sync_status",
                "sync_count",
            )
        )
        gaps = dict(
            CoverageGapEpisode.objects.filter(closed_at__isnull=True, kind=GapKindChoices.UNREADABLE)
            .values("instance_id")
            .annotate(n=Count("*"))
            .order_by()
            .values_list("instance_id", "n")
        )
        accounts = (
            # COUNT(*), not COUNT(id): PostgreSQL can then answer from acct_instance_active_idx alone
            InstanceAccount.objects.values("instance_id", "is_active")
            .annotate(n=Count("*"))
            .order_by()
            .values_list("instance_id", "is_active", "n")
        )

        age = GaugeMetricFamily(
            "whalefall_instance_last_success_age_seconds",
            "Seconds since the instance's last successful sync (since it was registered, if it never had one).",
            labels=INSTANCE_LABELS,
        )
        never = GaugeMetricFamily(
            "whalefall_instance_never_synced",
            "1 if the instance has never been synced successfully.",
            labels=INSTANCE_LABELS,
        )
        failed = GaugeMetricFamily(
            "whalefall_instance_last_sync_failed",
            "1 if the instance's last sync failed.",
            labels=INSTANCE_LABELS,
        )
        gap = GaugeMetricFamily(
            "whalefall_instance_coverage_gaps",
            "Scopes of the instance that the syncs cannot read now (open unreadable coverage gaps).",
            labels=INSTANCE_LABELS,
        )
        syncs = CounterMetricFamily(
            "whalefall_instance_syncs",
            "Syncs of the instance run so far, whatever their outcome (Instance.sync_count).",
            labels=INSTANCE_LABELS,
        )
        fleet: dict[tuple[str, str, str], int] = defaultdict(int)
        db_types: dict[int, str] = {}
        for pk, name, db_type, environment, active, created, success, status, count in rows:
            db_types[pk] = db_type
            fleet[(db_type, environment, "true" if active else "false")] += 1
            if not active:
                continue  # an inactive instance is not synced: its age would only grow
            labels = [name, db_type, environment]
            age.add_metric(labels, _age(now, success or created))
            never.add_metric(labels, 0 if success else 1)
            failed.add_metric(labels, 1 if status == SyncStatus.FAILED else 0)
            gap.add_metric(labels, gaps.get(pk, 0))
            syncs.add_metric(labels, count)
        instances = GaugeMetricFamily(
            "whalefall_instances",
            "Registered instances by type, environment and whether they are active.",
            labels=["db_type", "environment", "active"],
        )
        for (db_type, environment, active), n in sorted(fleet.items()):
            instances.add_metric([db_type, environment, active], n)

        by_type: dict[tuple[str, str], int] = defaultdict(int)
        for instance_id, active, n in accounts:
            by_type[(db_types.get(instance_id, UNKNOWN), "true" if active else "false")] += n
        account = GaugeMetricFamily(
            "whalefall_accounts",
            "Accounts WhaleFall knows, by database type; active=false are those gone from their server.",
            labels=["db_type", "active"],
        )
        for (db_type, active), n in sorted(by_type.items()):
            account.add_metric([db_type, active], n)
        yield from (instances, age, never, failed, gap, syncs, account)

    # --- sync records ----------------------------------------------------------------------

    def _records(self, now: datetime) -> Iterator[Metric]:
        open_states = (SyncRecordStatusChoices.PENDING, SyncRecordStatusChoices.RUNNING)
        rows = {
            row["status"]: row
            for row in SyncInstanceRecord.objects.filter(status__in=open_states)
            .values("status")
            .annotate(
                n=Count("pk"),
                created=Min("created_at"),
                started=Min("started_at"),
                heartbeat=Min("heartbeat_at"),
            )
            .order_by()
        }
        count = GaugeMetricFamily(
            "whalefall_sync_records",
            "Sync records waiting for a worker (pending) or syncing now (running).",
            labels=["status"],
        )
        oldest = GaugeMetricFamily(
            "whalefall_sync_records_oldest_age_seconds",
            "Age of the oldest pending record (since created) and the oldest running one (since started).",
            labels=["status"],
        )
        for status in open_states:
            row = rows.get(status) or {}
            count.add_metric([status], row.get("n", 0))
            since = row.get("created") if status == SyncRecordStatusChoices.PENDING else row.get("started")
            oldest.add_metric([status], _age(now, since))
        heartbeat = GaugeMetricFamily(
            "whalefall_sync_running_heartbeat_age_seconds",
            "Seconds since the stalest running record last beat (the reaper fails it after WHALEFALL_STALE_SECONDS).",
            value=_age(now, (rows.get(SyncRecordStatusChoices.RUNNING) or {}).get("heartbeat")),
        )
        yield from (count, oldest, heartbeat)

    def _results(self, since: datetime) -> Iterator[Metric]:
        rows = (
            SyncInstanceRecord.objects.filter(session__started_at__gte=since, status__in=RECORD_TERMINAL)
            .values("instance__db_type", "status", "error_kind")
            .annotate(n=Count("pk"), gapped=Count("pk", filter=Q(coverage_gaps__gt=0)))
            .order_by()
        )
        results = GaugeMetricFamily(
            "whalefall_sync_results",
            "Ended sync records of the sessions started in the window, by status and classified error.",
            labels=["db_type", "status", "error_kind"],
        )
        gapped = GaugeMetricFamily(
            "whalefall_sync_results_with_gaps",
            "Completed sync records in the window that could not read everything (completed with coverage gaps).",
            labels=["db_type"],
        )
        totals: dict[tuple, int] = defaultdict(int)
        gaps: dict[str, int] = defaultdict(int)
        for row in rows:
            db_type = row["instance__db_type"] or UNKNOWN
            totals[(db_type, row["status"], row["error_kind"] or "none")] += row["n"]
            if row["status"] == SyncRecordStatusChoices.COMPLETED:
                gaps[db_type] += row["gapped"]
        for labels, n in sorted(totals.items()):
            results.add_metric(list(labels), n)
        for db_type, n in sorted(gaps.items()):
            gapped.add_metric([db_type], n)
        yield from (results, gapped)

    def _durations(self, since: datetime) -> Iterator[Metric]:
        """Two phases the records' timestamps measure: ``queue`` (queued to started) and ``run`` (started to ended)."""
        phases = {
            "run": (
                ExpressionWrapper(F("completed_at") - F("started_at"), output_field=DurationField()),
                Q(completed_at__isnull=False),
            ),
            "queue": (
                ExpressionWrapper(F("started_at") - F("queued_at"), output_field=DurationField()),
                Q(queued_at__isnull=False, queued_at__lte=F("started_at")),
            ),
        }
        aggregates: dict[str, Any] = {}
        for phase, (_expr, when) in phases.items():
            for i, bound in enumerate(DURATION_BUCKETS):
                aggregates[_bucket_key(phase, i)] = Count(
                    "pk", filter=when & Q(**{f"{phase}_duration__lte": timedelta(seconds=bound)})
                )
            aggregates[_bucket_key(phase, "inf")] = Count("pk", filter=when)
            aggregates[f"{phase}_sum"] = Sum(f"{phase}_duration", filter=when)
        rows = (
            SyncInstanceRecord.objects.filter(started_at__gte=since)
            .alias(**{f"{phase}_duration": expr for phase, (expr, _when) in phases.items()})
            .values("instance__db_type")
            .annotate(**aggregates)
            .order_by()
        )
        family = GaugeHistogramMetricFamily(
            "whalefall_sync_duration_seconds",
            "Sync records started in the window: time waiting in the queue (phase=queue) and syncing (phase=run).",
            labels=["db_type", "phase"],
        )
        merged: dict[str, dict[str, Any]] = {}
        for row in rows:  # a deleted instance (NULL db_type) is "unknown"
            db_type = row.pop("instance__db_type") or UNKNOWN
            into = merged.setdefault(db_type, defaultdict(int))
            for key, value in row.items():
                into[key] += _seconds(value) if key.endswith("_sum") else (value or 0)
        for db_type, values in sorted(merged.items()):
            for phase in phases:
                if not values[_bucket_key(phase, "inf")]:
                    continue
                buckets = [(str(b), values[_bucket_key(phase, i)]) for i, b in enumerate(DURATION_BUCKETS)]
                buckets.append(("+Inf", values[_bucket_key(phase, "inf")]))
                family.add_metric([db_type, phase], buckets, gsum_value=values[f"{phase}_sum"])
        yield family

    # --- changes and alerts ------------------------------------------------------------------

    def _changes(self, since: datetime) -> Iterator[Metric]:
        counts = dict(
            AccountChangeLog.objects.filter(detected_at__gte=since)
            .values("change_type")
            .annotate(n=Count("*"))
            .order_by()
            .values_list("change_type", "n")
        )
        family = GaugeMetricFamily(
            "whalefall_account_changes",
            "Account changes detected in the window, by change type.",
            labels=["change_type"],
        )
        for change_type in sorted({*ChangeType.values, *counts}):
            family.add_metric([change_type], counts.get(change_type, 0))
        yield family

    def _deliveries(self, now: datetime, since: datetime) -> Iterator[Metric]:
        pending = DeliveryStatusChoices.PENDING
        rows = {
            row["status"]: row
            # spelled so that both branches lead with the status of alert_status_created_idx
            for row in AlertDelivery.objects.filter(
                Q(status=pending) | Q(status__in=DeliveryStatusChoices.values, created_at__gte=since)
            )
            .values("status")
            .annotate(
                recent=Count("pk", filter=Q(created_at__gte=since)),
                every=Count("pk"),
                oldest=Min("created_at"),
            )
            .order_by()
        }
        recent = GaugeMetricFamily(
            "whalefall_alert_deliveries",
            "Alert deliveries created in the window, by their status now (pending, sent, failed for good).",
            labels=["status"],
        )
        for status in sorted({*DeliveryStatusChoices.values, *rows}):
            recent.add_metric([status], (rows.get(status) or {}).get("recent", 0))
        row = rows.get(pending) or {}
        backlog = GaugeMetricFamily(
            "whalefall_alert_deliveries_pending",
            "Alert deliveries not yet sent nor given up, however old (being tried or waiting for a retry).",
            value=row.get("every", 0),
        )
        oldest = GaugeMetricFamily(
            "whalefall_alert_deliveries_oldest_pending_age_seconds",
            "Age of the oldest pending alert delivery (0 when none is pending).",
            value=_age(now, row.get("oldest")),
        )
        yield from (recent, backlog, oldest)

    # --- task queue -------------------------------------------------------------------------

    def _queue(self, now: datetime) -> Iterator[Metric]:
        from django_q.conf import Conf

        depth = GaugeMetricFamily(
            "whalefall_queue_depth", "Tasks waiting in the django-q2 broker for a worker.", labels=["broker"]
        )
        up = GaugeMetricFamily(
            "whalefall_queue_up", "1 if the django-q2 broker answered this scrape.", labels=["broker"]
        )
        if Conf.ORM:
            from django_q.models import OrmQ

            counts = (
                OrmQ.objects.using(Conf.ORM)
                .filter(key=Conf.CLUSTER_NAME)
                .aggregate(queued=Count("pk", filter=Q(lock__lte=now)), taken=Count("pk", filter=Q(lock__gt=now)))
            )
            depth.add_metric(["orm"], counts["queued"])
            up.add_metric(["orm"], 1)
            taken = GaugeMetricFamily(
                "whalefall_queue_taken",
                "Tasks a worker has taken from the ORM queue and not finished yet.",
                labels=["broker"],
            )
            taken.add_metric(["orm"], counts["taken"])
            yield from (depth, up, taken)
            return
        broker = _broker()
        name = type(broker).__name__.lower()
        try:
            size = broker.queue_size()
        except Exception as exc:  # an unreachable broker is a value, not a failed scrape
            log_event(
                logger,
                logging.WARNING,
                f"metrics: the task broker did not answer: {type(exc).__name__}: {exc}",
                module="metrics",
                operation="queue_size",
            )
            up.add_metric([name], 0)
            yield up
            return
        up.add_metric([name], 1)
        if size is not None:
            depth.add_metric([name], size)
        yield from (depth, up)

    def _schedules(self, now: datetime) -> Iterator[Metric]:
        from django_q.models import Schedule

        family = GaugeMetricFamily(
            "whalefall_schedule_overdue_seconds",
            "Seconds a WhaleFall schedule is past its next run (it stays near 0 while a cluster runs schedules).",
            labels=["schedule"],
        )
        schedules = Schedule.objects.filter(name__startswith=SCHEDULE_PREFIX, next_run__isnull=False)
        for name, next_run in schedules.order_by("name").values_list("name", "next_run"):
            family.add_metric([name], _age(now, next_run))
        yield family


_broker_lock = threading.Lock()
_broker_instance: Any = None


def _broker() -> Any:
    """The django-q2 broker of this process, made once (a Redis broker keeps its connection pool)."""
    global _broker_instance
    with _broker_lock:
        if _broker_instance is None:
            from django_q.brokers import get_broker

            _broker_instance = get_broker()
        return _broker_instance

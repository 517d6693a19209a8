"""Dashboard selectors on built data: exact counts per day, zero fill, the project's time zone, one query each."""

from __future__ import annotations

import itertools
import zoneinfo
from datetime import UTC, date, datetime, timedelta

import pytest

from dashboard import selectors
from tests.dashboard import factories

pytestmark = pytest.mark.django_db

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")  # UTC+8, no DST
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")  # DST from 2026-03-08 02:00


@pytest.fixture
def shanghai(settings):
    settings.TIME_ZONE = "Asia/Shanghai"
    return SHANGHAI


def nonzero(series: list[selectors.DayCounts]) -> dict[date, dict[str, int]]:
    return {d.day: {k: v for k, v in d.counts.items() if v} for d in series if d.total}


def test_day_window_is_thirty_days_ending_today_in_the_project_zone(shanghai):
    now = datetime(2026, 3, 14, 17, 0, tzinfo=UTC)  # already the 15th in Shanghai
    window = selectors.day_window(now=now)
    assert len(window) == 30
    assert window[-1] == date(2026, 3, 15) and window[0] == date(2026, 2, 14)
    assert all(b - a == timedelta(days=1) for a, b in itertools.pairwise(window))
    assert selectors.day_window(now=now, tz=UTC)[-1] == date(2026, 3, 14)


def test_syncs_per_day_counts_completed_and_failed_and_fills_every_other_day(shanghai, make_instance):
    instance = make_instance()
    now = datetime(2026, 3, 15, 10, 0, tzinfo=SHANGHAI)
    factories.records(
        instance,
        datetime(2026, 3, 15, 9, 0, tzinfo=SHANGHAI),
        completed=3,
        failed=1,
        other={"running": 2, "cancelled": 4},
    )
    factories.records(instance, datetime(2026, 3, 15, 0, 0, tzinfo=SHANGHAI), completed=2)  # today's first second
    factories.records(None, datetime(2026, 3, 10, 12, 0, tzinfo=SHANGHAI), failed=2)
    factories.records(None, datetime(2026, 2, 14, 0, 0, tzinfo=SHANGHAI), completed=1)  # first day of the window
    factories.records(None, datetime(2026, 2, 13, 23, 59, tzinfo=SHANGHAI), completed=5)  # the day before it
    factories.records(None, datetime(2026, 3, 16, 0, 0, tzinfo=SHANGHAI), completed=7)  # tomorrow (clock skew)

    series = selectors.syncs_per_day(now=now)

    assert [d.day for d in series] == selectors.day_window(now=now)
    assert nonzero(series) == {
        date(2026, 2, 14): {"completed": 1},
        date(2026, 3, 10): {"failed": 2},
        date(2026, 3, 15): {"completed": 5, "failed": 1},
    }
    assert all(set(d.counts) == {"completed", "failed"} for d in series)  # zeros are there, not missing
    assert sum(d.total for d in series) == 9


def test_a_day_is_the_project_time_zone_day_not_the_utc_day(shanghai, make_instance):
    instance = make_instance()
    now = datetime(2026, 3, 15, 10, 0, tzinfo=SHANGHAI)
    late = datetime(2026, 3, 14, 15, 59, tzinfo=UTC)  # 23:59 on the 14th in Shanghai
    early = datetime(2026, 3, 14, 16, 30, tzinfo=UTC)  # 00:30 on the 15th in Shanghai
    factories.records(instance, late, failed=1)
    factories.records(None, early, completed=1)
    factories.changes(instance, late, "added", n=2)
    factories.changes(instance, early, "removed", n=3)

    assert nonzero(selectors.syncs_per_day(now=now)) == {
        date(2026, 3, 14): {"failed": 1},
        date(2026, 3, 15): {"completed": 1},
    }
    assert nonzero(selectors.changes_per_day(now=now)) == {
        date(2026, 3, 14): {"added": 2},
        date(2026, 3, 15): {"removed": 3},
    }
    # the same rows counted in UTC days land on one day: the zone is what splits them
    assert nonzero(selectors.syncs_per_day(now=now, tz=UTC)) == {date(2026, 3, 14): {"completed": 1, "failed": 1}}


def test_days_across_a_dst_change_are_whole_local_days(settings, make_instance):
    settings.TIME_ZONE = "America/New_York"
    instance = make_instance()
    now = datetime(2026, 3, 9, 12, 0, tzinfo=NEW_YORK)
    factories.changes(instance, datetime(2026, 3, 8, 0, 30, tzinfo=NEW_YORK), "added")  # before the switch (EST)
    factories.changes(instance, datetime(2026, 3, 8, 23, 30, tzinfo=NEW_YORK), "added")  # after it (EDT)
    factories.changes(instance, datetime(2026, 3, 9, 0, 15, tzinfo=NEW_YORK), "privileges_changed")
    series = selectors.changes_per_day(now=now)
    assert nonzero(series) == {date(2026, 3, 8): {"added": 2}, date(2026, 3, 9): {"privileges_changed": 1}}
    assert series[0].day == date(2026, 2, 8)


def test_changes_per_day_splits_by_change_type(shanghai, make_instance):
    instance = make_instance()
    now = datetime(2026, 3, 15, 10, 0, tzinfo=SHANGHAI)
    day = datetime(2026, 3, 1, 8, 0, tzinfo=SHANGHAI)
    for change_type, n in (
        ("added", 4),
        ("removed", 1),
        ("reactivated", 2),
        ("privileges_changed", 6),
        ("attributes_changed", 3),
    ):
        factories.changes(instance, day, change_type, n)
    series = selectors.changes_per_day(now=now)
    assert nonzero(series) == {
        date(2026, 3, 1): {
            "added": 4,
            "removed": 1,
            "reactivated": 2,
            "privileges_changed": 6,
            "attributes_changed": 3,
        },
    }


def test_instance_status_by_type(make_instance):
    for status, active in (
        ("completed", True),
        ("completed", True),
        ("failed", True),
        ("", True),
        ("failed", False),
        ("completed", False),
    ):
        make_instance("mysql", last_sync_status=status, is_active=active)
    make_instance("postgresql", last_sync_status="failed")
    make_instance("oracle")
    rows = {row.db_type: row for row in selectors.instance_status_by_type()}
    assert list(rows) == ["mysql", "postgresql", "oracle"]  # the DbType order; SQL Server has none
    mysql = rows["mysql"]
    assert (mysql.completed, mysql.failed, mysql.never, mysql.inactive) == (2, 1, 1, 2)
    assert (mysql.active, mysql.total, mysql.label) == (4, 6, "MySQL / MariaDB")
    assert (rows["postgresql"].failed, rows["postgresql"].total) == (1, 1)
    assert (rows["oracle"].never, rows["oracle"].total) == (1, 1)


def test_open_high_findings_counts_open_high_and_critical_worst_first(make_instance):
    a, b = make_instance(), make_instance()
    factories.findings(a, "SUPERUSER", "high", 3)
    factories.findings(b, "ANONYMOUS", "high", 3)
    factories.findings(b, "PUBLIC_GRANTS", "high", 5)
    factories.findings(a, "EMPTY_PASSWORD", "critical", 1)
    factories.findings(a, "WILDCARD_HOST", "medium", 8)  # not high
    factories.findings(b, "SUPERUSER", "high", 4, is_open=False)  # resolved
    rows = [(r.severity, r.rule_code, r.count) for r in selectors.open_high_findings()]
    assert rows == [
        ("critical", "EMPTY_PASSWORD", 1),
        ("high", "PUBLIC_GRANTS", 5),
        ("high", "ANONYMOUS", 3),
        ("high", "SUPERUSER", 3),
    ]


def test_empty_database_gives_zero_filled_series_and_no_rows(shanghai):
    assert selectors.instance_status_by_type() == []
    assert selectors.open_high_findings() == []
    for series in (selectors.syncs_per_day(), selectors.changes_per_day()):
        assert len(series) == 30 and all(d.total == 0 for d in series)


@pytest.mark.parametrize(
    "selector",
    [
        selectors.instance_status_by_type,
        selectors.syncs_per_day,
        selectors.open_high_findings,
    ],
)
def test_each_selector_is_one_query_whatever_the_rows(selector, make_instance, django_assert_num_queries):
    """The change series is two queries, cold or warm: tests/dashboard/test_rollup.py counts them."""
    instance = make_instance()
    now = datetime.now(UTC)
    for days_ago in range(0, 40, 3):
        factories.records(None, now - timedelta(days=days_ago), completed=20, failed=days_ago % 4)
        factories.changes(instance, now - timedelta(days=days_ago), "added", n=15)
    factories.findings(instance, "SUPERUSER", "high", 25)
    factories.findings(instance, "EMPTY_PASSWORD", "critical", 5)
    with django_assert_num_queries(1):
        selector()

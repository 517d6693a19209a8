"""The change chart's daily rollup: settled days stored once and read back, today live, zones kept apart."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, timedelta

import pytest

from accountsync.models import AccountChangeLog
from dashboard import selectors, services
from dashboard.models import ChangeDailyCount
from tests.dashboard import factories

pytestmark = pytest.mark.django_db

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 15, 10, 0, tzinfo=SHANGHAI)


@pytest.fixture
def shanghai(settings):
    settings.TIME_ZONE = "Asia/Shanghai"
    return SHANGHAI


def nonzero(series: list[selectors.DayCounts]) -> dict[date, dict[str, int]]:
    return {d.day: {k: v for k, v in d.counts.items() if v} for d in series if d.total}


def load(now: datetime = NOW, tz=None) -> list[selectors.DayCounts]:
    """What the panel does: read, then store the settled days that were counted live."""
    rollup = selectors.change_series(now=now, tz=tz)
    services.change_counts_store(rollup, now=now)
    return rollup.series


def stored_days(tz: str = "Asia/Shanghai") -> set[date]:
    return set(ChangeDailyCount.objects.filter(tz=tz).values_list("day", flat=True))


def test_a_cold_load_stores_every_settled_day_of_the_window_and_never_today(shanghai, make_instance):
    instance = make_instance()
    factories.changes(instance, datetime(2026, 3, 1, 8, 0, tzinfo=SHANGHAI), "added", 4)
    factories.changes(instance, NOW - timedelta(hours=1), "removed", 2)  # today

    series = load()

    window = selectors.day_window(now=NOW)
    assert stored_days() == set(window[:-1])  # 29 days, quiet ones included (as zeros)
    assert ChangeDailyCount.objects.count() == 29 * len(selectors.CHANGE_TYPES)
    assert nonzero(series) == {date(2026, 3, 1): {"added": 4}, date(2026, 3, 15): {"removed": 2}}
    # read back, the same series
    assert nonzero(load()) == nonzero(series)


def test_cold_and_warm_query_counts(shanghai, make_instance, django_assert_num_queries):
    instance = make_instance()
    for days_ago in range(0, 40, 3):
        factories.changes(instance, NOW - timedelta(days=days_ago), "added", n=15)
    with django_assert_num_queries(2):  # stored rows (none), then one GROUP BY over the whole window
        cold = selectors.change_series(now=NOW)
    assert len(cold.unstored) == 29
    with django_assert_num_queries(1):  # one INSERT of the 29 settled days
        assert services.change_counts_store(cold, now=NOW) == 29
    with django_assert_num_queries(2):  # stored rows, then one GROUP BY over today only
        warm = selectors.change_series(now=NOW)
    assert warm.unstored == []
    with django_assert_num_queries(0):
        assert services.change_counts_store(warm, now=NOW) == 0
    assert nonzero(warm.series) == nonzero(cold.series)
    assert sum(d.total for d in warm.series) == 10 * 15  # days_ago 0, 3, ..., 27


def test_today_stays_live_and_stored_days_keep_the_counts_as_detected(shanghai, make_instance):
    instance = make_instance()
    past = datetime(2026, 3, 10, 12, 0, tzinfo=SHANGHAI)
    factories.changes(instance, past, "privileges_changed", 3)
    load()
    # the retention prunes the old rows: the stored day still shows what was detected
    AccountChangeLog.objects.filter(detected_at__lt=datetime(2026, 3, 11, tzinfo=SHANGHAI)).delete()
    factories.changes(instance, NOW - timedelta(minutes=5), "added", 2)  # today grows
    series = {d.day: d.counts for d in load()}
    assert series[date(2026, 3, 10)]["privileges_changed"] == 3
    assert series[date(2026, 3, 15)]["added"] == 2
    factories.changes(instance, NOW - timedelta(minutes=1), "added", 1)
    assert {d.day: d.counts for d in load()}[date(2026, 3, 15)]["added"] == 3


def test_yesterday_is_not_stored_until_it_has_settled(shanghai, make_instance):
    """An apply stamps its rows when it starts: just after midnight, yesterday may still grow."""
    instance = make_instance()
    just_after_midnight = datetime(2026, 3, 15, 0, 20, tzinfo=SHANGHAI)
    factories.changes(instance, datetime(2026, 3, 14, 23, 59, tzinfo=SHANGHAI), "added", 1)
    load(now=just_after_midnight)
    assert date(2026, 3, 14) not in stored_days() and date(2026, 3, 13) in stored_days()
    # the long apply that started at 23:59:30 commits now: yesterday is still counted live
    factories.changes(instance, datetime(2026, 3, 14, 23, 59, 30, tzinfo=SHANGHAI), "added", 4)
    later = just_after_midnight + selectors.SETTLE
    assert {d.day: d.counts for d in load(now=later)}[date(2026, 3, 14)]["added"] == 5
    assert date(2026, 3, 14) in stored_days()


def test_the_service_refuses_days_that_are_not_settled(shanghai, make_instance):
    """A caller that hands it today (or a series computed earlier) cannot freeze a day that may grow."""
    instance = make_instance()
    factories.changes(instance, NOW - timedelta(hours=1), "added", 2)
    rollup = selectors.change_series(now=NOW)
    rollup.unstored = list(rollup.series)  # today included, as a careless caller might
    assert services.change_counts_store(rollup, now=NOW) == 29
    assert date(2026, 3, 15) not in stored_days()


def test_a_time_zone_change_counts_the_days_again_in_the_new_zone(shanghai, settings, make_instance):
    instance = make_instance()
    late = datetime(2026, 3, 10, 15, 59, tzinfo=UTC)  # 23:59 on the 10th in Shanghai, still the 10th in UTC
    early = datetime(2026, 3, 10, 16, 30, tzinfo=UTC)  # 00:30 on the 11th in Shanghai
    factories.changes(instance, late, "added", 2)
    factories.changes(instance, early, "removed", 3)
    load()
    assert nonzero(load())[date(2026, 3, 10)] == {"added": 2}
    settings.TIME_ZONE = "UTC"
    series = load()
    assert nonzero(series)[date(2026, 3, 10)] == {"added": 2, "removed": 3}  # not the Shanghai days
    assert date(2026, 3, 11) not in nonzero(series)
    assert stored_days("UTC") and stored_days("Asia/Shanghai")


def test_reset_forgets_the_stored_days(shanghai, make_instance):
    instance = make_instance()
    load()
    factories.changes(instance, datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI), "added", 6)  # a restore, say
    assert not nonzero(load())  # the stored (empty) day wins
    assert services.change_counts_reset() == 29 * len(selectors.CHANGE_TYPES)
    assert nonzero(load()) == {date(2026, 3, 2): {"added": 6}}

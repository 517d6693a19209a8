"""Chart geometry: nice axes, stacks that stay in the plot, small values still visible next to thousands."""

from __future__ import annotations

import pytest
from django.utils.translation import override

from dashboard.charts import CHAR_WIDTH, MIN_SEGMENT, bar_chart, column_chart, fmt, nice_ticks, text_width


@pytest.fixture(autouse=True)
def english():
    """Labels are formatted in the active language; an earlier test's request may have left another one."""
    with override("en"):
        yield


@pytest.mark.parametrize(
    ("maximum", "ticks"),
    [
        (0, [0, 1]),
        (1, [0, 1]),
        (3, [0, 1, 2, 3]),
        (7, [0, 2, 4, 6, 8]),
        (18, [0, 5, 10, 15, 20]),
        (1285, [0, 500, 1000, 1500]),
        (12_346, [0, 5000, 10_000, 15_000]),
    ],
)
def test_nice_ticks(maximum, ticks):
    assert nice_ticks(maximum) == ticks


def test_nice_ticks_always_reach_the_maximum_with_a_round_step():
    for maximum in range(1, 5000, 7):
        ticks = nice_ticks(maximum)
        step = ticks[1]
        assert ticks[-1] >= maximum > ticks[-2]
        assert str(step).strip("0") in ("1", "2", "5")
        assert (2 if maximum >= 4 else 1) <= len(ticks) - 1 <= 5


def days(*totals: tuple[int, int]) -> list[tuple[str, dict[str, int]]]:
    return [(f"d{i}", {"completed": ok, "failed": bad}) for i, (ok, bad) in enumerate(totals)]


def chart(data, **kw):
    return column_chart(
        data,
        ["completed", "failed"],
        segment_title=lambda day, key, n: f"{day} {key} {n}",
        day_title=lambda day, counts: f"{day} {sum(counts.values())}",
        day_href=lambda i: f"/day/{i}",
        segment_href=lambda i, key: f"/day/{i}/{key}",
        **kw,
    )


def test_a_single_failure_stays_visible_next_to_thousands_and_stacks_stay_in_the_plot():
    c = chart(days((12_000, 1), (0, 0), (3, 0), (11_999, 5)))
    first = c.columns[0]
    ok, bad = first.segments
    assert (ok.key, ok.value, bad.key, bad.value) == ("completed", 12_000, "failed", 1)
    assert bad.height >= MIN_SEGMENT and c.columns[2].segments[0].height >= MIN_SEGMENT
    for column in c.columns:
        for segment in column.segments:
            assert c.plot_top - 0.1 <= segment.y and segment.y + segment.height <= c.plot_bottom + 0.1
    assert ok.y + ok.height == pytest.approx(c.plot_bottom, abs=0.1)  # completed at the bottom
    assert bad.y + bad.height == pytest.approx(ok.y, abs=0.1)  # failed stacked on top
    assert c.columns[1].segments == [] and c.columns[1].total == 0  # a zero day draws nothing, keeps its slot
    assert [t.label for t in c.ticks] == ["0", "5,000", "10,000", "15,000"]
    assert c.plot_left >= CHAR_WIDTH * len("15,000")  # the longest tick label fits left of the plot
    assert not c.empty


def test_heights_are_proportional_above_the_minimum():
    c = chart(days((10, 0), (20, 0)))  # ticks 0..20
    small, large = c.columns[0].segments[0], c.columns[1].segments[0]
    assert large.height == pytest.approx(2 * small.height, abs=0.2)
    assert large.y == pytest.approx(c.plot_top, abs=0.1)


def test_many_tiny_segments_never_push_a_stack_out_of_the_plot():
    data = [("d0", {f"k{i}": 1 for i in range(200)}), ("d1", {"k0": 100_000})]
    c = column_chart(
        data,
        [f"k{i}" for i in range(200)],
        segment_title=lambda *a: "",
        day_title=lambda *a: "",
        day_href=lambda i: "",
        segment_href=lambda i, k: "",
    )
    assert min(s.y for s in c.columns[0].segments) >= c.plot_top - 0.1


def test_x_labels_count_back_from_the_last_day_and_stay_inside():
    c = chart(days(*[(1, 0)] * 30))
    assert [a.label for a in c.x_labels] == ["d1", "d8", "d15", "d22", "d29"]
    short = c.x_labels[-1]
    assert short.anchor == "middle" and short.x + text_width("d29") / 2 <= c.width
    long_last = chart([*days(*[(1, 0)] * 29), ("November 30", {"completed": 1})]).x_labels[-1]
    assert long_last.anchor == "end" and long_last.x <= c.width  # right-aligned rather than cut off


def test_an_all_zero_series_is_empty():
    assert chart(days((0, 0), (0, 0))).empty


def bars(rows, keys=("completed", "failed", "never")):
    return bar_chart(
        rows,
        list(keys),
        segment_title=lambda label, key, n: f"{label} {key} {n}",
        segment_href=lambda i, key: f"/{i}/{key}",
    )


def test_bar_chart_scales_to_the_largest_row_and_prints_counts_that_fit():
    c = bars([("big", {"completed": 3000, "failed": 1000}, "/big", "t"), ("small", {"never": 1}, "/small", "t")])
    big, small = c.rows
    assert [s.value for s in big.segments] == [3000, 1000]
    assert big.segments[0].width == pytest.approx(3 * big.segments[1].width, abs=0.4)
    assert [s.text for s in big.segments] == ["3,000", "1,000"]
    assert big.total_label == "4,000" and big.total_x <= c.width - CHAR_WIDTH * len("4,000")
    assert small.segments[0].width >= MIN_SEGMENT
    assert small.segments[0].text == ""  # a lone segment: its count is the row total, printed after it
    assert small.total_label == "1"
    assert small.label_y > big.bar_y + big.bar_height  # rows do not overlap


def test_bar_chart_omits_counts_that_do_not_fit():
    c = bars([("r", {"completed": 10_000, "failed": 1}, "/", "t")])
    assert [s.text for s in c.rows[0].segments] == ["10,000", ""]


def test_numbers_use_the_active_language_grouping():
    assert fmt(1284) == "1,284"
    with override("zh-hans"):
        assert fmt(1284) == "1284"

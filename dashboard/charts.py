"""Geometry for the dashboard's server-rendered SVG charts (no JavaScript, nothing fetched).

Why geometry in Python and markup in templates: the arithmetic (scales, nice
axis ticks, stacking, minimum visible heights) is easy to test here, while the
templates keep escaping and translation in Django's hands. Coordinates are in
SVG user units; the SVGs carry a viewBox close to their on-screen size so text
stays about as large as the admin's own small text.

Legibility rules: axis ticks are "nice" numbers (1, 2, 5 x 10^n) with grouped
digits and the left margin grows with the longest tick label, so "12,000" fits
as well as "3"; a non-zero segment is never thinner than MIN_SEGMENT so a
single failure stays visible next to thousands of successes (its exact count is
in its title and the legend).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields

from django.utils.formats import number_format

MIN_SEGMENT = 2.0
CHAR_WIDTH = 6.6  # average width of a digit or letter at the chart's 11-unit font
FONT_SIZE = 11


def text_width(text: str) -> float:
    """About how wide `text` renders at FONT_SIZE: CJK characters are about a full em."""
    return sum(FONT_SIZE if ord(ch) >= 0x2E80 else CHAR_WIDTH for ch in text)


def fmt(n: int) -> str:
    """An integer with the active language's digit grouping (1,234)."""
    return number_format(n, force_grouping=True)


def nice_ticks(maximum: int, target: int = 4) -> list[int]:
    """Axis ticks from 0 to at least `maximum`, a 1/2/5 x 10^n step apart, about `target` intervals."""
    if maximum <= 0:
        return [0, 1]
    raw = maximum / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    step = max(1, round(step))
    top = math.ceil(maximum / step) * step
    return list(range(0, top + 1, step))


class _Rounded:
    """Float coordinates kept to one decimal: smaller pages, and finer than any screen shows."""

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, float):
                setattr(self, f.name, round(value, 1))


@dataclass
class Segment(_Rounded):
    """One coloured rectangle: a part of a bar, with its own link and tooltip."""

    key: str
    value: int
    x: float
    y: float
    width: float
    height: float
    title: str
    href: str = ""
    text: str = ""  # a value printed inside the segment when it fits
    text_x: float = 0.0
    text_y: float = 0.0


@dataclass
class Column(_Rounded):
    """One day of a per-day chart: stacked segments, a tooltip for the whole day and a link."""

    label: str
    x: float
    width: float
    total: int
    title: str
    href: str
    segments: list[Segment] = field(default_factory=list)
    hit_y: float = 0.0  # a transparent hit area over the whole plot height, so small days are easy to point at
    hit_height: float = 0.0


@dataclass
class Tick(_Rounded):
    value: int
    label: str
    y: float


@dataclass
class AxisLabel(_Rounded):
    label: str
    x: float
    anchor: str = "middle"


@dataclass
class ColumnChart(_Rounded):
    width: int
    height: int
    plot_left: float
    plot_right: float
    plot_top: float
    plot_bottom: float
    ticks: list[Tick]
    columns: list[Column]
    x_labels: list[AxisLabel]
    label_y: float
    empty: bool  # nothing to draw: the panel shows its empty state instead

    @property
    def tick_label_x(self) -> float:
        return round(self.plot_left - 6, 1)


def column_chart(
    days: Sequence[tuple[str, dict[str, int]]],
    keys: Sequence[str],
    *,
    segment_title: Callable[[str, str, int], str],
    day_title: Callable[[str, dict[str, int]], str],
    day_href: Callable[[int], str],
    segment_href: Callable[[int, str], str],
    width: int = 600,
    height: int = 200,
    label_every: int = 7,
) -> ColumnChart:
    """Stacked columns, one per (label, counts) day, keys stacked bottom-up in `keys` order.

    X labels are printed every `label_every` days counting back from the last
    day, so "today" is always labelled.
    """
    maximum = max((sum(counts.get(k, 0) for k in keys) for _label, counts in days), default=0)
    ticks = nice_ticks(maximum)
    top_value = ticks[-1]
    tick_labels = [fmt(t) for t in ticks]
    left = 10 + CHAR_WIDTH * max(len(t) for t in tick_labels)
    right, top, bottom = width - 6.0, 10.0, height - 22.0
    plot_height = bottom - top
    band = (right - left) / max(1, len(days))
    bar = max(2.0, band * 0.72)

    def y_of(value: float) -> float:
        return bottom - plot_height * value / top_value

    columns = []
    for index, (label, counts) in enumerate(days):
        x = left + band * index + (band - bar) / 2
        total = sum(counts.get(k, 0) for k in keys)
        column = Column(
            label=label,
            x=x,
            width=bar,
            total=total,
            title=day_title(label, counts),
            href=day_href(index),
            hit_y=top,
            hit_height=plot_height,
        )
        cursor = bottom
        for key in keys:
            value = counts.get(key, 0)
            if not value:
                continue
            h = max(MIN_SEGMENT, plot_height * value / top_value)
            h = min(h, cursor - top)  # minimum heights never push a stack out of the plot
            cursor -= h
            column.segments.append(
                Segment(
                    key=key,
                    value=value,
                    x=x,
                    y=cursor,
                    width=bar,
                    height=h,
                    title=segment_title(label, key, value),
                    href=segment_href(index, key),
                )
            )
        columns.append(column)
    x_labels = []
    for i in range(len(days) - 1, -1, -label_every):
        label, centre = days[i][0], left + band * i + band / 2
        if centre + text_width(label) / 2 > width:  # keep the last label inside the chart
            x_labels.append(AxisLabel(label=label, x=min(width, centre + bar / 2), anchor="end"))
        else:
            x_labels.append(AxisLabel(label=label, x=centre))
    return ColumnChart(
        width=width,
        height=height,
        plot_left=left,
        plot_right=right,
        plot_top=top,
        plot_bottom=bottom,
        ticks=[Tick(value=t, label=lbl, y=y_of(t)) for t, lbl in zip(ticks, tick_labels, strict=True)],
        columns=columns,
        x_labels=list(reversed(x_labels)),
        label_y=bottom + 15,
        empty=maximum == 0,
    )


@dataclass
class BarRow(_Rounded):
    """One labelled horizontal bar: label above, stacked segments below, total at the bar's end."""

    label: str
    href: str
    title: str
    total: int
    total_label: str
    label_y: float
    bar_y: float
    bar_height: float
    total_x: float
    total_y: float
    segments: list[Segment] = field(default_factory=list)


@dataclass
class BarChart:
    width: int
    height: int
    rows: list[BarRow]


def bar_chart(
    rows: Sequence[tuple[str, dict[str, int], str, str]],
    keys: Sequence[str],
    *,
    segment_title: Callable[[str, str, int], str],
    segment_href: Callable[[int, str], str],
    width: int = 600,
    row_height: int = 38,
    bar_height: int = 16,
) -> BarChart:
    """Horizontal stacked bars, one per (label, counts, href, title) row, scaled to the largest total.

    The label sits above its bar, so long names (rule titles, translated
    labels) never squeeze the bars; counts are printed inside segments wide
    enough to hold them and the row total follows the bar.
    """
    maximum = max((sum(c.get(k, 0) for k in keys) for _l, c, _h, _t in rows), default=0)
    total_room = 12 + CHAR_WIDTH * len(fmt(maximum))
    span = width - total_room - 2
    out = []
    for index, (label, counts, href, title) in enumerate(rows):
        y = index * row_height
        bar_y = y + 16
        total = sum(counts.get(k, 0) for k in keys)
        x = 0.0
        row = BarRow(
            label=label,
            href=href,
            title=title,
            total=total,
            total_label=fmt(total),
            label_y=y + 11,
            bar_y=bar_y,
            bar_height=bar_height,
            total_x=0.0,
            total_y=bar_y + bar_height / 2 + 4,
        )
        multi = sum(1 for k in keys if counts.get(k)) > 1  # a lone segment's count is the total already
        for key in keys:
            value = counts.get(key, 0)
            if not value:
                continue
            w = max(MIN_SEGMENT, span * value / maximum)
            text = fmt(value)
            fits = w >= CHAR_WIDTH * len(text) + 8
            row.segments.append(
                Segment(
                    key=key,
                    value=value,
                    x=x,
                    y=bar_y,
                    width=w,
                    height=bar_height,
                    title=segment_title(label, key, value),
                    href=segment_href(index, key),
                    text=text if fits and multi else "",
                    text_x=x + w / 2,
                    text_y=bar_y + bar_height / 2 + 4,
                )
            )
            x += w
        row.total_x = round(x + 6, 1)
        out.append(row)
    return BarChart(width=width, height=max(row_height, row_height * len(rows)) - 4, rows=out)

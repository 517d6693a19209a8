"""The admin index dashboard: which panels a user may see, their charts, legends and links.

Why a separate layer between the selectors and the template tag: permission
checks, admin URLs (each chart opens the matching filtered changelist) and
translated labels are decided here in plain Python, where tests can call them
without rendering a page. A panel is built only when the user may view its
model, so a panel's query is not even run for someone who cannot see it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import urlencode

from django.urls import reverse
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from accountsync.models import ChangeType
from classification import selectors as classification_selectors
from dashboard import selectors, services
from dashboard.charts import BarChart, ColumnChart, bar_chart, column_chart, fmt
from findings.models import SeverityChoices
from findings.rules import RULES_BY_CODE
from sync.models import SyncRecordStatusChoices


@dataclass
class LegendItem:
    """A colour key with its total over the panel's period, linking to the rows it counts."""

    key: str
    label: str
    value: int
    href: str

    @property
    def value_label(self) -> str:
        return fmt(self.value)


@dataclass
class Panel:
    """One dashboard card: a heading that links to the full list, a chart or an empty state, a legend."""

    key: str
    title: str
    href: str
    link_label: str
    description: str
    total: int
    total_label: str
    legend: list[LegendItem] = field(default_factory=list)
    column_chart: ColumnChart | None = None
    bar_chart: BarChart | None = None
    empty_message: str = ""
    empty_href: str = ""
    empty_link_label: str = ""
    styles: dict[str, str] = field(default_factory=dict)  # key -> #rrggbb, for keys whose colour is data

    @property
    def empty(self) -> bool:
        return self.total == 0


def _url(name: str, **params: Any) -> str:
    base = reverse(name)
    return f"{base}?{urlencode(params)}" if params else base


def day_label(day: date) -> str:
    """A short day in the active language (November 24, 11月24日)."""
    return date_format(day, "MONTH_DAY_FORMAT")


def _breakdown(day: str, total_text: str, counts: dict[str, int], labels: dict[str, str]) -> str:
    lines = [f"{day}: {total_text}"]
    lines += [f"{labels[key]}: {fmt(value)}" for key, value in counts.items() if value]
    return "\n".join(lines)


# --- instances -----------------------------------------------------------------------------


def _instances_text(n: int) -> str:
    return ngettext("%(count)s instance", "%(count)s instances", n) % {"count": fmt(n)}


INSTANCE_KEYS = ("completed", "gaps", "failed", "never", "inactive")


def instance_panel(*, can_add: bool = False) -> Panel:
    """Instances by database type, split by last sync status, inactive ones apart."""
    changelist = "admin:instances_instance_changelist"
    labels = {
        "completed": _("Succeeded"),
        "gaps": _("Completed with gaps"),
        "failed": _("Failed"),
        "never": _("Never synced"),
        "inactive": _("Inactive"),
    }
    filters = {
        "completed": {"is_active__exact": "1", "last_sync_status__exact": "completed", "coverage": "complete"},
        "gaps": {"is_active__exact": "1", "last_sync_status__exact": "completed", "coverage": "gaps"},
        "failed": {"is_active__exact": "1", "last_sync_status__exact": "failed"},
        "never": {"is_active__exact": "1", "last_sync_status__exact": ""},
        "inactive": {"is_active__exact": "0"},
    }
    rows = selectors.instance_status_by_type()
    counts = [{key: getattr(row, key) for key in INSTANCE_KEYS} for row in rows]
    total = sum(row.total for row in rows)
    chart = bar_chart(
        [
            (
                row.label,
                counts[i],
                _url(changelist, db_type__exact=row.db_type),
                _breakdown(row.label, _instances_text(row.total), counts[i], labels),
            )
            for i, row in enumerate(rows)
        ],
        INSTANCE_KEYS,
        segment_title=lambda label, key, n: f"{label} · {labels[key]}: {fmt(n)}",
        segment_href=lambda i, key: _url(changelist, db_type__exact=rows[i].db_type, **filters[key]),
    )
    legend = [
        LegendItem(key=key, label=labels[key], value=sum(c[key] for c in counts), href=_url(changelist, **filters[key]))
        for key in INSTANCE_KEYS
    ]
    return Panel(
        key="instances",
        title=_("Instances by database type"),
        href=_url(changelist),
        link_label=_("All instances"),
        description=_("Active instances by the status of their last sync; inactive instances are not synced."),
        total=total,
        total_label=_instances_text(total),
        legend=legend,
        bar_chart=chart if total else None,
        empty_message=_("No instance is registered yet."),
        empty_href=reverse("admin:instances_instance_add") if can_add else "",
        empty_link_label=_("Add an instance") if can_add else "",
    )


# --- per-day panels ------------------------------------------------------------------------


@dataclass(frozen=True)
class PerDaySpec:
    """What differs between the two per-day panels: their list, its date filter and the stacked field."""

    key: str
    changelist: str
    date_param: str  # the admin DateRangeFilter's query-string name (started, detected)
    key_param: str  # the stacked field's list filter (status__exact, change_type__exact)
    labels: dict[str, str]
    narrow: dict[str, str] = field(default_factory=dict)  # filters that keep the list to the keys counted


def _per_day_panel(
    spec: PerDaySpec, series: Sequence[selectors.DayCounts], total_text: Callable[[int], str], **texts: str
) -> Panel:
    """A stacked column per day, a legend of 30-day totals per key; every part links to its filtered list."""
    keys, labels, changelist = list(spec.labels), spec.labels, spec.changelist
    totals = {key: sum(d.counts[key] for d in series) for key in keys}
    total = sum(totals.values())
    period = {spec.date_param: "30d"}

    def day_params(i: int) -> dict[str, str]:
        day = series[i].day.isoformat()
        return {f"{spec.date_param}_from": day, f"{spec.date_param}_to": day}

    chart = column_chart(
        [(day_label(d.day), d.counts) for d in series],
        keys,
        segment_title=lambda day, key, n: f"{day} · {labels[key]}: {fmt(n)}",
        day_title=lambda day, counts: _breakdown(day, total_text(sum(counts.values())), counts, labels),
        day_href=lambda i: _url(changelist, **day_params(i), **spec.narrow),
        segment_href=lambda i, key: _url(changelist, **day_params(i), **{spec.key_param: key}),
    )
    legend = [
        LegendItem(
            key=key, label=labels[key], value=totals[key], href=_url(changelist, **period, **{spec.key_param: key})
        )
        for key in keys
    ]
    return Panel(
        key=spec.key,
        href=_url(changelist, **period, **spec.narrow),
        total=total,
        total_label=total_text(total),
        legend=legend,
        column_chart=chart,
        **texts,
    )


def sync_panel(*, now: datetime | None = None) -> Panel:
    """Instance syncs per day over 30 days, succeeded and failed stacked."""
    spec = PerDaySpec(
        key="syncs",
        changelist="admin:sync_syncinstancerecord_changelist",
        date_param="started",
        key_param="status__exact",
        labels={
            SyncRecordStatusChoices.COMPLETED.value: _("Succeeded"),
            SyncRecordStatusChoices.FAILED.value: _("Failed"),
        },
        narrow={"status__in": ",".join(selectors.SYNC_STATUSES)},  # running and cancelled ones are not drawn
    )
    return _per_day_panel(
        spec,
        selectors.syncs_per_day(now=now),
        lambda n: ngettext("%(count)s sync", "%(count)s syncs", n) % {"count": fmt(n)},
        title=_("Instance syncs per day"),
        link_label=_("Sync history"),
        description=_("Instance syncs that succeeded or failed, by the day they started, over the last 30 days."),
        empty_message=_("No instance was synced in the last 30 days."),
    )


def change_panel(*, now: datetime | None = None) -> Panel:
    """Account changes detected per day over 30 days, stacked by change type."""
    spec = PerDaySpec(
        key="changes",
        changelist="admin:accountsync_accountchangelog_changelist",
        date_param="detected",
        key_param="change_type__exact",
        labels={value: str(label) for value, label in ChangeType.choices if value in selectors.CHANGE_TYPES},
    )
    rollup = selectors.change_series(now=now)
    services.change_counts_store(rollup, now=now)  # the settled days counted live, so the next load reads them
    return _per_day_panel(
        spec,
        rollup.series,
        lambda n: ngettext("%(count)s change", "%(count)s changes", n) % {"count": fmt(n)},
        title=_("Account changes per day"),
        link_label=_("Change log"),
        description=_("Account changes detected by syncs, by type, over the last 30 days."),
        empty_message=_("No account change was detected in the last 30 days."),
    )


# --- findings ------------------------------------------------------------------------------


def finding_panel() -> Panel:
    """Open findings of high severity or worse, per rule, coloured by severity."""
    changelist = "admin:findings_finding_changelist"
    keys = list(selectors.HIGH_SEVERITIES)
    labels = {value: str(label) for value, label in SeverityChoices.choices if value in keys}
    rows = selectors.open_high_findings()
    totals = {key: sum(r.count for r in rows if r.severity == key) for key in keys}
    total = sum(totals.values())

    def rule_title(code: str) -> str:
        rule = RULES_BY_CODE.get(code)
        return f"{_(rule.title)} ({code})" if rule else code

    chart = bar_chart(
        [
            (
                rule_title(r.rule_code),
                {r.severity: r.count},
                _url(changelist, is_open__exact="1", severity__exact=r.severity, rule=r.rule_code),
                f"{rule_title(r.rule_code)} · {labels[r.severity]}: {fmt(r.count)}",
            )
            for r in rows
        ],
        keys,
        segment_title=lambda label, key, n: f"{label} · {labels[key]}: {fmt(n)}",
        segment_href=lambda i, key: _url(changelist, is_open__exact="1", severity__exact=key, rule=rows[i].rule_code),
    )
    return Panel(
        key="findings",
        title=_("Open high-severity findings"),
        href=_url(changelist, is_open__exact="1", severity__in=",".join(keys)),
        link_label=_("All open findings"),
        description=_("Open risk findings of high or critical severity, by rule."),
        total=total,
        total_label=ngettext("%(count)s open finding", "%(count)s open findings", total) % {"count": fmt(total)},
        legend=[
            LegendItem(
                key=key,
                label=labels[key],
                value=totals[key],
                href=_url(changelist, is_open__exact="1", severity__exact=key),
            )
            for key in keys
        ],
        bar_chart=chart if total else None,
        empty_message=_("No open finding of high or critical severity."),
    )


# --- classifications -----------------------------------------------------------------------

_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
_KEY = re.compile(r"^[a-z0-9_-]{1,64}$")


def classification_panel(*, now: datetime | None = None) -> Panel:
    """Accounts per classification, day by day over 30 days (stored daily), in each classification's colour.

    Why not `_per_day_panel`: these are levels, not events, so the legend shows today's count, not a 30-day sum.
    """
    days = selectors.day_window(now=now)
    categories, counts = classification_selectors.daily_counts(days=days)
    categories = [c for c in categories if _KEY.match(c.code)]
    keys = [f"cls-{c.code}" for c in categories]
    labels = {f"cls-{c.code}": c.label for c in categories}
    accounts = "admin:accountsync_instanceaccount_changelist"
    assignments = "admin:classification_classificationassignment_changelist"
    daily = "admin:classification_classificationdailycount_changelist"
    series = [(day_label(day), {f"cls-{code}": n for code, n in counts[day].items()}) for day in days]
    today = series[-1][1] if series else {}
    total = sum(today.values())

    def text(n: int) -> str:
        return ngettext("%(count)s account", "%(count)s accounts", n) % {"count": fmt(n)}

    chart = column_chart(
        series,
        keys,
        segment_title=lambda day, key, n: f"{day} · {labels[key]}: {text(n)}",
        day_title=lambda day, c: _breakdown(day, text(sum(c.values())), c, labels),
        # today: the lists of who is in; an earlier day: that day's stored counts (no list of who was in then exists)
        day_href=lambda i: _url(assignments) if i == len(days) - 1 else _url(daily, day=days[i].isoformat()),
        segment_href=lambda i, key: (
            _url(accounts, classification=key.removeprefix("cls-"))
            if i == len(days) - 1
            else _url(daily, day=days[i].isoformat(), classification__code=key.removeprefix("cls-"))
        ),
    )
    return Panel(
        key="classifications",
        title=_("Accounts per classification"),
        href=_url(assignments),
        link_label=_("Assignments"),
        description=_(
            "Active accounts in each classification, as stored each day, over the last 30 days; an account in "
            "two classifications counts in both."
        ),
        total=total,
        total_label=ngettext("%(count)s assignment today", "%(count)s assignments today", total)
        % {"count": fmt(total)},
        legend=[
            LegendItem(
                key=key,
                label=labels[key],
                value=today.get(key, 0),
                href=_url(accounts, classification=key.removeprefix("cls-")),
            )
            for key in keys
        ],
        column_chart=chart,
        empty_message=_("No account is classified yet: classification runs after each sync."),
        styles={f"cls-{c.code}": c.color if _COLOUR.match(c.color) else "#607d8b" for c in categories},
    )


# --- the whole dashboard -------------------------------------------------------------------


def dashboard_panels(user: Any, *, now: datetime | None = None) -> list[Panel]:
    """The panels `user` may view (view permission on each panel's model), in display order."""
    panels = []
    if user.has_perm("instances.view_instance"):
        panels.append(instance_panel(can_add=user.has_perm("instances.add_instance")))
    if user.has_perm("findings.view_finding"):
        panels.append(finding_panel())
    if user.has_perm("sync.view_syncinstancerecord"):
        panels.append(sync_panel(now=now))
    if user.has_perm("accountsync.view_accountchangelog"):
        panels.append(change_panel(now=now))
    if user.has_perm("classification.view_classification"):
        panels.append(classification_panel(now=now))
    return panels

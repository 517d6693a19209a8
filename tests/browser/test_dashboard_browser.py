"""The admin index dashboard in a real browser: four SVG charts over a fleet built through the ORM.

alice (WhaleFall admins) opens /admin/ and reads, without any JavaScript
library or network fetch, her instances by type and last sync status, 30 days
of instance syncs and account changes (a 1,284-account first import next to
days of two or three changes), and the open high-severity findings; the
numbers in the charts' labels are the ones the data implies. A legend entry
opens the matching filtered list. The page is saved as
docs/screenshots/dashboard.png, then rendered in Simplified Chinese.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import override

from dashboard.selectors import project_timezone
from tests.conftest import ROLE_PASSWORDS
from tests.dashboard import factories

from .conftest import SCREENSHOTS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FLEET = [  # (db_type, last_sync_status, is_active, how many)
    ("mysql", "completed", True, 5),
    ("mysql", "failed", True, 1),
    ("mysql", "", True, 1),
    ("postgresql", "completed", True, 3),
    ("postgresql", "failed", True, 1),
    ("sqlserver", "completed", True, 2),
    ("sqlserver", "completed", False, 1),
    ("oracle", "", True, 1),
]
FINDINGS = [
    ("EMPTY_PASSWORD", "critical", 2),
    ("SUPERUSER", "high", 7),
    ("PUBLIC_GRANTS", "high", 3),
    ("ANONYMOUS", "high", 1),
    ("WILDCARD_HOST", "medium", 9),
]
SPIKE_DAYS_AGO, SPIKE = 26, 1284


def noon(days_ago: int) -> datetime:
    """Noon, project time, `days_ago` days before today: far from both day edges."""
    tz = project_timezone()
    day = timezone.localdate(timezone=tz) - timedelta(days=days_ago)
    return timezone.make_aware(datetime.combine(day, datetime.min.time()), tz) + timedelta(hours=12)


def label(days_ago: int, language: str = "en") -> str:
    """The chart's day label, in `language` whatever an earlier test left active in this thread."""
    with override(language):
        day = timezone.localdate(timezone=project_timezone()) - timedelta(days=days_ago)
        return date_format(day, "MONTH_DAY_FORMAT")


@pytest.fixture
def fleet(make_instance):
    """A 15-instance fleet with 30 days of history; returns the totals the charts must show."""
    instances = []
    for db_type, status, active, n in FLEET:
        for _ in range(n):
            instances.append(make_instance(db_type=db_type, last_sync_status=status, is_active=active))
    first = instances[0]
    synced = failed = 0
    for days_ago in range(29, -1, -1):
        ok, bad = 12 + days_ago % 3, (1 if days_ago % 4 == 0 else 0) + (3 if days_ago == 8 else 0)
        factories.records(first, noon(days_ago) - timedelta(hours=11), completed=ok, failed=bad)
        synced, failed = synced + ok, failed + bad
        if days_ago % 3 == 0:
            factories.changes(first, noon(days_ago), "privileges_changed", n=2 + days_ago % 4)
        if days_ago % 5 == 1:
            factories.changes(first, noon(days_ago), "attributes_changed", n=1)
    factories.records(first, noon(31), completed=40)  # outside the 30 days
    factories.changes(first, noon(SPIKE_DAYS_AGO), "added", n=SPIKE)
    factories.changes(first, noon(2), "removed", n=2)
    factories.changes(first, noon(2), "reactivated", n=1)
    for rule, severity, n in FINDINGS:
        factories.findings(instances[1], rule, severity, n)
    factories.findings(instances[2], "SUPERUSER", "high", 4, is_open=False)  # resolved
    today_ok, today_bad = 12, 1
    return {"synced": synced, "failed": failed, "today": (today_ok, today_bad)}


def titles(page, selector: str) -> list[str]:
    return page.eval_on_selector_all(selector, "nodes => nodes.map(n => n.textContent)")


def test_dashboard_charts_show_the_fleet(admin_login, live_server, alice, fleet, tmp_path):
    page = admin_login("alice", ROLE_PASSWORDS["alice"])
    page.goto(f"{live_server.url}/admin/")
    for key in ("instances", "findings", "syncs", "changes"):
        assert page.locator(f"#wf-dash-{key} svg.wf-chart").count() == 1, key
    # the dashboard sits above the app list
    assert page.evaluate(
        "document.querySelector('.wf-dashboard').compareDocumentPosition("
        "document.querySelector('#content-main')) & Node.DOCUMENT_POSITION_FOLLOWING"
    )

    # instances: one row per type present, segments by status, inactive apart
    instances = page.locator("#wf-dash-instances")
    assert instances.locator(".wf-dash-total").text_content() == "15 instances"
    rows = titles(page, "#wf-dash-instances .wf-row-label")
    assert rows == ["MySQL / MariaDB", "PostgreSQL", "SQL Server", "Oracle"]
    totals = titles(page, "#wf-dash-instances .wf-row-total")
    assert totals == ["7", "4", "3", "1"]
    legend = {
        li.get_attribute("class"): li.locator(".wf-legend-value").text_content()
        for li in instances.locator(".wf-dash-legend li").all()
    }
    assert legend == {
        "wf-legend-completed": "10",
        "wf-legend-gaps": "0",  # completed with coverage gaps: none in this fleet
        "wf-legend-failed": "2",
        "wf-legend-never": "2",
        "wf-legend-inactive": "1",
    }
    assert "SQL Server · Inactive: 1" in titles(page, "#wf-dash-instances .wf-seg > title")

    # syncs per day: 30 columns, zero-filled, today's numbers in today's tooltip
    syncs = page.locator("#wf-dash-syncs")
    assert syncs.locator(".wf-column").count() == 30
    total = fleet["synced"] + fleet["failed"]
    assert syncs.locator(".wf-dash-total").text_content() == f"{total:,} syncs"
    assert syncs.locator(".wf-legend-completed .wf-legend-value").text_content() == f"{fleet['synced']:,}"
    assert syncs.locator(".wf-legend-failed .wf-legend-value").text_content() == str(fleet["failed"])
    ok, bad = fleet["today"]
    day_titles = titles(page, "#wf-dash-syncs .wf-day > title")
    assert day_titles[-1] == f"{label(0)}: {ok + bad} syncs\nSucceeded: {ok}\nFailed: {bad}"
    assert day_titles[0].startswith(f"{label(29)}: ")
    # the day's link is named by its title, so a screen reader reads the counts
    assert page.get_by_role("link", name=f"{label(0)}: {ok + bad} syncs").count() == 1
    assert f"{label(8)} · Failed: 4" in titles(page, "#wf-dash-syncs .wf-seg > title")
    assert titles(page, "#wf-dash-syncs .wf-axis text")[-1] == label(0)

    # changes per day: the 1,284-account import and the days with two changes, both legible
    changes = page.locator("#wf-dash-changes")
    tooltips = titles(page, "#wf-dash-changes .wf-seg > title")
    assert f"{label(SPIKE_DAYS_AGO)} · Added: 1,284" in tooltips
    assert f"{label(2)} · Removed: 2" in tooltips and f"{label(2)} · Reactivated: 1" in tooltips
    assert changes.locator(".wf-legend-added .wf-legend-value").text_content() == "1,284"
    assert "1,500" in titles(page, "#wf-dash-changes .wf-grid text")  # axis top with a thousands separator
    spike = changes.locator(f"rect.wf-fill-added[data-value='{SPIKE}']").bounding_box()
    small = changes.locator("rect.wf-fill-removed").bounding_box()
    assert spike["height"] > 100 and small["height"] >= 1.5  # a handful still shows next to the spike

    # findings: open high and critical only, worst first; medium and resolved ones left out
    findings = page.locator("#wf-dash-findings")
    assert findings.locator(".wf-dash-total").text_content() == "13 open findings"
    assert titles(page, "#wf-dash-findings .wf-row-label") == [
        "Empty password (EMPTY_PASSWORD)",
        "Superuser or equivalent (SUPERUSER)",
        "Privileges granted to PUBLIC (PUBLIC_GRANTS)",
        "Anonymous account (ANONYMOUS)",
    ]
    assert titles(page, "#wf-dash-findings .wf-row-total") == ["2", "7", "3", "1"]

    # nothing on the page came from another host
    hosts = page.evaluate("performance.getEntriesByType('resource').map(e => new URL(e.name).host)")
    assert set(hosts) <= {live_server.url.split("//")[1]}

    # the docs show the dashboard and the start of the app list, not the whole page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), clip={"x": 0, "y": 0, "width": 1366, "height": 860})

    # a legend entry opens the matching filtered list
    findings.locator(".wf-legend-high a").click()
    page.wait_for_selector("#result_list")
    assert "severity__exact=high" in page.url and "is_open__exact=1" in page.url
    assert page.locator("#result_list tbody tr").count() == 11


def test_dashboard_in_simplified_chinese(admin_login, live_server, alice, fleet, tmp_path):
    page = admin_login("alice", ROLE_PASSWORDS["alice"])
    page.context.add_cookies([{"name": "django_language", "value": "zh-hans", "url": live_server.url}])
    page.goto(f"{live_server.url}/admin/")
    assert page.locator("html").get_attribute("lang") == "zh-hans"
    assert page.locator(".wf-dashboard svg.wf-chart").count() == 4
    today = label(0, "zh-hans")
    assert today.endswith("日")
    assert titles(page, "#wf-dash-syncs .wf-axis text")[-1] == today
    legend = page.locator("#wf-dash-syncs .wf-dash-legend").text_content()
    assert "成功" in legend and "失败" in legend  # Succeeded / Failed, from the catalog
    # Chinese digit grouping: no separator
    assert page.locator("#wf-dash-changes .wf-legend-added .wf-legend-value").text_content() == "1284"
    page.screenshot(path=str(tmp_path / "dashboard-zh.png"), full_page=True)
    print(f"zh-hans screenshot: {tmp_path / 'dashboard-zh.png'}")


def test_viewer_on_an_empty_install_sees_the_empty_states(admin_login, live_server, charlie, tmp_path):
    page = admin_login("charlie", ROLE_PASSWORDS["charlie"])
    page.goto(f"{live_server.url}/admin/")
    assert page.locator(".wf-dash-panel").count() == 5  # the four, and accounts per classification
    assert page.locator(".wf-dashboard svg.wf-chart").count() == 0
    assert page.locator(".wf-dash-empty").all_text_contents() == [
        "No instance is registered yet.",
        "No open finding of high or critical severity.",
        "No instance was synced in the last 30 days.",
        "No account change was detected in the last 30 days.",
        "No account is classified yet: classification runs after each sync.",
    ]
    assert page.locator(".wf-dashboard a[href$='/add/']").count() == 0  # read-only: no way to add from here
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=str(tmp_path / "dashboard-empty-dark.png"), full_page=True)
    print(f"empty dashboard, dark theme: {tmp_path / 'dashboard-empty-dark.png'}")

"""The dashboard on the admin index: permission-aware, linked to filtered lists, constant queries, two languages."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext, override

from dashboard import services
from dashboard.panels import dashboard_panels, sync_panel
from tests.dashboard import factories

pytestmark = pytest.mark.django_db

PANELS = ("instances", "findings", "syncs", "changes", "classifications")  # classifications: empty in `fleet`


def index(user, **headers) -> str:
    client = Client()
    client.force_login(user)
    response = client.get("/admin/", **headers)
    assert response.status_code == 200
    return response.content.decode()


def panels_in(html: str) -> list[str]:
    return re.findall(r'id="wf-dash-(\w+)"', html)


@pytest.fixture
def fleet(make_instance):
    """A little of everything, today and a few days ago, plus rows the dashboard must leave out."""
    mysql = make_instance("mysql", last_sync_status="completed")
    make_instance("mysql", last_sync_status="failed")
    make_instance("mysql")  # never synced
    make_instance("postgresql", last_sync_status="completed", is_active=False)
    now = timezone.now()
    factories.records(mysql, now, completed=4, failed=2, other={"running": 1})
    factories.records(None, now - timedelta(days=3), completed=6)
    factories.records(None, now - timedelta(days=45), failed=9)  # too old
    factories.changes(mysql, now, "added", 3)
    factories.changes(mysql, now - timedelta(days=2), "privileges_changed", 5)
    factories.findings(mysql, "SUPERUSER", "high", 4)
    factories.findings(mysql, "EMPTY_PASSWORD", "critical", 1)
    factories.findings(mysql, "WILDCARD_HOST", "medium", 2)
    factories.findings(mysql, "ANONYMOUS", "high", 3, is_open=False)
    return mysql


def test_dashboard_sits_above_the_app_list_with_four_svg_charts(alice, fleet):
    html = index(alice)
    assert panels_in(html) == list(PANELS)
    assert html.index('class="wf-dashboard"') < html.index('id="content-main"')
    assert html.count('<svg class="wf-chart') == 4 and html.count('role="group"') == 4
    assert 'href="/static/dashboard/dashboard.css"' in html
    assert "<script" not in html[html.index('class="wf-dashboard"') : html.index('id="content-main"')]
    # every chart has an accessible name, a description and a legend
    for key in PANELS[:4]:  # the classifications panel is empty in `fleet` (tests/classification/test_admin.py)
        assert f'aria-labelledby="wf-{key}-title wf-{key}-desc"' in html
    assert html.count('class="wf-dash-legend"') == 4
    assert "4 instances" in html and "12 syncs" in html and "8 changes" in html and "5 open findings" in html


def test_viewer_sees_every_panel_read_only(charlie, bob):
    """An empty install: charlie (Viewers) gets the empty states and no way to add; bob (Operators) may add."""
    html = index(charlie)
    assert panels_in(html) == list(PANELS)
    assert "wf-chart" not in html
    assert "No instance is registered yet." in html
    assert "No instance was synced in the last 30 days." in html
    assert "No account change was detected in the last 30 days." in html
    assert "No open finding of high or critical severity." in html
    assert "/admin/instances/instance/add/" not in html
    assert 'href="/admin/instances/instance/add/">Add an instance</a>' in index(bob)


def staff_with(django_user_model, *codenames: str):
    user = django_user_model.objects.create_user("limited", "limited@example.com", "x-Pa55-word", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


def test_panels_follow_view_permissions_and_skip_the_queries_of_hidden_ones(django_user_model, fleet):
    user = staff_with(django_user_model, "view_instance", "view_accountchangelog")
    client = Client()
    client.force_login(user)
    with CaptureQueriesContext(connection) as queries:
        html = client.get("/admin/").content.decode()
    assert panels_in(html) == ["instances", "changes"]
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert "sync_instance_records" not in sql and "findings_finding" not in sql


def test_no_view_permission_no_dashboard(django_user_model, fleet):
    html = index(staff_with(django_user_model))
    assert "wf-dashboard" not in html and panels_in(html) == []


def result_count(client: Client, href: str) -> int:
    response = client.get(href)
    assert response.status_code == 200, href
    return response.context["cl"].result_count


def test_every_link_opens_a_list_with_exactly_the_rows_it_counts(alice, fleet):
    """Headings, legends, bars and segments: the filtered changelist shows the number the chart shows."""
    client = Client()
    client.force_login(alice)
    checked = 0
    for panel in dashboard_panels(alice):
        if panel.key != "instances":  # the instance heading lists every instance, inactive ones included
            assert result_count(client, panel.href) == panel.total, panel.key
        for item in panel.legend:
            assert result_count(client, item.href) == item.value, item.href
            checked += 1
        chart = panel.bar_chart or panel.column_chart
        parts = chart.rows if panel.bar_chart else [c for c in chart.columns if c.total]
        for part in parts:
            assert result_count(client, part.href) == part.total, part.href
            for segment in part.segments:
                assert result_count(client, segment.href) == segment.value, segment.href
                checked += 1
    assert checked >= 20


def test_query_count_stays_constant_when_rows_grow(alice, fleet, make_instance, django_assert_max_num_queries):
    client = Client()
    client.force_login(alice)
    with CaptureQueriesContext(connection) as few:
        assert client.get("/admin/").status_code == 200
    now = timezone.now()
    for db_type in ("postgresql", "sqlserver", "oracle"):
        for status in ("completed", "failed", ""):
            make_instance(db_type, last_sync_status=status)
    for days_ago in range(30):
        factories.records(None, now - timedelta(days=days_ago), completed=40, failed=days_ago % 5)
        factories.changes(fleet, now - timedelta(days=days_ago), "attributes_changed", 25)
    for code in ("PUBLIC_GRANTS", "ANONYMOUS"):
        factories.findings(fleet, code, "high", 30)
    # the first load stored the settled days of the change chart; forget them so this load is cold again
    services.change_counts_reset()
    with django_assert_max_num_queries(len(few)):
        html = client.get("/admin/").content.decode()
    assert "13 instances" in html and "758 changes" in html
    # warm: the settled days are read back, not inserted again
    with CaptureQueriesContext(connection) as warm:
        html = client.get("/admin/").content.decode()
    assert "758 changes" in html
    assert len(warm) == len(few) - 1
    assert not any(q["sql"].startswith("INSERT") for q in warm.captured_queries)


def test_thousands_and_single_digits_render_legibly(alice, make_instance):
    now = timezone.now()
    factories.records(None, now, completed=12_345)
    factories.records(None, now - timedelta(days=1), failed=1)
    html = index(alice)
    assert "12,346 syncs" in html
    assert '<strong class="wf-legend-value">12,345</strong>' in html
    assert '<strong class="wf-legend-value">1</strong>' in html
    assert ">15,000</text>" in html  # the axis top, grouped
    chart = sync_panel().column_chart
    failed = next(s for c in chart.columns for s in c.segments if s.key == "failed")
    assert failed.value == 1 and failed.height >= 2
    assert re.search(r"\d,\d{3}\.\d", html) is None  # no grouped coordinates anywhere in the SVG


def test_renders_in_simplified_chinese(alice, fleet):
    html = index(alice, HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert '<html lang="zh-hans"' in html
    assert panels_in(html) == list(PANELS) and html.count('<svg class="wf-chart') == 4
    assert "成功" in html and "失败" in html  # Succeeded / Failed from the catalog
    with override("zh-hans"):
        today = date_format(timezone.localdate(), "MONTH_DAY_FORMAT")
        title = gettext("Instances by database type")
    assert title != "Instances by database type" and f">{title}</a></h2>" in html  # the panels' own strings too
    assert today.endswith("日") and f">{today}</text>" in html  # the last x-axis label
    assert re.search(r'(x|y|width|height)="\d+,\d', html) is None  # coordinates are never localized

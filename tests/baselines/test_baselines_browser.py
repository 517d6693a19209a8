"""Browser: approve from the accounts list through the confirmation page, then read the baseline, its drift and a
version at 1366 px, with names long enough to break a layout; nothing may scroll sideways or be clipped."""

from __future__ import annotations

import pytest

from baselines.models import Baseline, BaselineVersion
from baselines.services import baseline_approve, baselines_evaluate
from tests.browser.conftest import overflow, screenshot
from tests.conftest import ROLE_PASSWORDS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

LONG = "payments-settlement-eu-west-1-primary-cluster-node"
SCOPE = f"object:warehouse_analytics.customer_lifetime_value_snapshots_by_region_and_quarter_{LONG}"


def login(page, live_server) -> None:
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", ROLE_PASSWORDS["alice"])
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")
    page.evaluate("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")


def test_approve_in_the_browser_and_read_the_drift_without_sideways_scrolling(
    page,
    live_server,
    alice,
    apply,
    pg,
):
    role = f"reporting_readers_{LONG}"
    user = f"analytics_service_account_{LONG}"
    grants = {role: [(SCOPE, "SELECT")], user: [(f"{SCOPE}_2", "SELECT", True)]}
    accounts = apply(grants, {user: [role]}, role_names=(role,))
    login(page, live_server)

    # the accounts list: tick the user, run the action, get the confirmation page, comment, approve
    page.goto(f"{live_server.url}/admin/accountsync/instanceaccount/?q=analytics_service_account")
    page.check(f"input[name=_selected_action][value='{accounts[user].pk}']")
    page.select_option("select[name=action]", "approve_accounts_action")
    page.click("button[name=index]")
    page.wait_for_selector("#wf-approve-baseline")
    assert overflow(page) == []
    page.fill("textarea[name=comment]", "CHG-4711: the analytics service reads the warehouse")
    page.click("#wf-approve-baseline")
    page.wait_for_selector(".messagelist .success")
    assert "Approved 1 baseline" in page.inner_text(".messagelist")
    version = BaselineVersion.objects.get()
    assert version.comment == "CHG-4711: the analytics service reads the warehouse"
    assert version.approved_by == alice

    # drift: the role gains a privilege, the user drifts through it
    baseline_approve(kind="instance", subject=pg, comment="the whole instance", user=alice)
    apply({**grants, role: [(SCOPE, "SELECT"), (SCOPE, "DELETE")]}, {user: [role]}, role_names=(role,))
    baselines_evaluate(instance=pg)
    baseline = Baseline.objects.get(kind="instance")  # the newest approval is the reference of both accounts
    page.goto(f"{live_server.url}/admin/baselines/baseline/{baseline.pk}/change/")
    page.wait_for_selector("#wf-open-drift")
    assert f"+ DELETE on {SCOPE} (via {role})" in page.inner_text("#wf-open-drift")
    assert overflow(page) == []
    screenshot(page, "baseline-drift")

    page.goto(f"{live_server.url}/admin/baselines/baselineversion/{version.pk}/change/")
    page.wait_for_selector("#wf-entries")
    page.click("#wf-entries summary")
    assert f"{SCOPE} · SELECT · via {role}" in page.inner_text("#wf-entries")
    assert overflow(page) == []

    for url in ("/admin/baselines/baseline/", "/admin/baselines/baselineversion/"):
        page.goto(f"{live_server.url}{url}")
        page.wait_for_selector("#result_list")
        assert overflow(page) == [], url

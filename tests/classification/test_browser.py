"""The classification pages and the accounts list's new column at 1366 px: nothing scrolls sideways or is cut off.

Real chromium (tests/browser/conftest.py), a live server, data from the real engine; a long rule,
long account names and an account in every classification (the widest column).
"""

from __future__ import annotations

import pytest

from accountsync.adapters.base import Privilege
from accountsync.models import InstanceAccount
from classification.models import Classification, ClassificationRule
from classification.services import manual_assign, rule_save
from tests.browser.conftest import overflow
from tests.classification.helpers import apply_and_classify, mysql_account

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

LONG = "payments_settlement_eu_west_1_primary_cluster_node_reporting"


@pytest.fixture
def data(make_instance):
    inst = make_instance("mysql", name="payments-settlement-eu-west-1-primary", environment="production")
    apply_and_classify(
        inst,
        mysql_account(f"{LONG}_su", Privilege("global", "ALL PRIVILEGES")),
        mysql_account(f"{LONG}_app", Privilege("database:sales", "INSERT"), host="10.200.300.400.example.internal"),
        mysql_account(f"{LONG}_role", kind="role"),
    )
    category = Classification.objects.create(code="very-long-classification-code-for-layout", name="A long name " * 4)
    rule = rule_save(
        rule=ClassificationRule(
            classification=category,
            name="every operator in one long rule",
            expression={"all": [{"name": f"{LONG}_*"}, {"has_privilege": {"privilege": ["INSERT", "UPDATE", "DELETE"],
                        "within": f"database:{LONG}_database_with_a_long_name_*"}}, {"not": {"kind": "role"}}]},
        )
    )  # fmt: skip
    for i in range(6):  # the shipped defaults may have been flushed by an earlier transactional test
        Classification.objects.get_or_create(code=f"layout-{i}", defaults={"name": f"Layout {i}", "risk_level": 1 + i})
    su = InstanceAccount.objects.get(identity__startswith=f"'{LONG}_su'")
    for found in Classification.objects.all():
        manual_assign(account=su, classification=found, reason="layout: an account in every classification")
    return rule


def test_pages_fit_at_1366(admin_login, live_server, data) -> None:
    page = admin_login()
    page.evaluate("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")  # as tests/browser do
    urls = {
        "accounts": "/admin/accountsync/instanceaccount/",
        "classifications": "/admin/classification/classification/",
        "rules": "/admin/classification/classificationrule/",
        "rule": f"/admin/classification/classificationrule/{data.pk}/change/",
        "preview": f"/admin/classification/classificationrule/{data.pk}/preview/",
        "assignments": "/admin/classification/classificationassignment/",
        "manual": "/admin/classification/manualassignment/",
        "dashboard": "/admin/",
    }
    problems = {}
    for name, url in urls.items():
        page.goto(f"{live_server.url}{url}")
        found = overflow(page)
        if found:
            problems[name] = found
    assert problems == {}, "\n".join(f"{k}: {v}" for k, v in problems.items())
    page.goto(f"{live_server.url}/admin/accountsync/instanceaccount/?classification=layout-0")
    assert page.locator("#result_list .wf-cls-label").count() >= 7  # su in every classification

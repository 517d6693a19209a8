"""A sync record's page links to its server facts, and both pages fit 1366 px (issue #19 part 2).

Why in a browser: the facts page shows a version's JSON (Oracle: thousands of PUBLIC grants,
object names with no space to break at); only a real layout shows whether it pushes the page
sideways. The Oracle instance is synced through the real engine over the recorded 19c rows.
"""

from __future__ import annotations

import pytest

from accountsync.models import InstanceServerFacts
from sync.models import SyncInstanceRecord
from sync.services import sync_accounts
from tests.accountsync.oracle_rows import load, recorded_server

from .conftest import overflow

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

LONG_NAME = "WF_" + "VERY_LONG_DICTIONARY_VIEW_NAME_WITHOUT_ANY_SPACE_" * 4


def test_record_page_links_to_the_facts_and_both_fit(admin_login, live_server, monkeypatch, make_instance) -> None:
    fixture = load("catalog_19c.json")
    fixture["views"]["DBA_TAB_PRIVS"]["rows"] += [
        ["PUBLIC", "SYS", f"{LONG_NAME}{i}", "SYS", "SELECT", "NO", "NO", "NO", "VIEW", "NO"] for i in range(2000)
    ]
    recorded_server(monkeypatch, fixture)
    instance = make_instance("oracle", port=1521, database_name="ORCLPDB1", name="ora-browser")
    result = sync_accounts(instance=instance, sync_type="scheduled_task")
    assert result["success"], result["message"]
    record = SyncInstanceRecord.objects.get(instance=instance)
    version = InstanceServerFacts.objects.get(instance=instance)

    page = admin_login()
    page.goto(f"{live_server.url}/admin/sync/syncinstancerecord/{record.pk}/change/")
    link = page.locator(f'a[href$="/admin/accountsync/instanceserverfacts/{version.pk}/change/"]')
    assert link.count() == 1 and f"version {version.pk}" in link.inner_text()
    assert overflow(page) == []
    link.click()
    page.wait_for_selector(".wf-json")
    assert "public_grants: " in page.content()
    shown = page.locator(".wf-json").inner_text()
    assert f"{LONG_NAME}0" in shown and len(shown) <= 200_000  # cut, and says where the whole version is
    assert f"GET /api/v1/server-facts/{version.pk}/ returns all" in page.content()
    assert overflow(page) == []
    page.goto(f"{live_server.url}/admin/accountsync/instanceserverfacts/")
    assert page.locator("#result_list tbody tr").count() == 1
    assert overflow(page) == []

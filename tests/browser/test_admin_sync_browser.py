"""The admin as the product's UI, in a real browser against a live server and a real django-q2 worker.

alice selects a live MariaDB (read with a least-privilege monitoring user this
test creates) and an instance on a closed port, runs "Sync selected instances",
and watches the batch-details page update itself until the session fails with
one success and one classified error; she retries the failed instance, filters
the sync records, reads the accounts and the coloured change log. charlie (a
viewer) sees no way to start a sync. The running session, the sync records, the
instances and the Chinese batch details are saved as screenshots; the other pages'
screenshots come from the tour on richer live data (test_tour_browser.py).
"""

from __future__ import annotations

import re
import secrets
import socket
from collections.abc import Iterator

import pytest
from django.utils import timezone

from accountsync.models import AccountChangeLog, InstanceAccount
from instances.models import Credential, Instance, Tag
from sync.models import SyncSession
from tests.cluster.conftest import wait_for
from tests.conftest import ROLE_PASSWORDS
from tests.livedb import MARIADB

from .conftest import screenshot

pytestmark = [
    pytest.mark.browser,
    pytest.mark.live,
    pytest.mark.cluster,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(420),
]

MONITOR_TABLES = ("global_priv", "db", "tables_priv", "columns_priv", "procs_priv", "proxies_priv", "roles_mapping")
WAIT_MS = 150_000


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def monitored_mariadb(mariadb_admin, unique_prefix) -> Iterator[dict[str, str]]:
    """A least-privilege monitoring user (docs/monitoring-accounts.md) and an app user to watch."""
    cur = mariadb_admin.cursor()
    names = {
        "monitor": f"{unique_prefix}_mon",
        "app": f"{unique_prefix}_app",
        "db": f"{unique_prefix}_db",
        "password": secrets.token_urlsafe(18),
    }
    cur.execute(f"CREATE USER '{names['monitor']}'@'%%' IDENTIFIED BY %s", [names["password"]])
    for table in MONITOR_TABLES:
        cur.execute(f"GRANT SELECT ON mysql.{table} TO '{names['monitor']}'@'%'")
    cur.execute(f"CREATE DATABASE `{names['db']}`")
    cur.execute(f"CREATE USER '{names['app']}'@'%%' IDENTIFIED BY %s", [secrets.token_urlsafe(12)])
    cur.execute(f"GRANT SELECT, INSERT ON `{names['db']}`.* TO '{names['app']}'@'%'")
    try:
        yield names
    finally:
        cur.execute(f"DROP USER IF EXISTS '{names['monitor']}'@'%', '{names['app']}'@'%'")
        cur.execute(f"DROP DATABASE IF EXISTS `{names['db']}`")


def make_fleet(monitor: dict[str, str]) -> tuple[Instance, Instance]:
    cred = Credential(name="mariadb-monitor", username=monitor["monitor"])
    cred.set_password(monitor["password"])
    cred.save()
    dead_cred = Credential(name="legacy-monitor", username="whalefall")
    dead_cred.set_password(secrets.token_urlsafe(12))
    dead_cred.save()
    prod, legacy = Tag.objects.create(name="prod", color="#b91c1c"), Tag.objects.create(name="legacy")
    live = Instance.objects.create(
        name="maria-live",
        db_type="mysql",
        host="127.0.0.1",
        port=MARIADB["port"],
        credential=cred,
        environment="production",
    )
    live.tags.add(prod)
    dead = Instance.objects.create(
        name="maria-unreachable",
        db_type="mysql",
        host="127.0.0.1",
        port=closed_port(),
        credential=dead_cred,
        environment="staging",
        options={"connect_timeout": 2},
    )
    dead.tags.add(legacy)
    Instance.objects.create(
        name="pg-archive",
        db_type="postgresql",
        host="127.0.0.1",
        port=closed_port(),
        credential=dead_cred,
        environment="development",
        is_active=False,
    )
    return live, dead


def login(page, live_server, username: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", ROLE_PASSWORDS[username])
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")
    # screenshots read better with the navigation sidebar collapsed (Django keeps that in localStorage)
    page.evaluate("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")


def session_pk_from(url: str) -> int:
    match = re.search(r"/admin/sync/syncsession/(\d+)/change/", url)
    assert match, url
    return int(match.group(1))


def run_action_on(page, live_server, instances: list[Instance]) -> int:
    page.goto(f"{live_server.url}/admin/instances/instance/")
    for inst in instances:
        page.check(f"input[name=_selected_action][value='{inst.pk}']")
    page.select_option("select[name=action]", "sync_selected")
    page.click("button[name=index]")
    page.wait_for_url(re.compile(r"/admin/sync/syncsession/\d+/change/$"))
    return session_pk_from(page.url)


def rows_text(page) -> list[str]:
    return [t.strip() for t in page.locator("#wf-records tbody tr").all_inner_texts()]


def test_sync_from_the_instance_list_watch_live_retry_filter_and_browse(
    page, live_server, qcluster, monitored_mariadb, mariadb_admin, alice, charlie
):
    live, dead = make_fleet(monitored_mariadb)
    login(page, live_server, "alice")
    polls: list[str] = []
    page.on("request", lambda request: polls.append(request.url) if "/progress/" in request.url else None)

    # --- the action starts a manual_batch on the workers and opens its page -------------------
    pk = run_action_on(page, live_server, [live, dead])
    assert "started for 2 instances on the workers" in page.text_content(".messagelist")
    session = SyncSession.objects.get(pk=pk)
    assert session.sync_type == "manual_batch" and session.created_by == alice
    # no worker yet: the page opens on a running session with two pending instances
    assert page.get_attribute(".wf-session", "data-running") == "1"
    assert page.text_content("#wf-waiting") == "2"
    screenshot(page, "session-running")
    # the worker starts now; the page polls its JSON view and redraws itself, with no reload from here
    cluster = qcluster(workers=2)
    page.wait_for_selector("#wf-status.wf-badge-failed", timeout=WAIT_MS)
    assert polls and all(url.endswith(f"/admin/sync/syncsession/{pk}/progress/") for url in polls)
    assert page.text_content("#wf-succeeded") == "1"
    assert page.text_content("#wf-failed") == "1"
    rows = {r.split("\t")[0]: r for r in rows_text(page)}
    assert "Completed" in rows["maria-live"], rows
    assert "[connection] maria-unreachable:" in rows["maria-unreachable"], rows
    assert monitored_mariadb["password"] not in page.content()
    synced = int(page.text_content("#wf-accounts"))
    assert synced >= 2 and InstanceAccount.objects.filter(instance=live).count() == synced
    assert page.locator("#wf-cancel").count() == 0

    # --- retry failed: a new session with only the unreachable instance ----------------------
    page.click("#wf-retry")
    page.wait_for_url(re.compile(r"/admin/sync/syncsession/\d+/change/$"))
    retry_pk = session_pk_from(page.url)
    assert retry_pk != pk
    assert "Retrying 1 failed instance" in page.text_content(".messagelist")
    page.wait_for_selector("#wf-status.wf-badge-failed", timeout=WAIT_MS)
    assert [r.split("\t")[0] for r in rows_text(page)] == ["maria-unreachable"]
    assert page.text_content("#wf-total") == "1"
    assert SyncSession.objects.get(pk=retry_pk).retry_of_id == pk
    assert page.locator(f"a[href$='/admin/sync/syncsession/{pk}/change/']").count() == 1

    # --- a change on the server, synced again: green grant / red revoke lines ----------------
    cur = mariadb_admin.cursor()
    app = f"'{monitored_mariadb['app']}'@'%'"
    cur.execute(f"REVOKE INSERT ON `{monitored_mariadb['db']}`.* FROM {app}")
    cur.execute(f"GRANT UPDATE ON `{monitored_mariadb['db']}`.* TO {app} WITH GRANT OPTION")
    third = run_action_on(page, live_server, [live])
    page.wait_for_selector("#wf-status:not(.wf-badge-running)", timeout=WAIT_MS)
    assert page.locator("#wf-status.wf-badge-completed").count() == 1, rows_text(page)
    wait_for(lambda: SyncSession.objects.get(pk=third).status == "completed", 10, "the third session", cluster)

    # --- the sync records list, filtered by type, status and date ----------------------------
    page.goto(f"{live_server.url}/admin/sync/syncsession/")
    assert page.locator("#result_list tbody tr").count() == 3
    page.click("#changelist-filter a:text-is('Manual (batch)')")
    page.click("#changelist-filter a:text-is('Failed')")
    page.click("#changelist-filter a:text-is('Today')")
    assert (
        "sync_type__exact=manual_batch" in page.url
        and "status__exact=failed" in page.url
        and "started=today" in page.url
    )
    ids = page.locator("#result_list tbody tr th").all_inner_texts()
    assert sorted(ids) == sorted(str(s.session_id)[:8] for s in SyncSession.objects.filter(pk__in=[pk, retry_pk]))
    today = timezone.localdate().isoformat()
    page.fill(".wf-date-range input[name=started_from]", today)
    page.fill(".wf-date-range input[name=started_to]", today)
    page.click(".wf-date-range input[type=submit]")
    assert page.locator("#result_list tbody tr").count() == 2  # type and status filters kept
    page.fill(".wf-date-range input[name=started_from]", "2026-12-31")
    page.fill(".wf-date-range input[name=started_to]", "2026-01-01")
    page.click(".wf-date-range input[type=submit]")
    assert "starts (2026-12-31) after it ends (2026-01-01)" in page.text_content(".messagelist")
    page.goto(f"{live_server.url}/admin/sync/syncsession/")
    screenshot(page, "sync-records")

    # --- accounts: search, the readable snapshot and its history -----------------------------
    page.goto(f"{live_server.url}/admin/accountsync/instanceaccount/?q={monitored_mariadb['app']}")
    assert page.locator("#result_list tbody tr").count() == 1
    # by its whole text: the list marks where a long name may wrap (<wbr>), which :text-is() does not read through
    page.locator("#result_list").get_by_text(f"'{monitored_mariadb['app']}'@'%'", exact=True).click()
    page.wait_for_selector(".wf-privs")
    privs = page.text_content(".wf-privs")
    assert f"Database {monitored_mariadb['db']}" in privs and "SELECT" in privs and "UPDATE" in privs
    assert "INSERT" not in privs
    assert page.locator(".wf-diff-revoke").filter(has_text="INSERT").count() == 1
    assert page.locator(".wf-diff-grant").filter(has_text="UPDATE").count() == 1
    page.goto(f"{live_server.url}/admin/accountsync/instanceaccount/?instance__id__exact={live.pk}&grant_admin=1")
    assert monitored_mariadb["app"] in page.text_content("#result_list")

    # --- change log: the diff as coloured lines ------------------------------------------------
    page.goto(
        f"{live_server.url}/admin/accountsync/accountchangelog/"
        f"?change_type__exact=privileges_changed&instance__id__exact={live.pk}"
    )
    assert page.locator(".wf-diff-revoke").filter(has_text="INSERT").count() >= 1
    assert AccountChangeLog.objects.filter(account__username=monitored_mariadb["app"]).count() == 2

    # --- the instance pages -------------------------------------------------------------------
    page.goto(f"{live_server.url}/admin/instances/instance/{live.pk}/change/")
    assert page.locator("#wf-instance-records tbody tr").count() == 2
    page.goto(f"{live_server.url}/admin/instances/instance/")
    assert page.locator("#wf-sync-all").count() == 1
    screenshot(page, "instances")

    # --- charlie, a viewer who reads Chinese: no sync action, no button, no retry ---------------
    login(page, live_server, "charlie")
    # the language a user chose (Django's language cookie) wins over the browser's
    page.context.add_cookies([{"name": "django_language", "value": "zh-hans", "url": live_server.url}])
    page.goto(f"{live_server.url}/admin/instances/instance/")
    options = page.locator("select[name=action] option").evaluate_all("els => els.map(e => e.value)")
    assert "sync_selected" not in options and "test_connection" not in options  # both need run_sync
    assert page.locator("#wf-sync-all").count() == 0
    page.goto(f"{live_server.url}/admin/sync/syncsession/{pk}/change/")
    assert page.locator("#wf-status.wf-badge-failed").count() == 1
    assert page.locator("#wf-retry").count() == 0 and page.locator("#wf-cancel").count() == 0
    assert page.text_content("#content h1") == "批次详情" and "已同步账户" in page.text_content(".wf-cards")
    screenshot(page, "session-batch-details-zh")
    assert SyncSession.objects.count() == 3

"""Issue #22, done when: the admin as a new user meets it, at 1366 px, on live MariaDB and PostgreSQL data.

A dozen realistic accounts are made on the local servers (uniquely named, dropped afterwards): roles
with default and non-default memberships and an admin option, a grant option, a wildcard host, a
password-less login, a locked and an expired account, a PostgreSQL login that only reaches its role
with SET ROLE. alice registers them (a least-privilege MariaDB monitor, PostgreSQL through trust with an
empty password), syncs, the servers change, and a second session with an unreachable instance fails
for one of three. Then she walks the pages: dashboard, instance (Test connection, Sync now),
credential, session, accounts, account, change log, change, findings. No page scrolls sideways or
clips a table (tests/browser/conftest.py OVERFLOW_JS), and each is saved as a screenshot
(``WHALEFALL_SCREENSHOTS=docs/screenshots`` refreshes the README's copies).

Then the same walk in Simplified Chinese (Accept-Language zh-CN and the language cookie zh-hans): the
pages fit 1366 px there too, and what the English text comes from code rather than a catalog line
(finding rule titles, "Created at"/"Updated at", the tag picker, django-q2's sidebar section, status
words, the stored sync error) is Chinese. Screenshots get a ``-zh`` suffix (the session's is ``session-zh``:
``session-batch-details-zh`` is test_admin_sync_browser's).
"""

from __future__ import annotations

import json
import re
import secrets
import socket
from collections.abc import Iterator

import pytest

from accountsync.models import AccountChangeLog, InstanceAccount
from findings.models import Finding
from instances.models import Credential, Instance, Tag
from sync.models import SyncSession
from sync.services import sync_session_run, sync_session_start
from tests.conftest import ROLE_PASSWORDS
from tests.livedb import MARIADB, POSTGRES

from .conftest import overflow, screenshot

pytestmark = [
    pytest.mark.browser,
    pytest.mark.live,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]

MONITOR_TABLES = ("global_priv", "db", "tables_priv", "columns_priv", "procs_priv", "proxies_priv", "roles_mapping")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def maria_fleet(mariadb_admin, unique_prefix) -> Iterator[dict[str, str]]:
    """Ten MariaDB accounts (two of them roles) and a least-privilege monitor, all dropped afterwards."""
    p = unique_prefix
    cur = mariadb_admin.cursor()
    names = {"p": p, "db": f"{p}_shop", "monitor": f"{p}_mon", "password": secrets.token_urlsafe(18)}
    users = {
        "app": "'%'",
        "bob": "'%'",
        "report": "'10.0.%'",
        "etl": "'localhost'",
        "dba": "'localhost'",
        "nopw": "'localhost'",
        "locked": "'%'",
        "old": "'%'",
    }
    created: list[str] = []
    roles: list[str] = []
    try:
        cur.execute(f"CREATE DATABASE `{names['db']}`")
        cur.execute(f"CREATE TABLE `{names['db']}`.orders (id INT PRIMARY KEY, total DECIMAL(10,2))")
        cur.execute(f"CREATE USER '{names['monitor']}'@'%%' IDENTIFIED BY %s", [names["password"]])
        created.append(f"'{names['monitor']}'@'%'")
        for table in MONITOR_TABLES:
            cur.execute(f"GRANT SELECT ON mysql.{table} TO '{names['monitor']}'@'%'")
        for role in ("readers", "writers"):
            cur.execute(f"CREATE ROLE `{p}_{role}`")
            roles.append(f"`{p}_{role}`")
        cur.execute(f"GRANT SELECT ON `{names['db']}`.* TO `{p}_readers`")
        cur.execute(f"GRANT INSERT, UPDATE ON `{names['db']}`.orders TO `{p}_writers`")
        for user, host in users.items():
            identity = f"'{p}_{user}'@{host}"
            if user == "nopw":
                cur.execute(f"CREATE USER {identity}")
            else:
                escaped = identity.replace("%", "%%")  # the driver formats a statement that has parameters
                cur.execute(f"CREATE USER {escaped} IDENTIFIED BY %s", [secrets.token_urlsafe(12)])
            created.append(identity)
        db = f"`{names['db']}`"
        cur.execute(f"GRANT SELECT, INSERT ON {db}.* TO '{p}_app'@'%'")
        cur.execute(f"GRANT SELECT ON {db}.orders TO '{p}_bob'@'%' WITH GRANT OPTION")
        cur.execute(f"GRANT `{p}_readers` TO '{p}_bob'@'%'")
        cur.execute(f"GRANT `{p}_writers` TO '{p}_bob'@'%' WITH ADMIN OPTION")
        cur.execute(f"SET DEFAULT ROLE `{p}_readers` FOR '{p}_bob'@'%'")
        cur.execute(f"GRANT `{p}_readers` TO '{p}_report'@'10.0.%'")
        cur.execute(f"SET DEFAULT ROLE `{p}_readers` FOR '{p}_report'@'10.0.%'")
        cur.execute(f"GRANT ALL ON {db}.* TO '{p}_etl'@'localhost'")
        cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{p}_dba'@'localhost' WITH GRANT OPTION")
        cur.execute(f"GRANT SELECT ON {db}.orders TO '{p}_locked'@'%'")
        cur.execute(f"ALTER USER '{p}_locked'@'%' ACCOUNT LOCK")
        cur.execute(f"ALTER USER '{p}_old'@'%' PASSWORD EXPIRE")
        yield names
    finally:
        for identity in created:
            cur.execute(f"DROP USER IF EXISTS {identity}")
        for role in roles:
            cur.execute(f"DROP ROLE IF EXISTS {role}")
        cur.execute(f"DROP DATABASE IF EXISTS `{names['db']}`")


@pytest.fixture
def pg_fleet(postgres_admin, unique_prefix) -> Iterator[dict[str, str]]:
    """Four PostgreSQL roles in a database of their own, all dropped afterwards."""
    import psycopg

    p = unique_prefix
    names = {"p": p, "db": f"{p}_orders"}
    roles = [f"{p}_readers", f"{p}_app", f"{p}_svc", f"{p}_owner"]
    cur = postgres_admin.cursor()
    try:
        cur.execute(f'CREATE ROLE "{p}_readers" NOLOGIN')
        cur.execute(f"CREATE ROLE \"{p}_app\" LOGIN PASSWORD '{secrets.token_urlsafe(12)}'")
        cur.execute(f"CREATE ROLE \"{p}_svc\" LOGIN NOINHERIT PASSWORD '{secrets.token_urlsafe(12)}'")
        cur.execute(f'CREATE ROLE "{p}_owner" LOGIN CREATEROLE')
        cur.execute(f'GRANT "{p}_readers" TO "{p}_app", "{p}_svc"')
        cur.execute(f'CREATE DATABASE "{names["db"]}" OWNER "{p}_owner"')
        with psycopg.connect(**{**POSTGRES, "dbname": names["db"]}, autocommit=True) as conn:
            db = conn.cursor()
            db.execute("CREATE TABLE public.orders (id int PRIMARY KEY, total numeric)")
            db.execute("CREATE TABLE public.customers (id int PRIMARY KEY, name text)")
            db.execute(f'GRANT SELECT ON public.orders, public.customers TO "{p}_readers"')
            db.execute(f'GRANT INSERT ON public.orders TO "{p}_app"')
        yield names
    finally:
        cur.execute(f'DROP DATABASE IF EXISTS "{names["db"]}" WITH (FORCE)')
        for role in reversed(roles):
            cur.execute(f'DROP ROLE IF EXISTS "{role}"')


def register(maria: dict[str, str], pg: dict[str, str]) -> tuple[Instance, Instance, Instance]:
    monitor = Credential(name="mariadb-monitor", username=maria["monitor"], allowed_hosts="127.0.0.1")
    monitor.set_password(maria["password"])
    monitor.save()
    trust = Credential(name="postgres-local-trust", username="postgres", allowed_hosts="127.0.0.1")
    trust.set_password("")  # trust authentication: an empty password
    trust.save()
    prod = Tag.objects.create(name="prod", color="#b91c1c")
    maria_inst = Instance.objects.create(
        name="maria-shop-eu1", db_type="mysql", host="127.0.0.1", port=MARIADB["port"], credential=monitor
    )
    pg_inst = Instance.objects.create(
        name="pg-orders-eu1",
        db_type="postgresql",
        host="127.0.0.1",
        port=POSTGRES["port"],
        credential=trust,
        options={"databases": [pg["db"]], "connect_timeout": 5},
    )
    legacy = Instance.objects.create(
        name="maria-legacy",
        db_type="mysql",
        host="127.0.0.1",
        port=closed_port(),
        credential=monitor,
        environment="staging",
        options={"connect_timeout": 2},
    )
    for inst in (maria_inst, pg_inst):
        inst.full_clean()
        inst.tags.add(prod)
    return maria_inst, pg_inst, legacy


def run(instances: list[Instance], user) -> SyncSession:
    session = sync_session_start(instances=instances, sync_type="manual_batch", created_by=user, enqueue=False)
    sync_session_run(session=session, force=True)  # other tests' accounts come and go on the shared servers
    session.refresh_from_db()
    return session


def change_the_servers(maria: dict[str, str], pg: dict[str, str], mariadb_admin, postgres_admin) -> None:
    import psycopg

    p = maria["p"]
    cur = mariadb_admin.cursor()
    cur.execute(f"REVOKE INSERT ON `{maria['db']}`.* FROM '{p}_app'@'%'")
    cur.execute(f"GRANT UPDATE ON `{maria['db']}`.* TO '{p}_app'@'%' WITH GRANT OPTION")
    q = pg["p"]
    postgres_admin.cursor().execute(f"ALTER ROLE \"{q}_app\" VALID UNTIL '2030-01-01'")
    with psycopg.connect(**{**POSTGRES, "dbname": pg["db"]}, autocommit=True) as conn:
        conn.cursor().execute(f'GRANT UPDATE ON public.customers TO "{q}_app"')


def login(page, base: str) -> None:
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", ROLE_PASSWORDS["alice"])
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")
    page.evaluate("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")


def visit(page, url: str, shot: str | None, problems: dict[str, list[str]]) -> str:
    page.goto(url)
    page.wait_for_selector("#content")
    assert "Server Error" not in page.title(), url
    if found := overflow(page):
        problems[shot or url] = found
    if shot:
        screenshot(page, shot)
    return page.content()


def test_a_new_users_tour_at_1366(browser, live_server, alice, maria_fleet, pg_fleet, mariadb_admin, postgres_admin):
    maria, pg, legacy = register(maria_fleet, pg_fleet)
    p, q = maria_fleet["p"], pg_fleet["p"]
    first = run([maria, pg], alice)
    assert first.status == "completed", list(first.records.values_list("instance_name", "error_message"))
    change_the_servers(maria_fleet, pg_fleet, mariadb_admin, postgres_admin)
    second = run([maria, pg, legacy], alice)
    assert (second.status, second.successful_instances, second.failed_instances) == ("failed", 2, 1)
    ours = InstanceAccount.objects.filter(username__startswith=p)
    assert ours.filter(instance=maria).count() == 11 and ours.filter(instance=pg).count() == 4

    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(20_000)
    base = live_server.url
    problems: dict[str, list[str]] = {}
    try:
        login(page, base)

        # --- dashboard: the fleet at a glance; an app's index does not repeat it --------------
        html = visit(page, f"{base}/admin/", None, problems)
        assert page.locator(".wf-dashboard .wf-dash-panel").count() >= 4  # features add panels
        assert 'rel="icon"' in html
        visit(page, f"{base}/admin/sync/", None, problems)
        assert page.locator(".wf-dashboard").count() == 0

        # --- the instance page: Test connection and Sync now are on it ------------------------
        instance_url = f"{base}/admin/instances/instance/{maria.pk}/change/"
        visit(page, instance_url, None, problems)
        page.click("#wf-test-connection")
        page.wait_for_selector(".messagelist")
        assert "[maria-shop-eu1] connected, MariaDB 10." in page.text_content(".messagelist")
        assert page.locator("#wf-sync-now").count() == 1
        assert page.locator("#wf-instance-records tbody tr").count() == 2
        if found := overflow(page):
            problems["instance-detail"] = found
        screenshot(page, "instance-detail")

        # --- the credential: an empty password reads as one -----------------------------------
        html = visit(page, f"{base}/admin/instances/credential/", None, problems)
        assert (
            page.locator("#result_list tr", has_text="postgres-local-trust").filter(has_text="empty password").count()
            == 1
        )
        trust = Credential.objects.get(name="postgres-local-trust")
        html = visit(page, f"{base}/admin/instances/credential/{trust.pk}/change/", "credential", problems)
        assert "This credential has an empty password" in html and 'name="clear_password"' not in html

        # --- the session: failed, with numbers; the error says what to check ------------------
        html = visit(page, f"{base}/admin/sync/syncsession/{second.pk}/change/", "session-batch-details", problems)
        assert page.text_content("#wf-status") == "Failed — 2 of 3 succeeded"
        rows = {r.split("\t")[0]: r for r in page.locator("#wf-records tbody tr").all_inner_texts()}
        assert "[connection] maria-legacy:" in rows["maria-legacy"]
        assert maria_fleet["password"] not in html

        # --- accounts across both instances ---------------------------------------------------
        visit(page, f"{base}/admin/accountsync/instanceaccount/?q={p}_*", "accounts", problems)
        assert page.locator("#result_list tbody tr").count() == 15
        assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", page.text_content("#result_list tbody"))
        page.goto(f"{base}/admin/accountsync/instanceaccount/?q={p}_bob@")
        assert page.locator("#result_list tbody tr").count() == 1

        # --- an account: roles as links with their flags, effective access, findings ----------
        bob = InstanceAccount.objects.get(instance=maria, username=f"{p}_bob")
        html = visit(page, f"{base}/admin/accountsync/instanceaccount/{bob.pk}/change/", "account-detail", problems)
        roles = page.locator("#wf-roles tbody tr")
        assert roles.count() == 2
        readers = roles.filter(has_text=f"{p}_readers")
        assert "default role: in force at login" in readers.inner_text()
        writers = roles.filter(has_text=f"{p}_writers")
        assert "only after SET ROLE" in writers.inner_text() and "admin option" in writers.inner_text()
        readers.locator("a").click()
        page.wait_for_url(re.compile(r"/admin/accountsync/instanceaccount/\d+/change/$"))
        assert f"{p}_readers" in page.text_content("#content h2, #content")
        page.go_back()
        effective = page.locator(".wf-effective tbody")
        assert effective.locator("tr", has_text="via").count() == 0
        assert effective.locator("td.wf-via a", has_text=f"{p}_readers").count() >= 1
        findings = page.locator("#wf-account-findings")
        assert findings.locator("a", has_text="Can grant privileges to others").count() == 1
        assert findings.locator("a", has_text="Wildcard host").count() == 1

        # a PostgreSQL login that reaches its role only with SET ROLE, and the valid_until change
        svc = InstanceAccount.objects.get(instance=pg, username=f"{q}_svc")
        visit(page, f"{base}/admin/accountsync/instanceaccount/{svc.pk}/change/", None, problems)
        assert "not inherited: only after SET ROLE" in page.text_content("#wf-roles")

        # --- the change log: old → new, one line for a new account, one vocabulary -------------
        html = visit(page, f"{base}/admin/accountsync/accountchangelog/?q={p}_", "change-log", problems)
        assert page.locator(".wf-diff-added").count() >= 14
        assert "valid_until: ∅ → 2030-01-01" in page.text_content("#result_list")
        added_row = page.locator("#result_list tbody tr", has_text="Added").first
        assert "Added with" in added_row.inner_text() and "~ auth_plugin" not in added_row.inner_text()

        app_change = (
            AccountChangeLog.objects.filter(account__username=f"{q}_app", account__instance=pg)
            .exclude(change_type="added")
            .get()
        )
        html = visit(
            page, f"{base}/admin/accountsync/accountchangelog/{app_change.pk}/change/", "change-detail", problems
        )
        title = f"Privileges changed — {q}_app on pg-orders-eu1"
        assert page.title().startswith(title), page.title()
        assert title in page.text_content(".breadcrumbs")
        summary = page.text_content(".field-summary_line")
        assert "valid_until: ∅ → 2030-01-01" in summary and "Object" in summary and "object:" not in summary

        # --- findings -------------------------------------------------------------------------
        visit(page, f"{base}/admin/findings/finding/?q={p}_", "findings", problems)
        assert page.locator("#result_list tbody tr").count() >= 4
        assert Finding.objects.filter(account__username=f"{p}_nopw", rule_code="EMPTY_PASSWORD").exists()
    finally:
        context.close()
    walk_in_chinese(browser, base, maria=maria, pg=pg, second=second, p=p, q=q, problems=problems)
    assert not problems, json.dumps(problems, indent=1)


# words a page in Chinese shows only when the catalog and the code that renders it both work
ZH = {
    "findings": ("空密码", "通配符主机"),  # rule titles: Empty password, Wildcard host
    "created": ("创建时间", "更新时间"),  # Created at, Updated at
    "status": "失败 — 3 个实例中 2 个成功",  # Failed — 2 of 3 succeeded
    "connect": "无法连接到",  # the stored connection error, rendered from its code
    "queue": "任务队列",  # django-q2's sidebar section (its models translate themselves)
}
HAN = re.compile(r"[\u4e00-\u9fff]")


def walk_in_chinese(browser, base: str, *, maria, pg, second, p: str, q: str, problems: dict[str, list[str]]) -> None:
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    context.add_cookies([{"name": "django_language", "value": "zh-hans", "url": base}])
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        login(page, base)

        html = visit(page, f"{base}/admin/", "dashboard-zh", problems)
        assert page.locator("html").get_attribute("lang") == "zh-hans"
        panels = page.text_content(".wf-dashboard")
        assert ZH["findings"][0] in panels and "Empty password" not in panels

        # the instance: tag picker, sidebar, timestamps; the failed record's error in Chinese
        page.evaluate("localStorage.setItem('django.admin.navSidebarIsOpen', 'true')")
        html = visit(page, f"{base}/admin/instances/instance/{maria.pk}/change/", "instance-detail-zh", problems)
        sidebar = page.text_content("#nav-sidebar")
        assert ZH["queue"] in sidebar and "Task queue" not in sidebar
        picker = page.text_content(".field-tags")
        assert HAN.search(picker) and "Hold down" not in picker and "Choose" not in picker, picker
        assert all(word in html for word in ZH["created"]) and "Created at" not in html
        page.evaluate("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")

        html = visit(page, f"{base}/admin/sync/syncsession/{second.pk}/change/", "session-zh", problems)
        assert page.text_content("#wf-status") == ZH["status"]
        rows = {r.split("\t")[0]: r for r in page.locator("#wf-records tbody tr").all_inner_texts()}
        legacy = rows["maria-legacy"]
        assert ZH["connect"] in legacy and "cannot connect" not in legacy, legacy
        assert "127.0.0.1:" in legacy  # the host and the driver's words are shown as they are
        record = second.records.get(instance_name="maria-legacy")
        assert record.error_message.startswith("maria-legacy: cannot connect to 127.0.0.1:")  # English is kept
        html = visit(page, f"{base}/admin/sync/syncinstancerecord/{record.pk}/change/", None, problems)
        assert ZH["connect"] in page.text_content(".field-error_text")

        visit(page, f"{base}/admin/instances/credential/", None, problems)
        trust = Credential.objects.get(name="postgres-local-trust")
        html = visit(page, f"{base}/admin/instances/credential/{trust.pk}/change/", "credential-zh", problems)
        assert "此凭据的密码为空" in html and "This credential has an empty password" not in html

        visit(page, f"{base}/admin/accountsync/instanceaccount/?q={p}_*", "accounts-zh", problems)
        assert page.locator("#result_list tbody tr").count() == 15
        # a long identity wraps only after @ . _ (the list marks where)
        assert page.locator("#result_list td.field-identity wbr, #result_list th.field-identity wbr").count() > 0

        bob = InstanceAccount.objects.get(instance=maria, username=f"{p}_bob")
        visit(page, f"{base}/admin/accountsync/instanceaccount/{bob.pk}/change/", "account-detail-zh", problems)
        assert page.locator("#wf-account-findings a", has_text="通配符主机").count() == 1

        visit(page, f"{base}/admin/accountsync/accountchangelog/?q={p}_", "change-log-zh", problems)
        assert "valid_until: ∅ → 2030-01-01" in page.text_content("#result_list")
        app_change = (
            AccountChangeLog.objects.filter(account__username=f"{q}_app", account__instance=pg)
            .exclude(change_type="added")
            .get()
        )
        visit(page, f"{base}/admin/accountsync/accountchangelog/{app_change.pk}/change/", "change-detail-zh", problems)
        assert HAN.search(page.title()) and f"{q}_app" in page.title()

        visit(page, f"{base}/admin/findings/finding/?q={p}_", "findings-zh", problems)
        listed = page.text_content("#result_list")
        assert ZH["findings"][0] in listed and "Empty password" not in listed
        # severity as a badge, in Chinese
        assert page.locator("#result_list .field-severity_badge .wf-badge").count() >= 4
        rule_filter = page.text_content("#changelist-filter")
        assert ZH["findings"][1] in rule_filter and "Wildcard host" not in rule_filter
    finally:
        context.close()

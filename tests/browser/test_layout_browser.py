"""Issue #22 part 4: nothing is clipped or pushed off the page at 1366 and 1440 px wide.

A fleet built through the ORM and the real engine, with the names and errors that break a layout:
long instance and account names, scopes with long object names, many failed instances with long
unbroken error text, accounts with every capability, change-log entries with many lines. Each main
page is loaded at 1366x768 and 1440x900 and must not scroll sideways: neither the page
(``scrollWidth <= clientWidth`` of the document) nor the container of any table, nor any table cell
(a cell whose content is wider than the cell is content cut off or spilling over its neighbour).
The same pages are loaded in Simplified Chinese at 1366 px (other words, other widths), and a long
account name that wraps breaks only after `@`, `.` or `_` (adminkit.kit.wrap_name), never mid-word.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pytest
from django.utils import timezone

from accountsync.adapters.base import AccountRecord, Catalog, CoverageGap, Privilege, RoleGrant
from accountsync.models import AccountChangeLog, InstanceAccount
from accountsync.services import account_sync_apply
from findings.models import Finding
from instances.models import Credential, Instance, Tag
from sync.models import SyncInstanceRecord, SyncSession
from tests.conftest import ROLE_PASSWORDS

from .conftest import overflow

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

WIDTHS = [(1366, 768, "en"), (1440, 900, "en"), (1366, 768, "zh-hans")]

# Where each account name (.wf-name) wraps: the character before every line start but the first.
# Measured per character with a Range, so it is what the browser really drew.
NAME_BREAKS_JS = """() => {
  const out = [];
  for (const el of document.querySelectorAll('.wf-name, #result_list .field-identity, #result_list .field-account')) {
    if (!el.offsetParent) continue;
    const text = el.textContent;
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    let top = null, before = '';
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (let i = 0; i < node.length; i++) {
        const range = document.createRange();
        range.setStart(node, i);
        range.setEnd(node, i + 1);
        const rect = range.getClientRects()[0];
        if (!rect) continue;
        if (top !== null && rect.top > top + 2) out.push([text, before]);
        top = rect.top;
        before = node.data[i];
      }
    }
  }
  return out;
}"""
LONG = "payments-settlement-eu-west-1-primary-cluster-node"
CAPABILITIES = {"SUPERUSER", "GRANT_ADMIN", "CREATE_USER", "WILDCARD_HOST", "CREATE_DB", "REPLICATION", "BYPASS_RLS"}


def wide_fleet() -> dict[str, object]:
    """Twelve instances (long names), accounts with long identities, a session of many failures."""
    cred = Credential(name=f"{LONG}-monitoring-credential", username="whalefall_monitor_readonly_account")
    cred.set_password("x")
    cred.allowed_hosts = "\n".join(f"db-{i}.{LONG}.internal.example.com" for i in range(4))
    cred.save()
    Credential.objects.create(name="socket-auth", username="root")  # an empty password
    tags = [Tag.objects.create(name=f"team-{t}", color="#0f766e") for t in ("payments", "ledger", "risk")]
    instances = []
    for i in range(12):
        inst = Instance.objects.create(
            name=f"{LONG}-{i:02d}",
            db_type=["mysql", "postgresql"][i % 2],
            host=f"db-{i}.{LONG}.internal.example.com",
            port=3306 + i,
            credential=cred,
            environment=["production", "staging"][i % 2],
            version="10.11.19-MariaDB-0+deb12u1-log Debian 12 (bookworm) x86_64" if i % 2 == 0 else "PostgreSQL 15.20",
        )
        inst.tags.set(tags)
        instances.append(inst)
    main = instances[0]
    scopes = [
        f"object:warehouse_analytics_{n}.customer_lifetime_value_snapshots_by_region_and_quarter" for n in range(4)
    ]

    def catalog(version: int) -> Catalog:
        accounts = [AccountRecord(identity="reporting_readers_role", username="reporting_readers_role", kind="role")]
        for n in range(8):
            name = f"svc_reporting_etl_nightly_batch_{n}"
            privileges = [Privilege(scope, p) for scope in scopes for p in ("SELECT", "INSERT", "UPDATE")]
            if version:
                privileges = [*privileges[1:], Privilege("database:ledger_reconciliation_archive", "DELETE", True)]
            accounts.append(
                AccountRecord(
                    identity=f"'{name}'@'10.200.100.%'",
                    username=name,
                    host="10.200.100.%",
                    privileges=privileges,
                    roles=[RoleGrant("reporting_readers_role", admin_option=True, default=n % 2 == 0)],
                    capabilities=set(CAPABILITIES),
                    is_superuser=True,
                    attributes={
                        "auth_plugin": "mysql_native_password",
                        "password_last_changed": "2026-01-01T00:00:00Z",
                        "ssl_cipher": "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES256-GCM-SHA384",
                        "valid_until": "2030-01-01" if version else None,
                    },
                )
            )
        gaps = [CoverageGap(scope="database:warehouse_analytics_3", reason="permission denied " * 6)] if version else []
        return Catalog(accounts=accounts, coverage=gaps).finalize()

    assert account_sync_apply(instance=main, catalog=catalog(0)).success
    assert account_sync_apply(instance=main, catalog=catalog(1)).success
    account = InstanceAccount.objects.filter(instance=main, kind="user").order_by("identity").first()
    now = timezone.now()
    for code, severity in (("SUPERUSER", "high"), ("GRANT_OPTION", "medium"), ("WILDCARD_HOST", "medium")):
        Finding.objects.create(
            instance=main,
            account=account,
            rule_code=code,
            severity=severity,
            detail={"capabilities": sorted(CAPABILITIES), "reasons": [f"via role reporting_readers_role {LONG}"] * 3},
            first_seen_at=now,
        )
    session = SyncSession.objects.create(
        sync_type="manual_batch",
        status="failed",
        started_at=now - timedelta(minutes=3),
        completed_at=now,
        total_instances=12,
        successful_instances=2,
        failed_instances=10,
    )
    for i, inst in enumerate(instances):
        failed = i >= 2
        SyncInstanceRecord.objects.create(
            session=session,
            instance=inst,
            instance_name=inst.name,
            status="failed" if failed else "completed",
            started_at=now - timedelta(minutes=3),
            completed_at=now,
            items_synced=0 if failed else 9,
            error_kind="connection" if failed else "",
            error_message=(
                f"{inst.name}: cannot connect to db-{i}.{LONG}.internal.example.com:{inst.port} "
                f"(OperationalError: (2002, \"Can't connect to server on 'db-{i}.{LONG}.internal.example.com' "
                '(115)")); check the host, the port and that the server accepts connections from this host'
                if failed
                else ""
            ),
        )
    Instance.objects.filter(pk__in=[i.pk for i in instances]).update(last_sync_at=now, last_sync_status="failed")
    change = AccountChangeLog.objects.filter(account=account).exclude(change_type="added").first()
    added = AccountChangeLog.objects.filter(account=account, change_type="added").first()
    return {
        "instance": main,
        "account": account,
        "change": change,
        "added": added,
        "session": session,
        "credential": cred,
        "finding": Finding.objects.filter(account=account).first(),
    }


def pages(fleet: dict) -> dict[str, str]:
    return {
        "dashboard": "/admin/",
        "sync-app-index": "/admin/sync/",
        "instances": "/admin/instances/instance/",
        "instance": f"/admin/instances/instance/{fleet['instance'].pk}/change/",
        "credentials": "/admin/instances/credential/",
        "credential": f"/admin/instances/credential/{fleet['credential'].pk}/change/",
        "accounts": "/admin/accountsync/instanceaccount/",
        "account": f"/admin/accountsync/instanceaccount/{fleet['account'].pk}/change/",
        "change-log": "/admin/accountsync/accountchangelog/",
        "change": f"/admin/accountsync/accountchangelog/{fleet['change'].pk}/change/",
        "added": f"/admin/accountsync/accountchangelog/{fleet['added'].pk}/change/",
        "sessions": "/admin/sync/syncsession/",
        "session": f"/admin/sync/syncsession/{fleet['session'].pk}/change/",
        "records": "/admin/sync/syncinstancerecord/",
        "findings": "/admin/findings/finding/",
        "finding": f"/admin/findings/finding/{fleet['finding'].pk}/change/",
        "coverage": "/admin/accountsync/coveragegapepisode/",
    }


@pytest.fixture
def logged_in(browser, live_server, alice):
    contexts = []

    def make(width: int, height: int, language: str = "en"):
        context = browser.new_context(
            viewport={"width": width, "height": height}, locale="zh-CN" if language == "zh-hans" else "en-US"
        )
        context.add_cookies([{"name": "django_language", "value": language, "url": live_server.url}])
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "alice")
        page.fill("#id_password", ROLE_PASSWORDS["alice"])
        page.click("input[type=submit]")
        page.wait_for_selector("#user-tools")
        # no sidebar choice stored: the pages are measured as a new reader first sees them
        return page

    yield make
    for context in contexts:
        context.close()


@pytest.mark.parametrize(("width", "height", "language"), WIDTHS, ids=[f"{w}px-{lang}" for w, _, lang in WIDTHS])
def test_no_page_scrolls_sideways(logged_in, live_server, width, height, language):
    fleet = wide_fleet()
    page = logged_in(width, height, language)
    problems = {}
    names_broken = {}
    for name, url in pages(fleet).items():
        page.goto(f"{live_server.url}{url}")
        page.wait_for_selector("#content")
        assert "Server Error" not in page.title(), name
        found = overflow(page)
        if found and os.environ.get("WF_LAYOUT_DEBUG"):
            widths = page.evaluate(
                "() => [...document.querySelectorAll('table')].map(t => [t.id || t.className,"
                " [...t.querySelectorAll('thead th')].map(th => th.textContent.trim().slice(0, 12) + ':'"
                " + Math.round(th.getBoundingClientRect().width))])"
            )
            print(name, json.dumps(widths))
        if found:
            problems[name] = found
        if language == "zh-hans":
            assert page.locator("html").get_attribute("lang") == "zh-hans", name
        if name in ("accounts", "findings", "change-log"):
            assert page.locator("#result_list wbr").count() > 0, name  # the names carry break points
        mid_word = [
            (text, before)
            for text, before in page.evaluate(NAME_BREAKS_JS)
            if before not in "@._" and not before.isspace()
        ]
        if mid_word:
            names_broken[name] = mid_word
    assert not problems and not names_broken, json.dumps({"overflow": problems, "names": names_broken}, indent=1)


def test_a_new_reader_at_1366_gets_the_sidebar_closed_and_a_chosen_one_is_kept(logged_in, live_server):
    """The sidebar would leave the accounts list too little room at 1366 px (templates/admin/base_site.html)."""
    page = logged_in(1366, 768)
    page.goto(f"{live_server.url}/admin/accountsync/instanceaccount/")
    assert page.evaluate("localStorage.getItem('django.admin.navSidebarIsOpen')") == "false"
    assert "shifted" not in (page.get_attribute("#main", "class") or "")
    page.click("#toggle-nav-sidebar")  # the reader opens it: that choice stays
    page.goto(f"{live_server.url}/admin/accountsync/instanceaccount/")
    assert "shifted" in (page.get_attribute("#main", "class") or "")
    wide = logged_in(1920, 1080)
    wide.evaluate("localStorage.clear()")
    wide.goto(f"{live_server.url}/admin/accountsync/instanceaccount/")
    assert "shifted" in (wide.get_attribute("#main", "class") or "")  # room enough: Django's default

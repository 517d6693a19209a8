"""Issue #22 parts 1 and 5: the account page (roles, findings, last known) and a readable change log."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from accountsync.adapters.base import AccountRecord, CoverageGap, Privilege, RoleGrant
from accountsync.models import AccountChangeLog, InstanceAccount
from findings.models import Finding
from sync.services import sync_accounts

from .conftest import account, apply

pytestmark = pytest.mark.django_db

CHANGES = reverse("admin:accountsync_accountchangelog_changelist")


def page(client, acc: InstanceAccount) -> str:
    return client.get(reverse("admin:accountsync_instanceaccount_change", args=[acc.pk])).content.decode()


def section(html: str, start: str, end: str = "</table>") -> str:
    return html.split(start, 1)[1].split(end, 1)[0]


def role(name: str) -> AccountRecord:
    return AccountRecord(identity=name, username=name, kind="role", host=None, privileges=[])


# --- part 1: the account page --------------------------------------------------------------


def test_roles_held_are_links_with_their_default_and_admin_flags(client_for, make_instance):
    inst = make_instance(name="nc-maria")
    apply(
        inst,
        role("r_app"),
        role("r_ops"),
        account(
            "bob",
            "%",
            roles=[RoleGrant("r_app", admin_option=True, default=True), RoleGrant("r_ops", default=False)],
        ),
    )
    bob = InstanceAccount.objects.get(username="bob")
    roles = section(page(client_for("charlie"), bob), 'id="wf-roles"')
    for name in ("r_app", "r_ops"):
        url = reverse("admin:accountsync_instanceaccount_change", args=[InstanceAccount.objects.get(identity=name).pk])
        assert f'<a href="{url}">{name}</a>' in roles
    rows = re.findall(r"<tr.*?</tr>", roles, re.S)[1:]
    app, ops = sorted(rows, key=lambda r: r.index("r_"))[0], rows[1]
    assert "r_app" in app and "default role: in force at login" in app and "admin option" in app
    assert "r_ops" in ops and "only after SET ROLE" in ops and "admin option" not in ops


def test_postgresql_memberships_read_as_inheritance(client_for, make_instance):
    inst = make_instance(db_type="postgresql", port=5432, name="nc-pg")
    apply(
        inst,
        role("readers"),
        AccountRecord(identity="ann", username="ann", roles=[RoleGrant("readers", default=False)]),
    )
    roles = section(page(client_for("charlie"), InstanceAccount.objects.get(identity="ann")), 'id="wf-roles"')
    assert "not inherited: only after SET ROLE" in roles


def test_the_account_page_lists_its_open_and_resolved_findings(client_for, chosen_server, make_instance):
    inst = make_instance(name="nc-find")
    root = dict(identity="'root'@'%'", username="root", host="%", privileges=[Privilege("global", "ALL PRIVILEGES")])
    chosen_server.accounts = [AccountRecord(**root, is_superuser=True, capabilities={"SUPERUSER", "WILDCARD_HOST"})]
    assert sync_accounts(instance=inst, sync_type="manual_single")["success"]
    chosen_server.accounts = [AccountRecord(**root, capabilities={"WILDCARD_HOST"})]
    assert sync_accounts(instance=inst, sync_type="manual_single")["success"]
    acc = InstanceAccount.objects.get(username="root")
    assert set(Finding.objects.filter(account=acc, is_open=False).values_list("rule_code", flat=True)) == {"SUPERUSER"}
    still = set(Finding.objects.filter(account=acc, is_open=True).values_list("rule_code", flat=True))
    assert "WILDCARD_HOST" in still

    html = page(client_for("charlie"), acc)
    panel = html.split('id="wf-account-findings"')[1].split("</fieldset>")[0]
    opened, resolved = panel.split("wf-findings-resolved")
    for finding in Finding.objects.filter(account=acc):
        link = reverse("admin:findings_finding_change", args=[finding.pk])
        assert link in (opened if finding.is_open else resolved), finding.rule_code
    assert "WILDCARD_HOST" in opened and "SUPERUSER" in resolved
    assert "host: %" in opened  # why it holds
    assert "All findings of this account" in panel


def test_unreadable_scopes_carry_a_visible_last_known_mark(client_for, make_instance):
    inst = make_instance(db_type="postgresql", port=5432, name="nc-gap")
    ann = AccountRecord(
        identity="ann",
        username="ann",
        privileges=[Privilege("object:sales.public.orders", "SELECT")],
        roles=[RoleGrant("readers")],
    )
    apply(inst, role("readers"), ann)
    from accountsync.adapters.base import Catalog
    from accountsync.services import account_sync_apply

    gaps = [CoverageGap(scope="database:sales", reason="permission denied"), CoverageGap(scope="role", reason="denied")]
    catalog = Catalog(accounts=[role("readers"), ann], coverage=gaps).finalize()
    assert account_sync_apply(instance=inst, catalog=catalog).success
    html = page(client_for("charlie"), InstanceAccount.objects.get(identity="ann"))
    privileges = section(html, 'class="wf-table wf-privs"')
    assert 'class="wf-last-known"' in privileges and 'class="wf-last-known-mark"' in privileges
    roles = section(html, 'id="wf-roles"')
    assert 'class="wf-last-known-mark"' in roles  # the memberships were not read either
    effective = section(html, 'id="wf-effective"')
    assert "wf-last-known-mark" in effective


# --- part 5: the change log ------------------------------------------------------------------


@pytest.fixture
def history(make_instance):
    inst = make_instance(db_type="postgresql", port=5432, name="nc-maria")
    bob = dict(identity="'nc_bob'@'%'", username="nc_bob", host="%")
    apply(
        inst,
        AccountRecord(
            **bob,
            privileges=[Privilege("database:app", "SELECT")],
            attributes={"auth_plugin": "mysql_native_password", "max_connections": 0, "valid_until": None},
        ),
    )
    apply(
        inst,
        AccountRecord(
            **bob,
            privileges=[Privilege("database:app", "SELECT"), Privilege("database:app", "INSERT")],
            attributes={"auth_plugin": "mysql_native_password", "max_connections": 0, "valid_until": "2030-01-01"},
        ),
    )
    return inst, InstanceAccount.objects.get(username="nc_bob")


def test_every_set_shows_old_and_new(client_for, history):
    _inst, bob = history
    changed = AccountChangeLog.objects.exclude(change_type="added").get(account=bob)
    client = client_for("charlie")
    for html in (
        client.get(CHANGES).content.decode(),
        client.get(reverse("admin:accountsync_accountchangelog_change", args=[changed.pk])).content.decode(),
        page(client, bob),
    ):
        assert "~ valid_until: ∅ → 2030-01-01" in html
        assert "attributes set: valid_until" not in html


def test_an_added_entry_is_one_line_with_the_detail_behind_a_click(client_for, history):
    _inst, bob = history
    added = AccountChangeLog.objects.get(account=bob, change_type="added")
    html = client_for("charlie").get(CHANGES, {"change_type__exact": "added"}).content.decode()
    cell = html.split('class="wf-diff-added"')[1].split("</details>")[0]
    assert "Added with 1 privilege; 2 attributes" in cell
    assert "+ SELECT on Database app" in cell  # in the detail
    assert "auth_plugin mysql_native_password" in cell and "~ auth_plugin" not in html
    assert html.count("wf-diff wf-diff-set") == 0  # no attribute is listed as a change
    detail = client_for("charlie").get(reverse("admin:accountsync_accountchangelog_change", args=[added.pk]))
    assert '<details class="wf-diff-added" open>' in detail.content.decode()


def test_titles_and_breadcrumbs_name_the_change_the_account_and_the_instance(client_for, history):
    _inst, bob = history
    changed = AccountChangeLog.objects.exclude(change_type="added").get(account=bob)
    html = client_for("charlie").get(reverse("admin:accountsync_accountchangelog_change", args=[changed.pk]))
    html = html.content.decode()
    name = "Privileges changed — &#x27;nc_bob&#x27;@&#x27;%&#x27; on nc-maria"
    assert name in html.split("<title>")[1].split("</title>")[0]
    assert name in html.split('class="breadcrumbs"')[1].split("</div>")[0]
    assert "privileges_changed" not in html.split("<title>")[1].split("</title>")[0]


def test_the_summary_line_uses_the_words_of_the_diff(client_for, history):
    _inst, bob = history
    changed = AccountChangeLog.objects.exclude(change_type="added").get(account=bob)
    assert "database:app" in changed.summary  # the stored (API) summary keeps the raw scope
    html = client_for("charlie").get(reverse("admin:accountsync_accountchangelog_change", args=[changed.pk]))
    html = html.content.decode()
    summary = html.split("field-summary_line")[1].split("</div>\n")[0]
    assert "+ INSERT on Database app" in summary and "valid_until: ∅ → 2030-01-01" in summary
    assert "database:app" not in summary
    diff = html.split("<h2>Diff</h2>")[1]
    assert "+ INSERT on Database app" in diff

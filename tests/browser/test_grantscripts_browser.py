"""Grant scripts in a real browser (chromium, 1366 px): the account page's links, the revoke form, the download.

charlie (Viewers) opens an account with long hostile scopes, follows "Revoke script", ticks one
privilege and one role and downloads the script; the form must not scroll sideways. Then the
accounts list action: the point-in-time page and the .sql download.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from accountsync.adapters.base import AccountRecord, Catalog, Privilege, RoleGrant
from accountsync.models import InstanceAccount
from accountsync.services import account_sync_apply
from tests.conftest import ROLE_PASSWORDS

from .conftest import overflow

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

LONG = "payments_settlement_eu_west_1_primary_cluster_ledger_entries_archive_2026"


def sign_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", ROLE_PASSWORDS[username])
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")


def test_revoke_form_and_list_action(page, live_server, make_instance, charlie) -> None:
    instance = make_instance("mysql", name="maria-browser", version="MariaDB 10.11.19")
    privileges = [Privilege(f"object:{LONG}.{LONG}_{i}", "SELECT", True) for i in range(4)]
    privileges.append(Privilege(f"column:{LONG}.orders.{LONG}", "UPDATE"))
    account_sync_apply(
        instance=instance,
        catalog=Catalog(
            accounts=[
                AccountRecord(identity="'reader'", username="reader", kind="role", attributes={"is_role": True}),
                AccountRecord(
                    identity=f"'{LONG}'@'%'",
                    username=LONG,
                    host="%",
                    attributes={"auth_plugin": "mysql_native_password", "is_role": False},
                    privileges=privileges,
                    roles=[RoleGrant("'reader'", admin_option=True)],
                ),
            ]
        ).finalize(),
    )
    user = InstanceAccount.objects.get(username=LONG)
    sign_in(page, live_server, "charlie")
    page.goto(f"{live_server.url}/admin/accountsync/instanceaccount/{user.pk}/change/")
    assert page.locator("#wf-grant-script-link").is_visible()
    with page.expect_download() as grant:
        page.click("#wf-grant-script-link")
    text = Path(grant.value.path()).read_text("utf-8")
    assert f"GRANT SELECT ON `{LONG}`.`{LONG}_0` TO `{LONG}`@`%` WITH GRANT OPTION;" in text

    page.click("#wf-revoke-script-link")
    page.wait_for_selector("#wf-revoke-script-form")
    assert overflow(page) == []
    page.check("#wf-rv-p0")
    page.check("#wf-rv-r0")
    with page.expect_download() as revoke:
        page.click("#wf-revoke-script-download")
    text = Path(revoke.value.path()).read_text("utf-8")
    assert "REVOKE UPDATE (`" in text and "REVOKE `reader` FROM" in text
    assert "SELECT ON" not in text

    page.goto(f"{live_server.url}/admin/accountsync/instanceaccount/")
    page.check(f"input[name=_selected_action][value='{user.pk}']")
    page.select_option("select[name=action]", "export_grant_script_accounts")
    page.click("button[name=index]")
    page.wait_for_selector("#wf-grant-script-form")
    assert overflow(page) == []
    with page.expect_download() as listed:
        page.click("#wf-grant-script-download")
    assert "CREATE USER" in Path(listed.value.path()).read_text("utf-8")

"""A new user's first minutes, in a real browser: credential, instance, Test connection."""

from __future__ import annotations

import pytest

from instances.models import Credential, Instance
from tests.livedb import MARIADB

from .conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

SECRET = "Br0wser-visible-never-8812"


def test_add_credential_and_instance_then_test_connection(admin_login, live_server, mariadb_admin):
    page = admin_login()
    page.goto(f"{live_server.url}/admin/instances/credential/add/")
    page.fill("#id_name", "mariadb-root")
    page.fill("#id_username", "root")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    assert SECRET not in page.content()

    page.goto(f"{live_server.url}/admin/instances/credential/add/")
    page.fill("#id_name", "bad-password")
    page.fill("#id_username", "root")
    page.fill("#id_password", SECRET)
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    assert SECRET not in page.content()
    bad = Credential.objects.get(name="bad-password")
    assert bad.get_password() == SECRET

    for name, cred in (("local-mariadb", "mariadb-root"), ("mariadb-wrong-password", "bad-password")):
        page.goto(f"{live_server.url}/admin/instances/instance/add/")
        page.fill("#id_name", name)
        page.select_option("#id_db_type", "mysql")
        page.fill("#id_host", "127.0.0.1")
        page.fill("#id_port", str(MARIADB["port"]))
        page.select_option("#id_credential", label=f"{cred} (root)")
        page.click("input[name=_save]")
        page.wait_for_selector(".messagelist .success")
    assert Instance.objects.count() == 2

    page.goto(f"{live_server.url}/admin/instances/instance/")
    page.check("#action-toggle")
    page.select_option("select[name=action]", "test_connection")
    page.click("button[name=index]")
    page.wait_for_selector(".messagelist")
    text = page.text_content(".messagelist")
    assert "[local-mariadb] connected, MariaDB" in text
    assert "[permission error] mariadb-wrong-password: authentication failed" in text
    assert "1 of 2 instances reachable" in text
    assert SECRET not in page.content()
    screenshot(page, "instances-test-connection")

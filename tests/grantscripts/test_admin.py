"""Admin: the list actions (with the point-in-time page), the account page's links and its revoke form."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditEvent, AuditKind
from tests.grantscripts.conftest import PASSWORD, account

pytestmark = pytest.mark.django_db

ACCOUNTS = "/admin/accountsync/instanceaccount/"
INSTANCES = "/admin/instances/instance/"


def exports(what: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(kind=AuditKind.EXPORT, details__kind=what))


def test_account_list_action_asks_for_a_time_then_streams(client, charlie, mysql_instance) -> None:
    client.force_login(charlie)
    ids = [str(pk) for pk in mysql_instance.accounts.values_list("pk", flat=True)]
    post = {"action": "export_grant_script_accounts", "_selected_action": ids}
    page = client.post(ACCOUNTS, post)
    assert page.status_code == 200
    body = page.content.decode()
    assert 'id="wf-grant-script-at"' in body and "grant_script_confirm" in body
    assert not exports("grant_script")  # nothing exported before the confirmation

    response = client.post(ACCOUNTS, {**post, "grant_script_confirm": "1", "at": ""})
    assert response.status_code == 200 and response.streaming
    assert response["Content-Disposition"].startswith('attachment; filename="grant-script-accounts-')
    text = b"".join(response.streaming_content).decode()
    assert "CREATE ROLE `reader`;" in text and "GRANT `reader` TO `app'x`@`%` WITH ADMIN OPTION;" in text
    assert PASSWORD not in text
    [event] = exports("grant_script")
    assert event.actor == charlie and event.via == "admin" and event.details["accounts"] == 2


def test_account_list_action_at_a_time_and_a_bad_time(client, charlie, mysql_instance) -> None:
    client.force_login(charlie)
    ids = [str(pk) for pk in mysql_instance.accounts.values_list("pk", flat=True)]
    post = {"action": "export_grant_script_accounts", "_selected_action": ids, "grant_script_confirm": "1"}
    old = client.post(ACCOUNTS, {**post, "at": "2000-01-01T00:00"})
    text = b"".join(old.streaming_content).decode()
    assert "no snapshot at that time" in text and "CREATE USER" not in text
    bad = client.post(ACCOUNTS, {**post, "at": "not a time"}, follow=True)
    assert "is not a date and time" in bad.content.decode()
    assert len(exports("grant_script")) == 1


def test_instance_list_action(client, charlie, mysql_instance) -> None:
    client.force_login(charlie)
    post = {
        "action": "export_grant_script_instances",
        "_selected_action": [str(mysql_instance.pk)],
        "grant_script_confirm": "1",
    }
    response = client.post(INSTANCES, post)
    text = b"".join(response.streaming_content).decode()
    assert "on maria-1" in text and "CREATE USER `app'x`@`%`" in text
    assert exports("grant_script")[0].details["instances"] == [mysql_instance.pk]


def test_account_page_links_and_grant_script_download(client, charlie, mysql_instance) -> None:
    client.force_login(charlie)
    user = account(mysql_instance, "app'x")
    page = client.get(reverse("admin:accountsync_instanceaccount_change", args=[user.pk]) + "?at=2000-01-01T00:00")
    body = page.content.decode()
    grant_url = reverse("admin:accountsync_instanceaccount_grant_script", args=[user.pk])
    assert f'href="{grant_url}?at=2000-01-01T00%3A00"' in body
    assert reverse("admin:accountsync_instanceaccount_revoke_script", args=[user.pk]) in body
    response = client.get(grant_url)
    assert response["Content-Disposition"] == f'attachment; filename="grant-script-account-{user.pk}.sql"'
    assert "GRANT UPDATE ON `sales`.`orders` TO `app'x`@`%`;" in response.content.decode()
    assert exports("grant_script")[0].object_id == str(user.pk)


def test_revoke_form_and_download(client, charlie, mysql_instance) -> None:
    client.force_login(charlie)
    user = account(mysql_instance, "app'x")
    url = reverse("admin:accountsync_instanceaccount_revoke_script", args=[user.pk])
    form = client.get(url)
    body = form.content.decode()
    assert form.status_code == 200 and "database:sales" in body and "&#x27;reader&#x27;" in body
    nothing = client.post(url, {})
    assert nothing.status_code == 400 and "choose at least one privilege or role" in nothing.content.decode()
    # privileges are listed in snapshot order: database:sales INSERT (0), object:sales.orders UPDATE (1)
    response = client.post(url, {"privilege": ["1", "99", "x"], "role": ["0"]})
    assert response.status_code == 200
    text = response.content.decode()
    assert "REVOKE UPDATE ON `sales`.`orders` FROM `app'x`@`%`;" in text
    assert "REVOKE `reader` FROM `app'x`@`%`;" in text
    assert "INSERT" not in text
    [event] = exports("revoke_script")
    assert event.details == {**event.details, "privileges": 1, "roles": 1}


def test_a_user_without_view_rights_gets_nothing(client, django_user_model, mysql_instance) -> None:
    staff = django_user_model.objects.create_user("staff", password="x-Pa55-word-1", is_staff=True)
    client.force_login(staff)
    user = account(mysql_instance, "app'x")
    response = client.get(reverse("admin:accountsync_instanceaccount_grant_script", args=[user.pk]))
    assert response.status_code in (302, 403)
    assert not exports("grant_script")

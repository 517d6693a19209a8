"""Instance/credential admin: write-only password, filters, Test connection."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from instances.models import Credential, Instance

SECRET = "Adm1n-page-secret-5521"


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_superuser("alice", "alice@example.com", "alice-pass-123")


@pytest.fixture
def client_alice(client, alice):
    client.force_login(alice)
    return client


@pytest.mark.django_db
def test_add_credential_encrypts_and_never_renders_password(client_alice):
    resp = client_alice.post(
        reverse("admin:instances_credential_add"),
        {"name": "mon", "username": "monitor", "password": SECRET, "description": ""},
    )
    assert resp.status_code == 302, resp.content[:2000]
    cred = Credential.objects.get(name="mon")
    assert cred.get_password() == SECRET
    assert SECRET not in cred.password_encrypted
    for url in (
        reverse("admin:instances_credential_change", args=[cred.pk]),
        reverse("admin:instances_credential_changelist"),
    ):
        html = client_alice.get(url).content.decode()
        assert SECRET not in html
        assert cred.password_encrypted not in html


@pytest.mark.django_db
def test_editing_without_password_keeps_it_and_clear_removes_it(client_alice, make_credential):
    cred = make_credential(password=SECRET)
    url = reverse("admin:instances_credential_change", args=[cred.pk])
    resp = client_alice.post(url, {"name": "mon", "username": "renamed", "password": "", "description": ""})
    assert resp.status_code == 302
    cred.refresh_from_db()
    assert cred.username == "renamed"
    assert cred.get_password() == SECRET
    client_alice.post(url, {"name": "mon", "username": "renamed", "clear_password": "on", "description": ""})
    cred.refresh_from_db()
    assert cred.get_password() == ""


@pytest.mark.django_db
def test_instance_add_form_shows_validation_messages(client_alice, make_credential):
    cred = make_credential()
    resp = client_alice.post(
        reverse("admin:instances_instance_add"),
        {
            "name": "bad",
            "db_type": "mysql",
            "environment": "production",
            "host": "not a host",
            "port": "99999",
            "credential": cred.pk,
            "options": "{}",
            "is_active": "on",
        },
    )
    assert resp.status_code == 200
    html = resp.content.decode()
    assert "is not a valid host name or IP address" in html
    assert "Ensure this value is less than or equal to 65535" in html
    assert not Instance.objects.filter(name="bad").exists()


@pytest.mark.django_db
def test_instance_changelist_filters(client_alice, make_instance):
    make_instance(db_type="mysql", name="m1")
    make_instance(db_type="postgresql", name="p1", port=5432, environment="staging")
    url = reverse("admin:instances_instance_changelist")
    html = client_alice.get(url, {"db_type__exact": "postgresql"}).content.decode()
    assert "p1" in html and ">m1<" not in html
    html = client_alice.get(url, {"environment__exact": "production"}).content.decode()
    assert ">m1<" in html and ">p1<" not in html


@pytest.mark.django_db
def test_test_connection_action_reports_classified_error_without_secret(client_alice, make_credential):
    cred = make_credential(password=SECRET)
    inst = Instance.objects.create(name="closed", db_type="mysql", host="127.0.0.1", port=1, credential=cred)
    resp = client_alice.post(
        reverse("admin:instances_instance_changelist"),
        {"action": "test_connection", "_selected_action": [inst.pk]},
        follow=True,
    )
    html = resp.content.decode()
    assert "[connection error] closed: cannot connect" in html
    assert "0 of 1 instance reachable" in html
    assert SECRET not in html


@pytest.mark.django_db
def test_instance_list_and_page_show_tags_last_sync_accounts_records_and_changes(client_alice, alice, make_instance):
    from accountsync.adapters.base import AccountRecord, Catalog, Privilege
    from accountsync.services import account_sync_apply
    from instances.models import Tag
    from sync.services import sync_session_run, sync_session_start

    inst = make_instance(name="shown", port=1)
    inst.tags.add(Tag.objects.create(name="payments", color="#123456"))
    catalog = Catalog(
        accounts=[
            AccountRecord(identity="'app'@'%'", username="app", host="%", privileges=[Privilege("global", "USAGE")])
        ]
    ).finalize()
    account_sync_apply(instance=inst, catalog=catalog)
    session = sync_session_start(instances=[inst], sync_type="manual_batch", created_by=alice, enqueue=False)
    sync_session_run(session=session)  # port 1 is closed: a classified failure

    session_url = reverse("admin:sync_syncsession_change", args=[session.pk])
    html = client_alice.get(reverse("admin:instances_instance_changelist")).content.decode()
    assert "payments" in html and "#123456" in html and session_url in html and "wf-badge-failed" in html

    page = client_alice.get(reverse("admin:instances_instance_change", args=[inst.pk])).content.decode()
    assert "1 active account (1 ever seen)." in page
    records = page.split('id="wf-instance-records"')[1].split('id="wf-instance-changes"')[0]
    assert session_url in records and "[connection]" in records
    changes = page.split('id="wf-instance-changes"')[1].replace("<wbr>", "")  # names carry wrap points
    assert "&#x27;app&#x27;@&#x27;%&#x27;" in changes and "+ USAGE on Global" in changes

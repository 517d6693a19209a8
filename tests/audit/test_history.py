"""Model history (django-auditlog): who changed credentials, instances, channels, users and groups.

Secrets are logged by field name only: neither the plaintext nor the stored ciphertext, old or new,
may appear anywhere in a log entry's row.
"""

from __future__ import annotations

import pytest
from auditlog.models import LogEntry
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse

from alerts.models import AlertChannel
from audit.history import HIDDEN
from audit.models import AuditEvent
from instances.models import Credential, Instance

pytestmark = pytest.mark.django_db

OLD_PASSWORD = "s3cr3t-Pa55"  # tests/conftest.py make_credential's
NEW_PASSWORD = "n3w-Sup3r-Secret-99"


def entries(model, pk=None):
    qs = LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(model)).order_by("pk")
    return list(qs.filter(object_pk=str(pk)) if pk is not None else qs)


def row_text(entry: LogEntry) -> str:
    """Every column of the entry's row, as stored."""
    return " ".join(str(v) for v in LogEntry.objects.filter(pk=entry.pk).values().get().values())


def assert_no_secret(model, *secrets: str) -> None:
    for entry in entries(model):
        text = row_text(entry)
        for secret in secrets:
            assert secret not in text, (secret, text)


def credential_form(credential: Credential, **changes) -> dict:
    data = {
        "name": credential.name,
        "username": credential.username,
        "password": "",
        "allowed_hosts": credential.allowed_hosts,
        "allowed_ports": credential.allowed_ports,
        "description": credential.description,
    }
    data.update(changes)
    return data


def test_a_credential_change_in_the_admin_names_the_fields_and_holds_no_password(client_for, make_credential):
    credential = make_credential(name="mon", password=OLD_PASSWORD)
    old_cipher = credential.password_encrypted
    url = reverse("admin:instances_credential_change", args=[credential.pk])
    response = client_for("alice").post(url, credential_form(credential, password=NEW_PASSWORD, description="rotated"))
    assert response.status_code == 302, response.content.decode()[:2000]
    credential.refresh_from_db()
    assert credential.get_password() == NEW_PASSWORD
    new_cipher = credential.password_encrypted

    create, change = entries(Credential, credential.pk)
    assert create.action == LogEntry.Action.CREATE and create.actor is None  # made in the test, no request
    assert change.action == LogEntry.Action.UPDATE
    assert (change.actor.username, change.remote_addr) == ("alice", "10.9.8.7")
    assert set(change.changes_dict) == {"password_encrypted", "description"}
    assert change.changes_dict["password_encrypted"] == [HIDDEN, HIDDEN]
    assert change.changes_dict["description"] == [HIDDEN, HIDDEN]  # every credential field: names only
    assert_no_secret(Credential, OLD_PASSWORD, NEW_PASSWORD, old_cipher, new_cipher)


def test_a_credential_created_and_deleted_through_the_api_records_the_token_user(api_client, alice):
    client = api_client(alice)
    response = client.post(
        "/api/v1/credentials/", {"name": "api-cred", "username": "mon", "password": NEW_PASSWORD}, format="json"
    )
    assert response.status_code == 201, response.json()
    pk = response.json()["id"]
    cipher = Credential.objects.get(pk=pk).password_encrypted
    assert client.delete(f"/api/v1/credentials/{pk}/").status_code == 204

    create, delete = entries(Credential, pk)
    # the token is checked by the view, after every middleware: the actor is still the token's user
    assert (create.actor.username, create.action, create.remote_addr) == ("alice", LogEntry.Action.CREATE, "127.0.0.1")
    assert (delete.actor.username, delete.action) == ("alice", LogEntry.Action.DELETE)
    assert "password_encrypted" in create.changes_dict and create.object_repr == "api-cred (mon)"
    assert_no_secret(Credential, NEW_PASSWORD, cipher)


def test_a_deleted_instance_keeps_its_history_and_its_audit_events(api_client, bob, alice, client_for, make_instance):
    instance = make_instance(name="doomed", port=1)  # nothing listens on port 1: the sync fails at once
    client = api_client(bob)
    assert client.patch(f"/api/v1/instances/{instance.pk}/", {"description": "to be removed"}).status_code == 200
    client.post(f"/api/v1/instances/{instance.pk}/sync/", {})
    pk = instance.pk
    delete = client_for("alice").post(reverse("admin:instances_instance_delete", args=[pk]), {"post": "yes"})
    assert delete.status_code == 302
    assert not Instance.objects.filter(pk=pk).exists()

    create, change, deleted = entries(Instance, pk)
    assert change.actor.username == "bob" and change.changes_dict["description"] == ["", "to be removed"]
    assert (deleted.action, deleted.actor.username, deleted.object_repr) == (LogEntry.Action.DELETE, "alice", "doomed")
    event = AuditEvent.objects.get(kind="sync_started")
    assert (event.object_type, event.object_id, event.object_repr) == ("instances.instance", str(pk), "doomed")
    # syncs write bookkeeping (last sync, count, version): not changes anyone made
    assert all("sync_count" not in e.changes_dict and "last_sync_at" not in e.changes_dict for e in (create, change))


def test_alert_channel_secrets_are_names_only(client_for):
    channel = AlertChannel(name="ops", kind="webhook")
    channel.set_webhook_url("https://hooks.example.com/T000/B000/tok3n-very-secret")
    secret = channel.rotate_signing_secret()
    channel.save()
    cipher = channel.webhook_url_encrypted
    channel.set_webhook_url("https://hooks.example.com/T111/B111/an0ther-secret")
    channel.save()
    (create, change) = entries(AlertChannel, channel.pk)
    assert change.changes_dict["webhook_url_encrypted"] == [HIDDEN, HIDDEN]
    assert create.changes_dict["signing_secret_encrypted"] == [HIDDEN, HIDDEN]
    secrets = ["tok3n-very-secret", "an0ther-secret", cipher, channel.webhook_url_encrypted]
    secrets += [secret, channel.signing_secret_encrypted]
    assert_no_secret(AlertChannel, *secrets)


def test_users_and_groups_are_tracked_with_the_password_by_name_only(client_for, alice, django_user_model):
    client = client_for("alice")
    add = client.post(
        reverse("admin:auth_user_add"),
        {"username": "erin", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"},
    )
    assert add.status_code == 302, add.content.decode()[:3000]
    erin = django_user_model.objects.get(username="erin")
    group = Group.objects.create(name="auditors")
    erin.groups.add(group)

    user_entries = entries(django_user_model, erin.pk)
    assert user_entries[0].actor.username == "alice"
    assert user_entries[0].changes_dict["password"] == [HIDDEN, HIDDEN]
    assert any(e.changes_dict.get("groups", {}).get("objects") == ["auditors"] for e in user_entries)
    assert entries(Group, group.pk)[0].action == LogEntry.Action.CREATE
    assert_no_secret(django_user_model, NEW_PASSWORD, erin.password)


def test_the_log_entry_admin_is_visible_to_admins_read_only_and_hidden_from_others(client_for, make_credential):
    credential = make_credential(name="seen")
    entry = entries(Credential, credential.pk)[0]
    alice = client_for("alice")
    changelist = reverse("admin:auditlog_logentry_changelist")
    assert alice.get(changelist).status_code == 200
    assert alice.get(reverse("admin:auditlog_logentry_change", args=[entry.pk])).status_code == 200
    assert alice.get(reverse("admin:auditlog_logentry_add")).status_code == 403
    assert alice.post(reverse("admin:auditlog_logentry_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    assert alice.post(reverse("admin:auditlog_logentry_change", args=[entry.pk]), {}).status_code == 403
    assert LogEntry.objects.filter(pk=entry.pk).exists()
    assert client_for("bob").get(changelist).status_code == 403
    assert client_for("charlie").get(changelist).status_code == 403

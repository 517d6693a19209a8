"""Secrets stay hidden: webhook URLs encrypted at rest and masked everywhere; a signing secret per channel.

The receiver's URL carries a token in its path and query (``/hooks/whalefall?token=hook-token-123``):
no page or API body anybody can fetch shows it after saving, the database row holds it only
encrypted, and deliveries still reach it, signed with the channel's own secret.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import re

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from alerts.models import AlertChannel, AlertDelivery

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:alerts_alertchannel_changelist")
ADD = reverse("admin:alerts_alertchannel_add")
TOKEN = "T0KEN-in-the-path-9c1d"
URL = f"https://hooks.example.com/services/{TOKEN}?sig={TOKEN}"


def form(**overrides) -> dict:
    data = {
        "name": "ops",
        "kind": "webhook",
        "webhook_url": URL,
        "email_recipients": "",
        "min_severity": "high",
        "is_active": "on",
        "description": "",
    }
    data.update(overrides)
    return data


def change_url(channel: AlertChannel) -> str:
    return reverse("admin:alerts_alertchannel_change", args=[channel.pk])


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def raw_rows() -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM alerts_alertchannel")
        return cursor.fetchall()


def signature(key: str, hit) -> str:
    stamp = hit.headers["x-whalefall-timestamp"]
    return "sha256=" + hmac.new(key.encode(), stamp.encode() + b"." + hit.raw, hashlib.sha256).hexdigest()


def test_the_url_is_encrypted_at_rest_and_masked_on_every_page_for_everyone(client, role_user, bob):
    client.force_login(bob)
    assert client.post(ADD, form()).status_code == 302
    channel = AlertChannel.objects.get()
    assert channel.get_webhook_url() == URL and channel.target_display == "https://hooks.example.com/…"

    rows = raw_rows()
    assert len(rows) == 1 and not any(TOKEN in str(value) for value in rows[0])
    with connection.cursor() as cursor:
        columns = [c.name for c in connection.introspection.get_table_description(cursor, "alerts_alertchannel")]
    assert "webhook_url" not in columns and "webhook_url_encrypted" in columns

    for name in ("alice", "bob", "charlie"):
        client.force_login(role_user(name))
        for url in (CHANGELIST, change_url(channel), reverse("admin:alerts_alertchannel_history", args=[channel.pk])):
            response = client.get(url)
            html = response.content.decode()
            assert response.status_code == 200, (name, url)
            assert TOKEN not in html and "/services/" not in html, (name, url)
        assert "https://hooks.example.com/…" in client.get(change_url(channel)).content.decode()
    for user in (role_user("alice"), role_user("charlie")):  # no API body carries it either
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
        for url in ("/api/schema/", "/api/v1/instances/", "/api/v1/sync-sessions/"):
            assert TOKEN not in api.get(url).content.decode(), url


def test_reading_the_url_attribute_is_refused():
    channel = AlertChannel.objects.create(name="ops", kind="webhook", webhook_url=URL)
    with pytest.raises(AttributeError):
        _ = channel.webhook_url
    assert TOKEN not in repr(channel) + str(channel)


def test_a_blank_url_keeps_the_stored_one_and_a_new_one_replaces_it(client, bob):
    channel = AlertChannel.objects.create(name="ops", kind="webhook", webhook_url=URL)
    client.force_login(bob)
    page = client.get(change_url(channel)).content.decode()
    assert TOKEN not in page and 'name="webhook_url"' in page and "Leave empty to keep it" in page
    assert client.post(change_url(channel), form(webhook_url="", description="kept")).status_code == 302
    channel.refresh_from_db()
    assert (channel.description, channel.get_webhook_url()) == ("kept", URL)
    assert client.post(change_url(channel), form(webhook_url="http://10.0.0.5:8080/new/x")).status_code == 302
    channel.refresh_from_db()
    assert channel.get_webhook_url() == "http://10.0.0.5:8080/new/x"
    assert channel.target_display == "http://10.0.0.5:8080/…"


def test_the_signing_secret_is_shown_once_after_creation_and_signs_the_deliveries(
    client, bob, receiver, q_sync, django_capture_on_commit_callbacks, settings
):
    settings.WHALEFALL_ALERT_SIGNING_KEY = "env-key-not-used"
    client.force_login(bob)
    page = client.post(ADD, form(webhook_url=receiver.url), follow=True).content.decode()
    secret = re.search(r"shown only this once; store it with the receiver: ([\w-]+)<", page).group(1)
    channel = AlertChannel.objects.get()
    assert channel.signing_key() == secret
    assert not any(secret in str(value) for value in raw_rows()[0])  # encrypted too
    for url in (CHANGELIST, change_url(channel)):  # once: the page after saving, never again
        assert secret not in client.get(url).content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        client.post(CHANGELIST, {"action": "send_test_alert", "_selected_action": [channel.pk]})
    [hit] = receiver.requests
    assert hit.path == "/hooks/whalefall?token=hook-token-123"  # delivery decrypts the real URL
    assert hit.headers["x-whalefall-signature"] == signature(secret, hit)
    assert AlertDelivery.objects.get().status == "sent"
    assert "hook-token-123" not in client.get(reverse("admin:alerts_alertdelivery_changelist")).content.decode()


def test_operator_rotates_the_secret_viewer_cannot(client, bob, charlie, receiver, q_sync, settings):
    settings.WHALEFALL_ALERT_SIGNING_KEY = "env-key"
    channel = AlertChannel.objects.create(name="old", kind="webhook", webhook_url=receiver.url)
    AlertChannel.objects.filter(pk=channel.pk).update(signing_secret_encrypted="")  # a channel from before
    channel.refresh_from_db()
    assert channel.signing_key() == "env-key"
    action = {"action": "rotate_signing_secret", "_selected_action": [channel.pk]}

    client.force_login(charlie)
    assert b"rotate_signing_secret" not in client.get(CHANGELIST).content
    assert "environment key" in client.get(change_url(channel)).content.decode()
    client.post(CHANGELIST, action)
    channel.refresh_from_db()
    assert not channel.has_signing_secret

    client.force_login(bob)
    assert b"rotate_signing_secret" in client.get(CHANGELIST).content
    response = client.post(CHANGELIST, action)
    [shown] = [m for m in messages_of(response) if "shown only this once" in m]
    channel.refresh_from_db()
    assert channel.has_signing_secret and shown.endswith(channel.signing_key())
    assert "own secret" in client.get(change_url(channel)).content.decode()


def test_the_migration_encrypts_existing_urls_and_reverses(transactional_db):
    from django.db.migrations.executor import MigrationExecutor

    from instances import crypto

    def migrate(target):
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate([("alerts", target)])

    try:
        migrate("0002_digest_event")
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO alerts_alertchannel (name, kind, webhook_url, email_recipients, db_types, environments,"
                " min_severity, is_active, description, created_at, updated_at)"
                " VALUES ('legacy', 'webhook', %s, '', '[]', '[]', 'high', %s, '', %s, %s)",
                [URL, True, "2026-01-01 00:00:00", "2026-01-01 00:00:00"],
            )
        migrate("0003_encrypted_webhook_url_signing_secret")
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM alerts_alertchannel")
            row = cursor.fetchone()
            cursor.execute(
                "SELECT webhook_url_encrypted, webhook_url_mask, signing_secret_encrypted FROM alerts_alertchannel"
            )
            encrypted, mask, secret = cursor.fetchone()
        assert not any(TOKEN in str(value) for value in row)
        assert crypto.decrypt(encrypted) == URL and mask == "https://hooks.example.com/…" and secret == ""
        migrate("0002_digest_event")
        with connection.cursor() as cursor:
            cursor.execute("SELECT webhook_url FROM alerts_alertchannel")
            assert cursor.fetchone()[0] == URL
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())


def test_rotate_alert_keys_re_encrypts_with_the_newest_key(settings):
    from cryptography.fernet import Fernet
    from django.core.management import call_command

    channel = AlertChannel.objects.create(name="ops", kind="webhook", webhook_url=URL)
    secret = channel.new_signing_secret
    new_key = Fernet.generate_key().decode()
    settings.WHALEFALL_FIELD_KEYS = [new_key, *settings.WHALEFALL_FIELD_KEYS]
    call_command("rotate_alert_keys", stdout=io.StringIO())
    settings.WHALEFALL_FIELD_KEYS = [new_key]  # the old key removed
    channel.refresh_from_db()
    assert (channel.get_webhook_url(), channel.signing_key()) == (URL, secret)

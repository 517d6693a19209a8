"""Webhook URLs encrypted at rest, and a per-channel signing secret.

Forward: every stored URL is encrypted with WHALEFALL_FIELD_KEYS (like credential passwords) and
its mask kept for display, then the plaintext column is dropped. Existing channels get no signing
secret, so they keep signing with WHALEFALL_ALERT_SIGNING_KEY until someone rotates theirs.
Backward: the plaintext column comes back and is filled by decrypting (needs the same keys).
"""

from urllib.parse import urlsplit

from django.db import migrations, models


def mask(url):
    """scheme://host[:port]/… (a frozen copy of alerts.models.safe_url)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(invalid URL)"
    more = "/…" if parts.path not in ("", "/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{more}"


def encrypt_urls(apps, schema_editor):
    from instances import crypto

    channel_model = apps.get_model("alerts", "AlertChannel")
    rows = channel_model.objects.using(schema_editor.connection.alias).exclude(webhook_url="")
    for channel in rows.only("pk", "webhook_url"):
        channel.webhook_url_encrypted = crypto.encrypt(channel.webhook_url)
        channel.webhook_url_mask = mask(channel.webhook_url)[:300]
        channel.webhook_url = ""  # never left in plaintext, even before the column is dropped
        channel.save(update_fields=["webhook_url_encrypted", "webhook_url_mask", "webhook_url"])


def decrypt_urls(apps, schema_editor):
    from instances import crypto

    channel_model = apps.get_model("alerts", "AlertChannel")
    rows = channel_model.objects.using(schema_editor.connection.alias).exclude(webhook_url_encrypted="")
    for channel in rows.only("pk", "webhook_url_encrypted"):
        channel.webhook_url = crypto.decrypt(channel.webhook_url_encrypted)
        channel.save(update_fields=["webhook_url"])


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0002_digest_event"),
    ]

    operations = [
        migrations.AddField(
            model_name="alertchannel",
            name="webhook_url_encrypted",
            field=models.TextField(blank=True, editable=False, verbose_name="encrypted webhook URL"),
        ),
        migrations.AddField(
            model_name="alertchannel",
            name="webhook_url_mask",
            field=models.CharField(blank=True, editable=False, max_length=300, verbose_name="webhook URL"),
        ),
        migrations.AddField(
            model_name="alertchannel",
            name="signing_secret_encrypted",
            field=models.TextField(blank=True, editable=False, verbose_name="encrypted signing secret"),
        ),
        migrations.RunPython(encrypt_urls, decrypt_urls, elidable=False),
        # reversing this re-adds the column (empty: blank CharField), then decrypt_urls refills it
        migrations.RemoveField(model_name="alertchannel", name="webhook_url"),
    ]

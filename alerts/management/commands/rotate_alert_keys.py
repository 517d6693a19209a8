"""Re-encrypt every alert channel's webhook URL and signing secret with the newest field key."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from alerts.models import AlertChannel
from instances import crypto

COLUMNS = ("webhook_url_encrypted", "signing_secret_encrypted")


class Command(BaseCommand):
    help = (
        "Re-encrypt alert channels' webhook URLs and signing secrets with the first key of "
        "WHALEFALL_FIELD_KEYS (run it beside rotate_field_keys, before removing the old key)."
    )

    def handle(self, *args: object, **options: object) -> None:
        rotated = 0
        failed: list[str] = []
        with transaction.atomic():
            for channel in AlertChannel.objects.select_for_update().order_by("pk"):
                try:
                    for column in COLUMNS:
                        if getattr(channel, column):
                            setattr(channel, column, crypto.rotate(getattr(channel, column)))
                except crypto.CredentialDecryptError:
                    failed.append(channel.name)
                    continue
                channel.save(update_fields=[*COLUMNS, "updated_at"])
                rotated += 1
            if failed:
                transaction.set_rollback(True)
        if failed:
            raise CommandError(
                f"{len(failed)} alert channel(s) cannot be decrypted with the configured keys "
                f"({', '.join(failed)}); nothing was changed. Add the old key back to WHALEFALL_FIELD_KEYS."
            )
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {rotated} alert channel(s) with the newest key."))

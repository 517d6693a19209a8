"""Re-encrypt every stored credential with the newest field key."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from instances import crypto
from instances.models import Credential


class Command(BaseCommand):
    help = (
        "Re-encrypt all credentials with the first key of WHALEFALL_FIELD_KEYS. "
        "Rotate by prepending a new key, running this, then removing the old key."
    )

    def handle(self, *args: object, **options: object) -> None:
        rotated = 0
        failed: list[str] = []
        with transaction.atomic():
            for cred in Credential.objects.select_for_update().exclude(password_encrypted=""):
                try:
                    cred.password_encrypted = crypto.rotate(cred.password_encrypted)
                except crypto.CredentialDecryptError:
                    failed.append(cred.name)
                    continue
                cred.save(update_fields=["password_encrypted", "updated_at"])
                rotated += 1
            if failed:
                transaction.set_rollback(True)
        if failed:
            raise CommandError(
                f"{len(failed)} credential(s) cannot be decrypted with the configured keys "
                f"({', '.join(failed)}); nothing was changed. Add the old key back to WHALEFALL_FIELD_KEYS."
            )
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {rotated} credential(s) with the newest key."))

"""Create the `admin` superuser once, so a fresh install can log in."""

from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the admin superuser if missing (password from WHALEFALL_ADMIN_PASSWORD or generated, shown once)."

    def handle(self, *args: object, **options: object) -> None:
        User = get_user_model()
        username = os.environ.get("WHALEFALL_ADMIN_USER", "admin")
        if User.objects.filter(username=username).exists():
            self.stdout.write(f"Superuser {username!r} exists.")
            return
        password = os.environ.get("WHALEFALL_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        if os.environ.get("WHALEFALL_ADMIN_PASSWORD"):
            self.stdout.write(self.style.SUCCESS(f"Created superuser {username!r} with the given password."))
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Created superuser {username!r} with password: {password}\n"
                    "This is shown once; change it in the admin."
                )
            )

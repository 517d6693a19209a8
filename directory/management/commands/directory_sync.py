"""Read the directory now (what the schedule "whalefall: directory sync" does), then relink every instance."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from directory.services import directory_sync


class Command(BaseCommand):
    help = "Read people and groups from LDAP/Active Directory and re-evaluate account links and findings."

    def handle(self, *args: object, **options: object) -> None:
        read = directory_sync(via="cli")
        if read.outcome != "ok":
            # exit non-zero so cron/CI notice; nothing was changed by the failed read
            raise CommandError(f"directory read failed ({read.error_kind}): {read.error}")
        details = read.details or {}
        self.stdout.write(
            f"directory read OK: {read.people} people, {read.groups} groups, {read.pages} pages; "
            f"{details.get('disabled', 0)} newly disabled, {details.get('deleted', 0)} deleted, "
            f"{details.get('links', 0)} account links"
        )

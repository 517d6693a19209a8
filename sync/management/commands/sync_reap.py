"""Fail sync records whose worker stopped beating, so no session stays running forever."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from sync.services import sync_reap


class Command(BaseCommand):
    help = "Fail running records whose heartbeat is older than the limit, release their leases, finalize sessions."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--stale-after",
            type=int,
            default=None,
            help="seconds without a heartbeat before a running record is failed (default: WHALEFALL_STALE_SECONDS)",
        )

    def handle(self, *args: object, **options: object) -> None:
        reaped = sync_reap(stale_after=options["stale_after"])
        self.stdout.write(f"reaped {reaped} stale record(s)")

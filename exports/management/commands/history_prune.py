"""Archive, then delete, change logs and closed permission snapshots older than N days (docs/retention.md).

Why a command next to the daily schedule: an operator runs a first prune by hand (``--dry-run``
to see the counts, then for real while watching), and a cron-only deployment can run it without
the django-q2 cluster. Exit 0 when done or when the policy is off; an error (exit 1) deletes nothing
that is not in a complete archive.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.models import AuditVia
from exports.retention import PruneResult, RetentionError, history_prune, retention_policy


class Command(BaseCommand):
    help = (
        "Archive (gzip CSV) then delete change logs and closed permission snapshots older than "
        "--days N (default WHALEFALL_RETENTION_DAYS; 0 = off). Open snapshots are never deleted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, help="prune what is older than this many days (1 or more)")
        parser.add_argument("--dry-run", action="store_true", help="count what would be archived and deleted")
        parser.add_argument("--archive-dir", help="where the archives go (default WHALEFALL_RETENTION_ARCHIVE_DIR)")
        parser.add_argument("--batch-size", type=int, help="rows deleted per transaction")
        parser.add_argument(
            "--no-archive", action="store_true", help="delete without writing an archive (needs --i-have-a-backup)"
        )
        parser.add_argument(
            "--i-have-a-backup",
            action="store_true",
            dest="have_backup",
            help="confirm, with --no-archive, that a database backup holds what will be deleted",
        )
        parser.add_argument("--json", action="store_true", help="print the outcome as one JSON object")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["days"] is not None and opts["days"] < 1:
            raise CommandError(f"--days {opts['days']} must be 1 or more (without --days the setting applies).")
        if opts["no_archive"] and not opts["have_backup"] and not opts["dry_run"]:
            raise CommandError(
                "--no-archive deletes history that no file keeps: add --i-have-a-backup if a database "
                "backup holds it, or drop --no-archive to archive first."
            )
        try:
            policy = retention_policy()
            if opts["days"] is None and not policy.enabled:
                self._off(opts["json"])
                return
            result = history_prune(
                days=opts["days"],
                archive_dir=opts["archive_dir"],
                dry_run=opts["dry_run"],
                archive=not opts["no_archive"],
                batch_size=opts["batch_size"],
                via=AuditVia.CLI,
            )
        except RetentionError as exc:
            raise CommandError(str(exc)) from exc
        if opts["json"]:
            self.stdout.write(json.dumps(result.as_dict(), sort_keys=True))
        else:
            self._report(result)

    def _off(self, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(PruneResult(enabled=False).as_dict(), sort_keys=True))
        else:
            self.stdout.write(
                "History retention is off (WHALEFALL_RETENTION_DAYS=0): nothing pruned. "
                "Set it, or pass --days N, to prune."
            )

    def _report(self, result: PruneResult) -> None:
        verb = "would archive and delete" if result.archiving else "would delete (no archive)"
        head = "dry run: " if result.dry_run else ""
        self.stdout.write(f"{head}older than {result.cutoff:%Y-%m-%d %H:%M:%S} UTC ({result.days} days)")
        for kind in result.kinds:
            kept = f", {kind.kept_referenced} kept (referenced)" if kind.kept_referenced else ""
            if result.dry_run:
                self.stdout.write(f"  {kind.kind}: {verb} {kind.eligible}{kept}")
            else:
                archived = f"{kind.archived} archived, " if result.archiving else ""
                self.stdout.write(f"  {kind.kind}: {archived}{kind.pruned} deleted{kept}")
                if kind.archive:
                    self.stdout.write(f"    archive: {kind.archive}")
        if result.dry_run and result.archiving and result.archive_dir:
            where = Path(result.archive_dir)
            probe = where if where.exists() else next((p for p in where.parents if p.exists()), where)
            state = "writable" if os.access(probe, os.W_OK) else "NOT writable"
            self.stdout.write(f"  archive folder: {where} ({state})")
        elif not result.dry_run and not any(k.eligible for k in result.kinds):
            self.stdout.write("  nothing older than the cutoff: no archive written")

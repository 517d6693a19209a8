"""A history with old and recent rows: what the retention tests prune (or must not).

``history`` builds two accounts through the real apply path (their open snapshots and "added"
changes are recent), then writes history of known ages directly: change logs 40 days old and
5 days old, closed snapshots replaced 40 days ago (one of them empty) and 5 days ago, and an open
snapshot that has been current for a year. ``DAYS`` (30) separates the old from the recent.
"""

from __future__ import annotations

import csv
import gzip
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.utils import timezone

from accountsync.adapters.base import Privilege
from accountsync.models import AccountChangeLog, AccountPermission, InstanceAccount
from tests.exports.conftest import HOSTILE, apply, mysql_user

DAYS = 30


def read_archive(path: str | Path) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of a gzip CSV archive, as a spreadsheet or ``zcat | csv`` would read it."""
    with gzip.open(path, "rt", encoding="utf-8-sig", newline="") as text:
        reader = csv.DictReader(text)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def archive_text(path: str | Path) -> str:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as text:
        return text.read()


def snapshot(*privileges: tuple[str, str], roles=(), caps=()) -> dict:
    return {
        "privileges": [{"scope": s, "privilege": p, "grantable": False} for s, p in privileges],
        "roles": [{"role": r, "admin_option": False} for r in roles],
        "capabilities": list(caps),
    }


@pytest.fixture
def history(make_instance, tmp_path, settings):
    settings.WHALEFALL_RETENTION_ARCHIVE_DIR = tmp_path / "archive"
    settings.WHALEFALL_RETENTION_DAYS = 0
    inst = make_instance("mysql", name="my-prod")
    sel = Privilege("database:sales", "SELECT")
    apply(inst, mysql_user("app_rw", "%", sel, caps={"GRANT_ADMIN"}), mysql_user(HOSTILE[0], "%", sel))
    rw = InstanceAccount.objects.get(instance=inst, username="app_rw")
    hostile = InstanceAccount.objects.get(instance=inst, username=HOSTILE[0])
    now = timezone.now()
    old, recent, ancient = now - timedelta(days=DAYS + 10), now - timedelta(days=5), now - timedelta(days=365)

    def log(account, when, summary):
        return AccountChangeLog.objects.create(
            instance=inst,
            account=account,
            change_type="privileges_changed",
            diff=[{"op": "add", "scope": "database:sales", "privilege": "DELETE", "password": "never-exported"}],
            summary=summary,
            detected_at=when,
        )

    def closed(account, valid_from, valid_to, snap):
        return AccountPermission.objects.create(
            account=account,
            instance=inst,
            snapshot=snap,
            digest="d" * 64,
            collected_at=valid_from,
            valid_from=valid_from,
            valid_to=valid_to,
        )

    old_logs = [log(rw, old - timedelta(minutes=i), f"old change {i}") for i in range(5)]
    old_logs.append(log(hostile, old, HOSTILE[1]))
    recent_logs = [log(rw, recent, "recent change")]
    old_snaps = [
        closed(rw, ancient, old, snapshot(("database:sales", "DELETE"), roles=["reporting"], caps=["GRANT_ADMIN"])),
        closed(rw, ancient - timedelta(days=1), ancient, snapshot()),  # held nothing: still archived
        closed(hostile, ancient, old, snapshot(("global", "PROCESS"))),
    ]
    recent_snaps = [closed(hostile, old, recent, snapshot(("global", "RELOAD")))]
    # the current state of an account that has not changed for a year: open, older than any cutoff
    open_snap = AccountPermission.objects.get(account=rw, valid_to__isnull=True)
    AccountPermission.objects.filter(pk=open_snap.pk).update(valid_from=ancient, collected_at=ancient)
    return SimpleNamespace(
        instance=inst,
        rw=rw,
        hostile=hostile,
        old_logs=old_logs,
        recent_logs=recent_logs,
        old_snaps=old_snaps,
        recent_snaps=recent_snaps,
        open_snap=open_snap,
        archive_dir=tmp_path / "archive",
        now=now,
    )

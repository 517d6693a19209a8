"""History retention (exports/retention.py): archive first, then prune only what the archive holds."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accountsync.models import AccountChangeLog, AccountPermission
from alerts.models import AlertDelivery
from audit.models import AuditEvent, AuditKind
from exports import retention
from exports.columns import KINDS
from exports.retention import SNAPSHOT_COLUMNS, RetentionError, history_prune, retention_policy
from exports.tasks import run_history_retention
from exports.writers import stream_export
from sync.management.commands.setup_schedules import SCHEDULES
from tests.retention.conftest import DAYS, HOSTILE, archive_text, read_archive

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def ids(objs) -> set[int]:
    return {o.pk for o in objs}


def remaining(model) -> set[int]:
    return set(model.objects.values_list("pk", flat=True))


def archives(directory: Path) -> list[Path]:
    return sorted(directory.glob("*")) if directory.exists() else []


def test_archive_holds_exactly_the_pruned_rows_with_the_export_columns(history):
    old_logs = AccountChangeLog.objects.filter(pk__in=ids(history.old_logs)).order_by("pk")
    expected = "".join(stream_export("change_logs", old_logs, "csv")[0])  # what the admin export would send
    before_logs, before_snaps = remaining(AccountChangeLog), remaining(AccountPermission)

    result = history_prune(days=DAYS)

    logs, snaps = result.kinds
    assert (logs.kind, logs.archived, logs.pruned) == ("change_logs", 6, 6)
    assert (snaps.kind, snaps.archived, snaps.pruned) == ("permissions", 3, 3)
    assert remaining(AccountChangeLog) == before_logs - ids(history.old_logs)
    assert remaining(AccountPermission) == before_snaps - ids(history.old_snaps)
    # the change logs' archive is byte for byte the change_logs export of the rows it replaced
    assert archive_text(logs.archive) == expected
    header, rows = read_archive(logs.archive)
    assert tuple(header) == KINDS["change_logs"].columns
    assert {int(r["id"]) for r in rows} == ids(history.old_logs)
    assert "never-exported" not in expected  # secrets in a diff are scrubbed, as in every export
    assert "'" + HOSTILE[1] in {r["summary"] for r in rows}  # formula cells neutralised, as in every export
    # the snapshots' archive: the permissions export's columns, plus which snapshot and until when
    header, rows = read_archive(snaps.archive)
    assert tuple(header) == KINDS["permissions"].columns + SNAPSHOT_COLUMNS
    assert {int(r["snapshot_id"]) for r in rows} == ids(history.old_snaps)
    full, empty, other = history.old_snaps
    of_full = [(r["row_type"], r["privilege"]) for r in rows if int(r["snapshot_id"]) == full.pk]
    assert of_full == [("privilege", "DELETE"), ("role", "reporting"), ("capability", "GRANT_ADMIN")]
    assert [r["row_type"] for r in rows if int(r["snapshot_id"]) == empty.pk] == ["none"]
    assert {r["valid_to"] for r in rows if int(r["snapshot_id"]) == other.pk} == {
        other.valid_to.isoformat().replace("+00:00", "Z")
    }
    assert oct(os.stat(snaps.archive).st_mode & 0o777) == "0o600"
    assert not list(history.archive_dir.glob(".*.partial"))


def test_open_snapshots_and_recent_rows_are_never_pruned(history):
    history_prune(days=DAYS)
    assert AccountPermission.objects.filter(pk=history.open_snap.pk, valid_to__isnull=True).exists()  # a year old
    assert AccountPermission.objects.filter(valid_to__isnull=True).count() == 2  # every account's current state
    assert ids(history.recent_snaps) <= remaining(AccountPermission)
    assert ids(history.recent_logs) <= remaining(AccountChangeLog)
    assert AccountChangeLog.objects.filter(change_type="added").count() == 2  # the apply's own, today


def test_a_change_an_alert_points_to_is_kept(history):
    cited = history.old_logs[0]
    delivery = AlertDelivery.objects.create(
        channel_name="ops", event_kind="capability_gained", severity="high", change_log=cited, status="sent"
    )
    dry = history_prune(days=DAYS, dry_run=True)
    assert (dry.kinds[0].eligible, dry.kinds[0].kept_referenced) == (5, 1)

    result = history_prune(days=DAYS)

    assert AccountChangeLog.objects.filter(pk=cited.pk).exists()
    delivery.refresh_from_db()
    assert delivery.change_log_id == cited.pk  # not silently SET_NULL
    assert (result.kinds[0].pruned, result.kinds[0].kept_referenced) == (5, 1)
    _header, rows = read_archive(result.kinds[0].archive)
    assert cited.pk not in {int(r["id"]) for r in rows}  # kept, so not archived as if it were gone


def test_dry_run_changes_nothing_and_writes_nothing(history, capsys):
    before = remaining(AccountChangeLog), remaining(AccountPermission)
    result = history_prune(days=DAYS, dry_run=True)
    assert [(k.kind, k.eligible) for k in result.kinds] == [("change_logs", 6), ("permissions", 3)]
    call_command("history_prune", "--days", str(DAYS), "--dry-run")
    out = capsys.readouterr().out
    assert "change_logs: would archive and delete 6" in out and "permissions: would archive and delete 3" in out
    assert (remaining(AccountChangeLog), remaining(AccountPermission)) == before
    assert archives(history.archive_dir) == []
    assert not AuditEvent.objects.filter(kind=AuditKind.HISTORY_PRUNED).exists()


def test_policy_off_does_nothing(history, capsys):
    before = remaining(AccountChangeLog), remaining(AccountPermission)
    assert history_prune().enabled is False
    assert run_history_retention() == {
        "enabled": False,
        "days": 0,
        "cutoff": None,
        "dry_run": False,
        "archiving": True,
        "archive_dir": None,
        "kinds": [],
    }
    call_command("history_prune")
    assert "History retention is off" in capsys.readouterr().out
    assert (remaining(AccountChangeLog), remaining(AccountPermission)) == before
    assert not history.archive_dir.exists()
    assert not AuditEvent.objects.filter(kind=AuditKind.HISTORY_PRUNED).exists()


def test_the_schedule_prunes_with_the_setting_and_audits_it(history, settings):
    settings.WHALEFALL_RETENTION_DAYS = DAYS
    outcome = run_history_retention()
    assert [(k["kind"], k["pruned"]) for k in outcome["kinds"]] == [("change_logs", 6), ("permissions", 3)]
    event = AuditEvent.objects.get(kind=AuditKind.HISTORY_PRUNED)
    assert event.via == "schedule"
    assert event.details["complete"] is True and event.details["days"] == DAYS
    assert event.details["kinds"]["change_logs"]["pruned"] == 6
    assert event.details["kinds"]["permissions"]["archive"] == outcome["kinds"][1]["archive"]


def test_an_unwritable_archive_folder_deletes_nothing_and_says_so(history, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    before = remaining(AccountChangeLog), remaining(AccountPermission)
    with pytest.raises(CommandError, match=r"archive error in .*a-file.*nothing was deleted"):
        call_command("history_prune", "--days", str(DAYS), "--archive-dir", str(blocker / "archive"))
    assert (remaining(AccountChangeLog), remaining(AccountPermission)) == before
    event = AuditEvent.objects.get(kind=AuditKind.HISTORY_PRUNED)
    assert event.via == "cli" and event.details["complete"] is False and "nothing was deleted" in event.details["error"]


def test_a_failure_writing_the_second_archive_deletes_nothing_and_leaves_no_file(history, monkeypatch):
    real = retention._write_gzip
    calls = []

    def disk_full(path, chunks):
        calls.append(path)
        if len(calls) == 2:
            next(iter(chunks))  # the read has begun, as it would have when the disk fills
            raise OSError(28, "No space left on device")
        return real(path, chunks)

    monkeypatch.setattr(retention, "_write_gzip", disk_full)
    before = remaining(AccountChangeLog), remaining(AccountPermission)
    with pytest.raises(RetentionError, match=r"No space left on device.*nothing was deleted"):
        history_prune(days=DAYS)
    assert (remaining(AccountChangeLog), remaining(AccountPermission)) == before
    assert archives(history.archive_dir) == [history.archive_dir / retention.LOCK_NAME]  # the first one removed too


def test_rows_that_change_while_archiving_stop_the_prune(history, monkeypatch):
    real = retention._archive_name

    def meanwhile(directory, kind, cutoff, now):
        if kind == "change_logs":  # someone purges one row after it was counted
            AccountChangeLog.objects.filter(pk=history.old_logs[0].pk).delete()
        return real(directory, kind, cutoff, now)

    monkeypatch.setattr(retention, "_archive_name", meanwhile)
    before = remaining(AccountChangeLog) - {history.old_logs[0].pk}, remaining(AccountPermission)
    with pytest.raises(RetentionError, match="holds 5 rows, 6 were counted"):
        history_prune(days=DAYS)
    assert (remaining(AccountChangeLog), remaining(AccountPermission)) == before
    assert not list(history.archive_dir.glob("*.csv.gz"))


def test_a_crash_after_archiving_leaves_every_row_and_a_complete_archive(history, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("worker killed")

    monkeypatch.setattr(retention, "_delete", crash)
    before = remaining(AccountChangeLog), remaining(AccountPermission)
    with pytest.raises(RuntimeError):
        history_prune(days=DAYS)
    assert (remaining(AccountChangeLog), remaining(AccountPermission)) == before
    done = sorted(history.archive_dir.glob("*.csv.gz"))
    assert len(done) == 2
    logs = next(p for p in done if "change-logs" in p.name)
    assert {int(r["id"]) for r in read_archive(logs)[1]} == ids(history.old_logs)
    assert AuditEvent.objects.get(kind=AuditKind.HISTORY_PRUNED).details["error"] == "RuntimeError: worker killed"


def test_small_batches_cover_everything_one_transaction_each(history, settings):
    settings.WHALEFALL_RETENTION_BATCH_SIZE = 2
    with CaptureQueriesContext(connection) as queries:
        result = history_prune(days=DAYS)
    assert [k.pruned for k in result.kinds] == [6, 3]
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE")]
    assert sum('"accountsync_accountchangelog"' in q for q in deletes) == 3  # 6 rows, 2 per batch
    assert sum('"accountsync_accountpermission"' in q for q in deletes) == 2  # 3 rows: 2 + 1
    assert not remaining(AccountChangeLog) & ids(history.old_logs)


def test_a_second_run_prunes_nothing_and_writes_no_empty_archive(history, capsys):
    call_command("history_prune", "--days", str(DAYS))
    first = capsys.readouterr().out
    assert "change_logs: 6 archived, 6 deleted" in first and "archive: " in first
    written = archives(history.archive_dir)
    call_command("history_prune", "--days", str(DAYS))
    assert "nothing older than the cutoff: no archive written" in capsys.readouterr().out
    assert archives(history.archive_dir) == written


def test_no_archive_needs_the_backup_flag(history, capsys):
    before = remaining(AccountChangeLog)
    with pytest.raises(CommandError, match="--i-have-a-backup"):
        call_command("history_prune", "--days", str(DAYS), "--no-archive")
    assert remaining(AccountChangeLog) == before
    call_command("history_prune", "--days", str(DAYS), "--no-archive", "--i-have-a-backup", "--batch-size", "4")
    assert "change_logs: 6 deleted" in capsys.readouterr().out
    assert remaining(AccountChangeLog) == before - ids(history.old_logs)
    assert history.open_snap.pk in remaining(AccountPermission)
    assert not history.archive_dir.exists()


@pytest.mark.parametrize("value", ["-1", "abc", "1.5"])
def test_a_bad_setting_is_refused_before_anything_runs(history, settings, value):
    settings.WHALEFALL_RETENTION_DAYS = value
    with pytest.raises(RetentionError, match="WHALEFALL_RETENTION_DAYS"):
        retention_policy()
    with pytest.raises(CommandError, match="WHALEFALL_RETENTION_DAYS"):
        call_command("history_prune")
    with pytest.raises(CommandError, match="--days 0 must be 1 or more"):
        call_command("history_prune", "--days", "0")


@pytest.mark.parametrize(
    ("name", "value"), [("WHALEFALL_RETENTION_DAYS", "-3"), ("WHALEFALL_RETENTION_BATCH_SIZE", "lots")]
)
def test_settings_refuse_a_bad_value_at_start(name, value, tmp_path):
    env = {**os.environ, name: value, "WHALEFALL_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "config.settings"}
    run = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert run.returncode != 0
    assert "ImproperlyConfigured" in run.stderr and name in run.stderr


def test_the_archive_reads_back_with_zcat(history):
    result = history_prune(days=DAYS)
    with gzip.open(result.kinds[0].archive, "rb") as packed:
        assert packed.read().startswith("\ufeffid,detected_at,instance".encode())


def test_the_daily_schedule_exists():
    spec = SCHEDULES["whalefall: history retention"]
    assert spec["func"] == "exports.tasks.run_history_retention" and spec["minutes"] == 1440


def test_each_phase_logs_a_structured_line(history, caplog):
    with caplog.at_level("INFO", logger="exports.retention"):
        history_prune(days=DAYS)
    lines = [r.wf for r in caplog.records if getattr(r, "wf", None)]
    assert {(w["module"], w["operation"]) for w in lines} == {("exports", "history_prune")}
    assert [w["phase"] for w in lines] == ["start", "archived", "archived", "pruned", "pruned", "done"]
    assert lines[-1]["change_logs_pruned"] == 6 and lines[-1]["permissions_pruned"] == 3
    assert all({"instance_id", "db_type", "session_id"} <= set(w) for w in lines)

"""`manage.py sync_accounts`: selection, type defaults, --json, and exit codes 0/1/2."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from sync.models import SyncInstanceRecord, SyncSession
from tests.sync.conftest import closed_port

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("sync_accounts", *args, stdout=out)
    except SystemExit as exc:
        return int(exc.code), out.getvalue()
    return 0, out.getvalue()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((), "nothing to sync"),
        (("--instance", "nope"), "unknown instance 'nope'"),
        (("--instance", "dead", "--type", "hourly"), "unknown --type 'hourly'"),
        (("--instance", "dead", "--all"), "either --instance or --all"),
        (("--instance", "dead", "--type", "manual_batch"), "--user USERNAME"),
        (("--instance", "dead", "--type", "manual_batch", "--user", "ghost"), "unknown --user 'ghost'"),
    ],
)
def test_bad_usage_is_exit_2_and_runs_nothing(dead_instance, args, needle):
    dead_instance("dead")
    with pytest.raises(CommandError) as err:
        run(*args)
    assert err.value.returncode == 2
    assert needle in str(err.value)
    assert SyncSession.objects.count() == 0


def test_all_with_no_active_instance_is_usage_error(dead_instance):
    inst = dead_instance()
    inst.is_active = False
    inst.save()
    with pytest.raises(CommandError, match="no active instance") as err:
        run("--all")
    assert err.value.returncode == 2


def test_one_instance_runs_manual_single_and_exits_1_on_failure(dead_instance):
    inst = dead_instance("db1")
    code, out = run("--instance", str(inst.pk))
    assert code == 1
    assert "[1/1] db1 FAILED (connection)" in out
    assert "0 ok, 1 failed" in out
    assert SyncSession.objects.count() == 0


class TtyOut(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_tty_shows_progress_line_then_result(dead_instance):
    dead_instance("db1")
    out = TtyOut()
    with pytest.raises(SystemExit):
        call_command("sync_accounts", "--instance", "db1", stdout=out)
    assert out.getvalue().startswith("[1/1] db1 ...\r")
    assert "\r[1/1] db1 FAILED (connection)" in out.getvalue()


def test_json_output_for_a_batch(dead_instance, django_user_model):
    django_user_model.objects.create_user("bob", password="x")
    dead_instance("a")
    dead_instance("b")
    code, out = run("--instance", "a", "--instance", "b", "--user", "bob", "--json")
    assert code == 1
    doc = json.loads(out)
    session = SyncSession.objects.get()
    assert doc["session_id"] == str(session.session_id)
    assert (doc["sync_type"], doc["status"], doc["total_instances"], doc["failed_instances"]) == (
        "manual_batch",
        "failed",
        2,
        2,
    )
    assert [(r["instance"], r["success"], r["error_kind"]) for r in doc["results"]] == [
        ("a", False, "connection"),
        ("b", False, "connection"),
    ]
    assert session.created_by.username == "bob"


def test_all_defaults_to_batch_and_type_overrides(dead_instance):
    dead_instance("a")
    dead_instance("b")
    code, out = run("--all", "--type", "scheduled_task", "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["sync_type"] == "scheduled_task"
    assert SyncInstanceRecord.objects.filter(session__session_id=doc["session_id"]).count() == 2


def test_same_instance_twice_is_synced_once(dead_instance):
    inst = dead_instance("a")
    code, out = run("--instance", "a", "--instance", str(inst.pk), "--json")
    assert code == 1
    assert len(json.loads(out)["results"]) == 1


@pytest.mark.live
def test_live_success_exits_0(live_mariadb_instance):
    code, out = run("--instance", live_mariadb_instance.name, "--json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["session_id"] is None and doc["results"][0]["success"] is True


@pytest.fixture(scope="module")
def own_var_dir(tmp_path_factory):
    """A private app database for subprocess runs (the test database is not visible to a child process)."""
    var = tmp_path_factory.mktemp("var")
    env = {**os.environ, "WHALEFALL_VAR_DIR": str(var), "DJANGO_SETTINGS_MODULE": "config.settings"}
    env.pop("DATABASE_URL", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    script = (
        "from instances.models import Credential, Instance;"
        "c = Credential(name='c', username='u'); c.set_password('Zq9-secret-pw'); c.save();"
        f"Instance.objects.create(name='dead', db_type='mysql', host='127.0.0.1', port={closed_port()}, credential=c)"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script], cwd=ROOT, env=env, check=True, capture_output=True
    )
    return env


@pytest.mark.parametrize(
    ("args", "code"),
    [(["--instance", "dead"], 1), (["--instance", "nope"], 2), ([], 2), (["--instance", "dead", "--type", "x"], 2)],
)
def test_process_exit_codes_without_traceback(own_var_dir, args, code):
    proc = subprocess.run(
        [sys.executable, "manage.py", "sync_accounts", *args],
        cwd=ROOT,
        env=own_var_dir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "Zq9-secret-pw" not in proc.stderr + proc.stdout

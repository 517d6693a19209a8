"""`manage.py sync_accounts` arguments that are not what they look like, and a broker that is down.

Bad arguments are exit 2 with one line on stderr, never a traceback: ``"²".isdigit()``
is true yet ``int("²")`` fails, ``int()`` reads Arabic-Indic digits (an id nobody typed), bytes that are
not UTF-8 reach Python as lone surrogates no database driver can encode, and
``--timeout nan`` would wait forever. With ``--async`` and the broker unreachable the
command exits 3 with one line naming the session, whose records are failed with
error kind ``broker`` (the service does that before it raises ``SyncBrokerError``).
"One line" is the command's own answer; the service's log records (config/logging.py's
``LEVEL logger: message`` lines, also on stderr) are not counted.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from sync.models import SyncSession
from tests.broker import broker_down  # noqa: F401
from tests.sync.conftest import closed_port

ROOT = Path(__file__).resolve().parents[2]
SECRET = "Zq9-cli-secret"
AR_1, AR_2, AR_3 = "\N{ARABIC-INDIC DIGIT ONE}", "\N{ARABIC-INDIC DIGIT TWO}", "\N{ARABIC-INDIC DIGIT THREE}"
FULLWIDTH_1 = "\N{FULLWIDTH DIGIT ONE}"
# a record of the service's own log (config/logging.py's text format), not the command's answer
LOG_LINE = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")


def manage(env: dict[str, str], *args: str | bytes, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, timeout=timeout)


@pytest.fixture(scope="module")
def app_env(tmp_path_factory) -> dict[str, str]:
    """A private app database (SQLite under its own var dir) with instance ``dead`` (id 1) and user ``ops``.

    Subprocesses cannot see the test database, and only a real process shows what a
    user sees on stderr and as the exit code.
    """
    var = tmp_path_factory.mktemp("var")
    env = {**os.environ, "WHALEFALL_VAR_DIR": str(var), "DJANGO_SETTINGS_MODULE": "config.settings"}
    env.pop("DATABASE_URL", None)
    env.pop("Q_BROKER_URL", None)
    manage(env, "migrate", "-v", "0").check_returncode()
    script = (
        "from django.contrib.auth import get_user_model;"
        "from instances.models import Credential, Instance;"
        f"c = Credential(name='c', username='u'); c.set_password('{SECRET}'); c.save();"
        f"i = Instance.objects.create(name='dead', db_type='mysql', host='127.0.0.1', port={closed_port()},"
        " credential=c, options={'connect_timeout': 1});"
        "assert i.pk == 1, i.pk;"
        "get_user_model().objects.create_user('ops', password='ops-Pa55-word')"
    )
    manage(env, "shell", "-v", "0", "-c", script).check_returncode()
    return env


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int) -> str:
    stderr = proc.stderr.decode("utf-8", "backslashreplace")
    stdout = proc.stdout.decode("utf-8", "backslashreplace")
    assert proc.returncode == code, stderr + stdout
    assert "Traceback" not in stderr + stdout
    assert SECRET not in stderr + stdout
    lines = [line for line in stderr.strip().splitlines() if not LOG_LINE.match(line)]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("CommandError: ")
    return lines[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--instance", "²"], "unknown instance '²'"),  # isdigit() yet int() fails: was a traceback
        (["--instance", AR_1], f"unknown instance '{AR_1}'"),  # int() read it as instance 1
        (["--instance", AR_1 + AR_2], f"unknown instance '{AR_1}{AR_2}'"),
        (["--instance", FULLWIDTH_1], f"unknown instance '{FULLWIDTH_1}'"),
        (["--instance", "dead", "--instance", AR_3], f"unknown instance '{AR_3}'"),
        (["--instance", b"dead\xff"], "is not valid UTF-8"),  # argv bytes that are not UTF-8
        (["--all", "--user", b"\xffops"], "is not valid UTF-8"),
        (["--all", "--async", "--wait", "--user", "ops", "--timeout", "nan"], "positive number of seconds"),
        (["--all", "--async", "--wait", "--user", "ops", "--timeout", "-1"], "positive number of seconds"),
    ],
    ids=["superscript", "arabic-1", "arabic-12", "fullwidth", "second", "bad-utf8", "bad-utf8-user", "nan", "neg"],
)
def test_bad_arguments_are_exit_2_with_one_line(app_env, args, needle):
    line = assert_one_line_error(manage(app_env, "sync_accounts", *args), 2)
    assert needle in line


def test_an_ascii_id_still_selects_the_instance(app_env):
    proc = manage(app_env, "sync_accounts", "--instance", "1", "--json")
    assert proc.returncode == 1, proc.stderr  # selected and synced: the closed port fails it
    assert json.loads(proc.stdout)["results"][0]["instance"] == "dead"


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["²", AR_1, AR_1 + AR_2, FULLWIDTH_1])
def test_unicode_digits_never_select_by_id_in_process(dead_instance, value):
    dead_instance("dead")
    with pytest.raises(CommandError) as err:
        call_command("sync_accounts", "--instance", value, stdout=io.StringIO())
    assert err.value.returncode == 2
    assert f"unknown instance {value!r}" in str(err.value)
    assert SyncSession.objects.count() == 0


def test_async_with_the_broker_down_is_exit_3_with_one_line(app_env):
    env = {**app_env, "Q_BROKER_URL": f"redis://127.0.0.1:{closed_port()}/0"}
    line = assert_one_line_error(manage(env, "sync_accounts", "--all", "--async", "--user", "ops"), 3)
    assert "broker is unreachable" in line
    report = manage(
        app_env,
        "shell",
        "-v",
        "0",
        "-c",
        "import json; from sync.models import SyncSession; s = SyncSession.objects.order_by('-pk').first();"
        "print(json.dumps({'id': str(s.session_id), 'status': s.status, 'ended': s.completed_at is not None,"
        " 'records': sorted({(r.status, r.error_kind) for r in s.records.all()})}))",
    )
    session = json.loads(report.stdout)
    assert f"session {session['id']}" in line
    assert session["status"] == "failed" and session["ended"]
    assert session["records"] == [["failed", "broker"]]


@pytest.mark.django_db(transaction=True)
def test_async_with_the_broker_down_in_process(broker_down, dead_instance):  # noqa: F811
    dead_instance("dead")
    out = io.StringIO()
    with pytest.raises(CommandError) as err:
        call_command("sync_accounts", "--all", "--async", "--type", "scheduled_task", "--json", stdout=out)
    assert err.value.returncode == 3
    session = SyncSession.objects.get()
    assert f"session {session.session_id}" in str(err.value)
    assert "\n" not in str(err.value)
    assert session.status == "failed" and session.completed_at is not None
    assert {(r.status, r.error_kind) for r in session.records.all()} == {("failed", "broker")}
    doc = json.loads(out.getvalue())  # --json: the session id on stdout too, for scripts
    assert doc == {
        "session_id": str(session.session_id),
        "status": "failed",
        "error_kind": "broker",
        "not_queued": 1,
        "message": doc["message"],
    }

"""The production chapter of docs/operations.md run on the local PostgreSQL (live): install, health, backup,
restore, key rotation.

What the chapter does as root with systemd is done here without it: the ``sudo -u postgres`` commands run as
the ``postgres`` superuser over 127.0.0.1 (``-h 127.0.0.1 -U postgres``), a unit's ``ExecStart`` runs with the
environment file as its environment, and the names are the test's own: a login role and a database named like
the role (the chapter's ``whalefall``), and a temporary folder for ``/var/backups/whalefall`` and
``/var/lib/whalefall``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.deploy import production as prod
from tests.livedb import POSTGRES

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("pg_dump", "pg_restore", "createdb", "dropdb")),
        reason="needs PostgreSQL's client programs",
    ),
]

PG = ["-h", "127.0.0.1", "-p", str(POSTGRES["port"]), "-U", "postgres"]
MONITOR_PASSWORD = "mon-Pa55-" + secrets.token_hex(4)
WEBHOOK_URL = "https://hooks.example.com/T0/B0/hook-token-" + secrets.token_hex(4)


@pytest.fixture
def site(postgres_admin, unique_prefix, tmp_path):
    """The role and database ``createuser``/``createdb`` make, and the environment file filled in for them."""
    from psycopg import sql

    name, password = unique_prefix, secrets.token_urlsafe(24)
    with postgres_admin.cursor() as cur:
        cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password)))
        cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(name)))
    env = {**prod.base_env(tmp_path), **prod.environment_file(db_password=password)}
    assert env["DATABASE_URL"] == f"postgres://whalefall:{password}@127.0.0.1:5432/whalefall"
    env["DATABASE_URL"] = f"postgres://{name}:{password}@127.0.0.1:{POSTGRES['port']}/{name}"
    env["WHALEFALL_VAR_DIR"] = str(tmp_path / "var")
    backups = tmp_path / "backups"
    backups.mkdir(mode=0o700)
    try:
        yield {"name": name, "env": env, "backups": backups, "admin": postgres_admin, "tmp": tmp_path}
    finally:
        with postgres_admin.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def checked(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def migrate_unit(env: dict[str, str]) -> list[str]:
    """``systemctl start whalefall-migrate``: its ExecStart lines in order, each must succeed."""
    lines = prod.unit_values("whalefall-migrate.service", "ExecStart")
    return [checked(prod.run(prod.exec_argv(line), env)).stdout for line in lines]


def shell(env: dict[str, str], code: str) -> dict:
    proc = checked(prod.manage("shell", "-c", code, env=env))
    return json.loads(proc.stdout.strip().splitlines()[-1])


STORE = f"""
import json
from alerts.models import AlertChannel
from instances.models import Credential
c = Credential(name="prod-monitor", username="monitor"); c.set_password({MONITOR_PASSWORD!r}); c.save()
ch = AlertChannel.objects.create(name="ops", kind="webhook", webhook_url={WEBHOOK_URL!r})
print(json.dumps({{"signing_key": ch.new_signing_secret}}))
"""
READ = """
import json
from alerts.models import AlertChannel
from instances.crypto import CredentialDecryptError
from instances.models import Credential
try:
    ch = AlertChannel.objects.get(name="ops")
    out = {"password": Credential.objects.get(name="prod-monitor").get_password(),
           "webhook_url": ch.get_webhook_url(), "signing_key": ch.signing_key()}
except CredentialDecryptError as exc:
    out = {"error": type(exc).__name__}
print(json.dumps(out))
"""


def readable(env: dict[str, str], keys: str) -> dict:
    return shell({**env, "WHALEFALL_FIELD_KEYS": keys}, READ)


def backup(site) -> Path:
    """whalefall-backup.service: deploy/systemd/whalefall-backup DIR DATABASE KEEP_DAYS, as postgres."""
    argv = prod.exec_argv(prod.unit_value("whalefall-backup.service", "ExecStart"))
    assert argv[1:] == ["/var/backups/whalefall", "whalefall", "14"]
    env = {**prod.base_env(site["tmp"]), "PGHOST": "127.0.0.1", "PGPORT": str(POSTGRES["port"]), "PGUSER": "postgres"}
    out = checked(prod.run([argv[0], str(site["backups"]), site["name"], argv[3]], env)).stdout.strip()
    return Path(out)


def restore(site, dump: Path) -> None:
    """The chapter's restore block, line by line."""
    block = prod.doc_block("# restore a dump")
    idle = "web and worker: none run here"
    ran = []
    for line in block.splitlines()[1:]:
        words = shlex.split(line)
        if words[:2] == ["systemctl", "stop"] or words[:3] == ["systemctl", "start", "whalefall-web"]:
            ran.append(idle)
        elif words == ["systemctl", "start", "whalefall-migrate"]:
            migrate_unit(site["env"])
            ran.append("whalefall-migrate")
        else:
            assert words[:3] == ["sudo", "-u", "postgres"], line
            program, *args = words[3:]
            args = [dump_arg(arg, site["name"], dump) for arg in args]
            checked(prod.run([program, *PG, *args], prod.base_env(site["tmp"])))
            ran.append(program)
    assert ran == [idle, "dropdb", "createdb", "pg_restore", "whalefall-migrate", idle]


def dump_arg(arg: str, name: str, dump: Path) -> str:
    if arg.startswith("/var/backups/whalefall/whalefall-"):
        return str(dump)
    if arg == "whalefall":
        return name
    for option in ("--owner=whalefall", "--dbname=whalefall"):
        if arg == option:
            return option.replace("whalefall", name)
    return arg


def rotation_commands() -> list[str]:
    """The manage.py commands the chapter's key rotation block runs, in order."""
    generate = "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"
    block = prod.doc_block(f'/opt/whalefall/.venv/bin/python -c "{generate}"')
    return [line.split("whalefall-manage ")[1].split()[0] for line in block.splitlines() if "whalefall-manage " in line]


def test_install_health_backup_restore_and_key_rotation(site):
    env, old_key = site["env"], site["env"]["WHALEFALL_FIELD_KEYS"]

    # install: whalefall-migrate, then whalefall-web; its health through deploy/healthcheck.py
    first = migrate_unit(env)
    assert "Applying instances.0001_initial... OK" in first[0] and "created: whalefall: daily account sync" in first[1]
    again = migrate_unit(env)
    assert "No migrations to apply." in again[0], "whalefall-migrate is safe to start again"
    checked(prod.manage("check", "--deploy", "--fail-level", "WARNING", env=env))
    port = prod.free_port()
    logs = site["tmp"] / "web.log"
    with open(logs, "w") as log:
        web = subprocess.Popen(
            prod.gunicorn_argv(port), cwd=prod.ROOT, env=env, stdout=log, stderr=log, start_new_session=True
        )
    try:
        probe = [str(prod.BIN / "python"), "deploy/healthcheck.py", f"http://127.0.0.1:{port}/healthz"]
        deadline = time.monotonic() + 60
        while (proc := prod.run(probe, env)).returncode != 0 and time.monotonic() < deadline:
            assert web.poll() is None, logs.read_text()
            time.sleep(0.2)
        assert proc.returncode == 0 and proc.stdout.strip().endswith("HTTP 200 OK (database: ok)"), proc.stderr

        # the database refuses WhaleFall's login: 503 on the next probe, 200 again once it is back
        from psycopg import sql

        role = sql.Identifier(site["name"])
        with site["admin"].cursor() as cur:
            cur.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(role))
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [site["name"]])
        down = prod.run(probe, env)
        assert down.returncode == 1 and down.stderr.strip().endswith("HTTP 503 Service Unavailable (database: error)")
        with site["admin"].cursor() as cur:
            cur.execute(sql.SQL("ALTER ROLE {} LOGIN").format(role))
        assert checked(prod.run(probe, env)).stdout.strip().endswith("(database: ok)")
    finally:
        prod.stop(web)
    assert '"operation": "healthz"' in logs.read_text() and env["DATABASE_URL"] not in logs.read_text()

    # what must be backed up: the database, and the keys apart
    signing_key = shell(env, STORE)["signing_key"]
    stored = {"password": MONITOR_PASSWORD, "webhook_url": WEBHOOK_URL, "signing_key": signing_key}
    old = site["backups"] / "whalefall-20200101T030000Z.dump"
    recent = site["backups"] / "whalefall-20200102T030000Z.dump"
    for path, days in ((old, 15), (recent, 13)):
        path.write_bytes(b"an earlier dump")
        os.utime(path, (time.time() - days * 86400 - 3600,) * 2)
    dump = backup(site)
    assert re.fullmatch(r"whalefall-\d{8}T\d{6}Z\.dump", dump.name) and dump.parent == site["backups"]
    assert dump.read_bytes().startswith(b"PGDMP"), "pg_dump's custom format"
    assert dump.stat().st_mode & 0o077 == 0, "a dump is as private as the database"
    assert not old.exists() and recent.exists(), "dumps older than 14 days go after a good one"
    assert not list(site["backups"].glob("*.partial"))

    # restore into an empty database: everything back, readable with the keys and only with them
    restore(site, dump)
    assert readable(env, old_key) == stored
    assert readable(env, Fernet.generate_key().decode()) == {"error": "CredentialDecryptError"}
    checked(prod.manage("migrate", "--check", env=env))

    # key rotation: prepend, rotate (the chapter's commands, in its order), drop the old key
    assert rotation_commands() == ["rotate_field_keys", "rotate_alert_keys"]
    new_key = Fernet.generate_key().decode()
    both = {**env, "WHALEFALL_FIELD_KEYS": f"{new_key},{old_key}"}
    outputs = [checked(prod.manage(command, env=both)).stdout for command in rotation_commands()]
    assert "Re-encrypted 1 credential(s)" in outputs[0] and "Re-encrypted 1 alert channel(s)" in outputs[1]
    assert readable(env, new_key) == stored
    assert readable(env, old_key) == {"error": "CredentialDecryptError"}, "nothing is left under the old key"

    # a dump from before the rotation still needs the old key: keep it as long as such a dump is kept
    restore(site, dump)
    assert readable(env, new_key) == {"error": "CredentialDecryptError"}
    assert readable(env, f"{new_key},{old_key}") == stored

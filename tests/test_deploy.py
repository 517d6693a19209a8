"""Production settings agree with the code. docker-compose.yml and the Dockerfile: tests/deploy/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent


def run_manage(*args: str, env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "WHALEFALL_", "DATABASE_URL"))}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def prod_env(tmp_path: Path) -> dict[str, str]:
    return {
        "DJANGO_ENV": "production",
        "DJANGO_SECRET_KEY": "x" * 20 + Fernet.generate_key().decode(),
        "DJANGO_ALLOWED_HOSTS": "whalefall.example.com",
        "WHALEFALL_FIELD_KEYS": Fernet.generate_key().decode(),
        "WHALEFALL_VAR_DIR": str(tmp_path),
    }


def test_check_deploy_is_clean_in_production(tmp_path):
    proc = run_manage("check", "--deploy", "--fail-level", "WARNING", env_extra=prod_env(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no issues" in proc.stdout


def test_production_refuses_to_start_without_field_keys(tmp_path):
    env = prod_env(tmp_path)
    del env["WHALEFALL_FIELD_KEYS"]
    proc = run_manage("check", env_extra=env)
    assert proc.returncode != 0
    assert "WHALEFALL_FIELD_KEYS" in proc.stderr
    assert not list(tmp_path.glob("whalefall_field_keys"))


def test_production_refuses_to_start_without_secret_key(tmp_path):
    env = prod_env(tmp_path)
    del env["DJANGO_SECRET_KEY"]
    proc = run_manage("check", env_extra=env)
    assert proc.returncode != 0
    assert "DJANGO_SECRET_KEY" in proc.stderr


def test_env_example_documents_every_setting_read():
    import re

    settings_text = (ROOT / "config" / "settings.py").read_text()
    read = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z_]+)"', settings_text))
    documented = set(re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert read, "the settings read no variable?"
    assert read <= documented, f"undocumented: {sorted(read - documented)}"


def test_a_new_sqlite_database_gets_wal_and_8k_pages(tmp_path):
    """First-seen change log rows are ~2 KiB: on 4 KiB pages each took a page of its own."""
    import sqlite3

    db = tmp_path / "fresh.sqlite3"
    result = run_manage(
        "migrate", "-v0", env_extra={"DATABASE_URL": f"sqlite:///{db}", "WHALEFALL_VAR_DIR": str(tmp_path)}
    )
    assert result.returncode == 0, result.stderr
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA page_size").fetchone() == (8192,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()

"""bench/classify_scale.py at a small scale: it runs, prints its figures, and its own correctness checks pass.

Why a subprocess: the bench sets DATABASE_URL for its child processes (Django reads it once). No
timing is asserted (a loaded machine may be slow); the exit status is 0 only when every count the
evaluation stored equals the one worked out account by account, and the steady run changed nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.livedb import postgres_admin  # noqa: F401

BENCH = Path(__file__).resolve().parents[2] / "bench" / "classify_scale.py"


def run_bench(only: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--accounts", "1200", "--instances", "6", "--only", only],
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr[-3000:]
    return out


def check(out: str, label: str) -> None:
    assert f"== {label}: 1200 accounts on 6 instances, 20 rules" in out
    rows = {
        line.split()[0]: line.split()
        for line in out.splitlines()
        if line.split()[:1] in (["first"], ["steady"], ["edit"])
    }
    assert set(rows) == {"first", "steady", "edit"}
    assert rows["steady"][5:8] == ["0", "0", "0"]  # added, removed, changed
    assert int(rows["first"][5]) > 0 and int(rows["edit"][6]) > 0
    checks = [line for line in out.splitlines() if line.startswith("check ")]
    assert len(checks) == 5 and all(line.endswith(" ok") for line in checks), checks
    assert "facts_refresh of 2000 accounts" in out and "WRONG" not in out


def test_bench_sqlite_small() -> None:
    check(run_bench("sqlite"), "SQLite")


@pytest.mark.live
def test_bench_postgresql_small(postgres_admin) -> None:  # noqa: F811 - the fixture: skips or fails without the server
    check(run_bench("postgresql"), "PostgreSQL")

"""The layer contract (pyproject ``[tool.importlinter]``) holds, and it would catch a wrong-way import."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["root_packages"]


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(exe), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_tree_keeps_the_contract():
    run = lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 kept, 0 broken" in run.stdout


def test_a_lower_layer_importing_a_higher_one_breaks_it(tmp_path):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("static", "templates"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / "instances" / "admin.py").open("a") as fh:
        fh.write("\nfrom sync.services import sync_session_start  # noqa: E402, F401\n")
    run = lint_imports(tmp_path)
    assert run.returncode == 1, run.stdout
    assert "0 kept, 1 broken" in run.stdout
    assert "instances.admin -> sync.services" in run.stdout

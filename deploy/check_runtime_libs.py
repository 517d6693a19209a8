"""Fail when a compiled extension of the installed requirements cannot find a system library.

The runtime image has no compilers or -dev packages, only the shared libraries the drivers load
(Dockerfile: libmariadb3 for mysqlclient, libltdl7 and the Kerberos libraries for the SQL Server ODBC
driver that mssql-python bundles; psycopg[binary] and oracledb bring their own). The Dockerfile runs this
at build time, so a missing one fails the build instead of the first sync of that database type.

    python deploy/check_runtime_libs.py      (exit 0: all resolved; 1: lists what is missing)
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

# The drivers WhaleFall imports (accountsync/adapters, DATABASE_URL backends).
DRIVERS = ("MySQLdb", "psycopg", "mssql_python", "oracledb", "cryptography.fernet")
# pyodbc comes with mssql-django but is never imported (WhaleFall talks to SQL Server through mssql-python,
# and its own database is never SQL Server); it needs unixODBC's libodbc, which the image leaves out.
UNUSED = ("pyodbc",)


def missing_libraries(site_packages: Path, ldd: str) -> dict[str, list[str]]:
    missing: dict[str, list[str]] = {}
    for so in sorted(site_packages.rglob("*.so*")):
        if not so.is_file() or so.name.startswith(UNUSED):
            continue
        # our own files, no shell
        out = subprocess.run([ldd, str(so)], capture_output=True, text=True, check=False).stdout  # noqa: S603
        gone = [line.split("=>")[0].strip() for line in out.splitlines() if "not found" in line]
        if gone:
            missing[str(so.relative_to(site_packages))] = gone
    return missing


def main() -> int:
    problems = []
    for name in DRIVERS:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            problems.append(f"import {name}: {exc}")
    ldd = shutil.which("ldd")
    if ldd:
        site_packages = Path(sysconfig.get_paths()["purelib"])
        for so, libs in missing_libraries(site_packages, ldd).items():
            problems.append(f"{so}: missing {', '.join(libs)}")
    for line in problems:
        print(line, file=sys.stderr)
    if not problems:
        print("runtime libraries: all resolved")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

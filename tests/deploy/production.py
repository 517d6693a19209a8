"""The production chapter's files (docs/operations.md, "Production"), read the way systemd and nginx read them.

- ``environment_file()``: ``deploy/systemd/whalefall.env`` as ``EnvironmentFile=`` parses it, each ``<placeholder>``
  replaced by a generated secret (or a given value);
- ``unit(name)``: a unit file's sections with their keys in order (``ExecStart`` may repeat);
- ``exec_argv(line)``: an ``ExecStart`` as the argv it runs here: ``/opt/whalefall`` is this checkout and its
  ``.venv/bin`` the directory of the running interpreter;
- ``doc_blocks()``: the fenced blocks of docs/operations.md.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet

from tests.deploy.compose import ROOT

DEPLOY = ROOT / "deploy"
SYSTEMD = DEPLOY / "systemd"
ENV_FILE = SYSTEMD / "whalefall.env"
NGINX_SITE = DEPLOY / "nginx" / "whalefall.conf"
OPERATIONS = ROOT / "docs" / "operations.md"
INSTALL_DIR = "/opt/whalefall"
BIN = Path(sys.executable).parent

# What the chapter's table says to put in place of each placeholder.
PLACEHOLDERS: dict[str, Callable[[], str]] = {
    "secret-key": lambda: secrets.token_urlsafe(50),
    "field-key": lambda: Fernet.generate_key().decode(),
    "db-password": lambda: secrets.token_urlsafe(24),
    "metrics-token": lambda: secrets.token_urlsafe(32),
}
_PLACEHOLDER = re.compile(r"<([a-z-]+)>")


def placeholders(path: Path = ENV_FILE) -> set[str]:
    return set(_PLACEHOLDER.findall(path.read_text()))


def environment_file(path: Path = ENV_FILE, **values: str) -> dict[str, str]:
    """NAME=value lines (comments and blank lines skipped, surrounding quotes removed), placeholders filled."""
    filled = {name: values.get(name.replace("-", "_")) or make() for name, make in PLACEHOLDERS.items()}
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        name, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[name.strip()] = _PLACEHOLDER.sub(lambda m: filled[m.group(1)], value)
    return env


def unit(name: str) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in (SYSTEMD / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, _, value = line.partition("=")
        assert current is not None, f"{name}: {line!r} outside a section"
        current.append((key.strip(), value.strip()))
    return sections


def unit_values(name: str, key: str, section: str = "Service") -> list[str]:
    return [value for k, value in unit(name).get(section, []) if k == key]


def unit_value(name: str, key: str, section: str = "Service") -> str:
    (value,) = unit_values(name, key, section)
    return value


def here(text: str) -> str:
    """A path of the production layout as it is in this checkout."""
    return text.replace(f"{INSTALL_DIR}/.venv/bin/", f"{BIN}/").replace(INSTALL_DIR, str(ROOT))


def exec_argv(line: str) -> list[str]:
    """An Exec*= line's argv (its ``+``/``-``/``@``/``!`` prefix dropped), with paths as they are here."""
    return [here(word) for word in shlex.split(line.lstrip("+-@!:"))]


def doc_blocks(path: Path = OPERATIONS) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^```[a-z]*\n(.*?)^```$", path.read_text(), re.M | re.S)]


def doc_block(first_line: str) -> str:
    (block,) = [b for b in doc_blocks() if b.splitlines()[0] == first_line]
    return block


def base_env(home: Path) -> dict[str, str]:
    """What a unit's process gets besides its EnvironmentFile: no DJANGO_*/WHALEFALL_* of this test run."""
    path = f"{BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return {"PATH": path, "HOME": str(home), "LANG": "C.UTF-8"}


def run(argv: list[str], env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run([str(BIN / "python"), "manage.py", *args], env)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gunicorn_argv(port: int) -> list[str]:
    """whalefall-web.service's ExecStart, bound to ``port`` instead of 8000."""
    argv = exec_argv(unit_value("whalefall-web.service", "ExecStart"))
    assert argv[argv.index("--bind") + 1] == "127.0.0.1:8000"
    argv[argv.index("--bind") + 1] = f"127.0.0.1:{port}"
    return argv


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

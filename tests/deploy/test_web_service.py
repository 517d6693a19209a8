"""Start WhaleFall the way docker-compose's web service does and run its healthcheck against it.

Without a Docker engine, "the container" is: this venv standing for /opt/venv, the repository for /app,
the runtime stage's ENV plus the service's environment from docker-compose.yml (interpolated with the
secrets a .env would hold). Only what has no counterpart here is switched, nothing else:

- DATABASE_URL: the postgres service -> a temporary SQLite file (migrated by the migrate service's command);
- WHALEFALL_VAR_DIR: the image's /app/var -> a temporary folder (collectstatic as the Dockerfile runs it);
- the bind address 0.0.0.0:8000 -> 127.0.0.1:<free port>, in the command and in the healthcheck's URL.

Q_BROKER_URL stays redis://redis:6379/0: serving a page never touches the broker.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.deploy.compose import ROOT, argv, dockerfile_stages, load_compose, service_environment

BIN = Path(sys.executable).parent
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # python:3.11-slim's PATH

pytestmark = pytest.mark.skipif(not (BIN / "gunicorn").exists(), reason="gunicorn is not installed next to python")


# What an operator's .env holds: the required secrets, generated as .env.example says; one set for the stack.
DOT_ENV = {
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "WHALEFALL_FIELD_KEYS": Fernet.generate_key().decode(),
    "POSTGRES_PASSWORD": secrets.token_urlsafe(16),
}


def dot_env(**overrides: str) -> dict[str, str]:
    return {**DOT_ENV, **overrides}


def container_env(service: str, var_dir: Path, **dot_env_overrides: str) -> dict[str, str]:
    runtime = dockerfile_stages()[-1].env()
    env = dict(runtime)
    env["PATH"] = runtime["PATH"].replace("/opt/venv/bin", str(BIN)).replace("$PATH", BASE_PATH)
    env["HOME"] = str(var_dir)
    env.update(service_environment(load_compose(dot_env(**dot_env_overrides))["services"][service]))
    env["DATABASE_URL"] = f"sqlite:///{var_dir / 'whalefall.sqlite3'}"
    env["WHALEFALL_VAR_DIR"] = str(var_dir)
    return env


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, what: str, proc: subprocess.Popen | None = None, attempts: int = 600) -> None:
    """Poll ``predicate`` (bounded: ``attempts`` tries 0.1 s apart); fail early if ``proc`` has exited."""
    for _ in range(attempts):
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"gave up waiting for {what}: the process exited with {proc.returncode}")
        time.sleep(0.1)
    pytest.fail(f"gave up waiting for {what}")


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def get(port: int, path: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response
    finally:
        conn.close()


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory) -> Path:
    """The image's /app/var and the stack's database, prepared the way the image and migrate do it."""
    var = tmp_path_factory.mktemp("app-var")
    migrate = argv(load_compose(dot_env())["services"]["migrate"]["command"])
    proc = run(migrate, container_env("migrate", var))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "created: whalefall: daily account sync" in proc.stdout
    dockerfile_runs = " ".join(dockerfile_stages()[-1].args("RUN"))
    assert "python manage.py collectstatic --noinput" in dockerfile_runs
    proc = run(["python", "manage.py", "collectstatic", "--noinput", "-v0"], container_env("web", var))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return var


# Default: ALLOWED_HOSTS as compose defaults it (localhost), the shipped bug. The other: a .env copied from
# .env.example (a public name) -- the healthcheck must not depend on localhost being served.
@pytest.fixture(scope="module", params=[{}, {"DJANGO_ALLOWED_HOSTS": "whalefall.example.com"}], ids=["default", "env"])
def web(request, var_dir, tmp_path_factory):
    port = free_port()
    env = container_env("web", var_dir, **request.param)
    command = argv(load_compose(dot_env())["services"]["web"]["command"])
    command[command.index("--bind") + 1] = f"127.0.0.1:{port}"
    logs = tmp_path_factory.mktemp("web-logs")
    with open(logs / "stdout", "w") as out, open(logs / "stderr", "w") as err:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err, start_new_session=True)
    try:
        wait_for(lambda: port_open(port), f"gunicorn on port {port}", proc)
        yield {"port": port, "env": env, "proc": proc, "logs": logs}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def healthcheck_command(port: int) -> list[str]:
    test = load_compose(dot_env())["services"]["web"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    return [part.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for part in test[1:]]


def test_the_compose_healthcheck_passes(web):
    proc = run(healthcheck_command(web["port"]), web["env"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == f"http://127.0.0.1:{web['port']}/healthz: HTTP 200 OK (database: ok)"
    stdout = web["logs"] / "stdout"
    wait_for(lambda: '"GET /healthz HTTP/1.1" 200' in stdout.read_text(), "the access log line on stdout")


def test_healthz_answers_over_plain_http_without_a_redirect(web):
    """/healthz is exempt from SECURE_SSL_REDIRECT: a probe on the host needs no proxy header, only an allowed Host."""
    host = web["env"]["DJANGO_ALLOWED_HOSTS"].split(",")[0]
    conn = http.client.HTTPConnection("127.0.0.1", web["port"], timeout=30)
    try:
        conn.request("GET", "/healthz", headers={"Host": host})
        response = conn.getresponse()
        assert response.status == 200
        assert json.loads(response.read()) == {"status": "ok", "database": "ok"}
    finally:
        conn.close()
    assert get(web["port"], "/healthz", {"Host": "127.0.0.1"}).status == 400, "the Host is still checked"


def test_gunicorn_boots_the_configured_workers(web):
    stderr = web["logs"] / "stderr"
    wait_for(lambda: stderr.read_text().count("Booting worker") >= 3, "3 gunicorn workers", web["proc"])
    assert stderr.read_text().count("Booting worker") == 3


def test_the_healthcheck_fails_when_the_page_does(web):
    proc = run([*healthcheck_command(web["port"])[:-1], f"http://127.0.0.1:{web['port']}/no-such-page/"], web["env"])
    assert proc.returncode == 1
    assert "HTTP 404" in proc.stderr


def test_what_the_old_healthcheck_got(web):
    """curl http://127.0.0.1:8000/admin/login/: Host 127.0.0.1 is not served -> 400, web never healthy."""
    assert get(web["port"], "/admin/login/", {"Host": "127.0.0.1"}).status == 400
    host = web["env"]["DJANGO_ALLOWED_HOSTS"].split(",")[0]
    plain = get(web["port"], "/admin/login/", {"Host": host})
    assert plain.status == 301 and plain.getheader("Location") == f"https://{host}/admin/login/"


@pytest.fixture(scope="module")
def web_without_database(var_dir, tmp_path_factory):
    """The web service whose postgres is gone: its DATABASE_URL as compose sets it, on a port nothing listens on."""
    port, closed = free_port(), free_port()
    env = container_env("web", var_dir)
    compose_url = service_environment(load_compose(dot_env())["services"]["web"])["DATABASE_URL"]
    assert "@postgres:5432/" in compose_url
    env["DATABASE_URL"] = compose_url.replace("@postgres:5432/", f"@127.0.0.1:{closed}/")
    command = argv(load_compose(dot_env())["services"]["web"]["command"])
    command[command.index("--bind") + 1] = f"127.0.0.1:{port}"
    logs = tmp_path_factory.mktemp("web-nodb-logs")
    with open(logs / "stdout", "w") as out, open(logs / "stderr", "w") as err:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err, start_new_session=True)
    try:
        wait_for(lambda: port_open(port), f"gunicorn on port {port}", proc)
        yield {"port": port, "env": env, "logs": logs}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_the_healthcheck_fails_when_the_database_does(web_without_database):
    web = web_without_database
    proc = run(healthcheck_command(web["port"]), web["env"])
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"http://127.0.0.1:{web['port']}/healthz: HTTP 503 Service Unavailable (database: error)"
    )
    host = web["env"]["DJANGO_ALLOWED_HOSTS"].split(",")[0]
    conn = http.client.HTTPConnection("127.0.0.1", web["port"], timeout=30)
    try:
        conn.request("GET", "/healthz", headers={"Host": host, "X-Forwarded-Proto": "https"})
        body = conn.getresponse().read()
    finally:
        conn.close()
    assert body == b'{"status": "error", "database": "error"}', "no host, port, user or driver text"
    stderr = web["logs"] / "stderr"
    wait_for(lambda: '"operation": "healthz"' in stderr.read_text(), "the healthz log line")
    assert "OperationalError" in stderr.read_text()
    assert DOT_ENV["POSTGRES_PASSWORD"] not in stderr.read_text()


@pytest.mark.parametrize("service", ["migrate", "web", "worker"])
def test_check_deploy_is_clean_with_the_compose_environment(service, tmp_path):
    """`manage.py check --deploy` with the service's environment as is (its postgres DATABASE_URL included:
    check opens no connection); only the runtime folder moves to a temporary one."""
    env = container_env(service, tmp_path)
    env["DATABASE_URL"] = service_environment(load_compose(dot_env())["services"][service])["DATABASE_URL"]
    proc = run(["python", "manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "System check identified no issues" in proc.stdout

"""The production chapter of docs/operations.md, checked against the files in deploy/ and the settings (#20 part 5).

`manage.py check --deploy --fail-level WARNING` is clean with the environment file the chapter gives, and fails
when that file is weakened; the file sets only what WhaleFall or gunicorn read; nginx sets the headers the
settings trust; the systemd units are valid and run what the compose services run.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil

import pytest

from tests.deploy import production as prod
from tests.deploy.compose import ROOT, argv, dockerfile_stages, load_compose

CHECK = ("check", "--deploy", "--fail-level", "WARNING")
APP_UNITS = ("whalefall-web.service", "whalefall-worker.service", "whalefall-migrate.service")


def production_env(tmp_path, **overrides: str) -> dict[str, str]:
    """The environment a unit's process gets; only the StateDirectory (/var/lib/whalefall) moves to tmp_path."""
    env = {**prod.base_env(tmp_path), **prod.environment_file()}
    assert env["WHALEFALL_VAR_DIR"] == "/var/lib/whalefall"
    env["WHALEFALL_VAR_DIR"] = str(tmp_path / "var")
    env.update(overrides)
    return env


def test_check_deploy_is_clean_with_the_documented_environment(tmp_path):
    """DATABASE_URL stays the file's PostgreSQL one: `check --deploy` opens no database connection."""
    proc = prod.manage(*CHECK, env=production_env(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "System check identified no issues (0 silenced)." in proc.stdout
    assert "System check identified no issues (0 silenced)." in prod.OPERATIONS.read_text()


@pytest.mark.parametrize(
    ("override", "issue"),
    [
        ({"DJANGO_DEBUG": "true"}, "security.W018"),
        ({"DJANGO_SECURE_SSL_REDIRECT": "false"}, "security.W008"),
        ({"DJANGO_HSTS_SECONDS": "0"}, "security.W004"),
        ({"DJANGO_SECRET_KEY": "not-a-real-secret-key"}, "security.W009"),
    ],
    ids=["debug", "no-redirect", "no-hsts", "weak-key"],
)
def test_the_check_fails_when_the_environment_is_weakened(tmp_path, override, issue):
    """The clean result above means something: the same run reports each weakening."""
    proc = prod.manage(*CHECK, env=production_env(tmp_path, **override))
    assert proc.returncode != 0
    assert issue in proc.stderr


def test_the_environment_file_is_a_production_one():
    env = prod.environment_file()
    assert env["DJANGO_ENV"] == "production"
    assert env["DJANGO_DEBUG"] == "false"
    assert env["DATABASE_URL"].startswith("postgres://whalefall:") and env["DATABASE_URL"].endswith(
        "@127.0.0.1:5432/whalefall"
    )
    assert env["Q_BROKER_URL"] == "redis://127.0.0.1:6379/0"
    assert env["WHALEFALL_LOGIN_PROXY_COUNT"] == "1", "one nginx in front, which appends to X-Forwarded-For"
    assert "DJANGO_SECURE_SSL_REDIRECT" not in env or env["DJANGO_SECURE_SSL_REDIRECT"] == "true"

    doc = prod.OPERATIONS.read_text()
    assert prod.placeholders() == set(prod.PLACEHOLDERS), "a placeholder the test cannot fill"
    for name in prod.placeholders():
        assert f"| `<{name}>` |" in doc, f"docs/operations.md does not say what <{name}> is"

    settings_text = (ROOT / "config" / "settings.py").read_text()
    gunicorn_text = (ROOT / "deploy" / "gunicorn.conf.py").read_text()
    env_example = (ROOT / ".env.example").read_text()
    for key in env:
        assert f'"{key}"' in settings_text or f'"{key}"' in gunicorn_text, f"{key} is read by nothing"
        assert re.search(rf"^{key}=", env_example, re.M), f"{key} is not documented in .env.example"


def settings_under(env: dict[str, str]) -> dict:
    code = (
        "import json; from django.conf import settings as s; print(json.dumps({k: getattr(s, k) for k in ("
        "'DEBUG', 'ALLOWED_HOSTS', 'SECURE_PROXY_SSL_HEADER', 'SECURE_SSL_REDIRECT', 'SECURE_REDIRECT_EXEMPT', "
        "'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SECURE_HSTS_SECONDS', 'Q_CLUSTER', "
        "'WHALEFALL_LOGIN_PROXY_COUNT', 'WHALEFALL_METRICS_TOKEN')} | "
        "{'ENGINE': s.DATABASES['default']['ENGINE'], 'STATIC_ROOT': str(s.STATIC_ROOT)}, default=str))"
        # default=str: Q_CLUSTER's label is a lazy translation
    )
    proc = prod.manage("shell", "-c", code, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_settings_it_makes(tmp_path):
    env = production_env(tmp_path)
    values = settings_under(env)
    assert values["DEBUG"] is False
    assert values["ALLOWED_HOSTS"] == ["whalefall.example.com"]
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SECURE_REDIRECT_EXEMPT"] == ["^healthz$"]
    assert values["SESSION_COOKIE_SECURE"] is values["CSRF_COOKIE_SECURE"] is True
    assert values["SECURE_HSTS_SECONDS"] == 31536000
    assert values["ENGINE"] == "django.db.backends.postgresql"
    assert values["STATIC_ROOT"] == str(tmp_path / "var" / "static")
    assert values["WHALEFALL_LOGIN_PROXY_COUNT"] == 1
    assert values["WHALEFALL_METRICS_TOKEN"] == env["WHALEFALL_METRICS_TOKEN"]
    cluster = values["Q_CLUSTER"]
    assert cluster["workers"] == 4 and cluster["redis"] == "redis://127.0.0.1:6379/0" and "orm" not in cluster
    assert (cluster["name"], cluster["timeout"], cluster["retry"]) == ("whalefall", 900, 1200)

    more = settings_under(production_env(tmp_path, DJANGO_SECURE_REDIRECT_EXEMPT="^metrics$"))
    assert more["SECURE_REDIRECT_EXEMPT"] == ["^healthz$", "^metrics$"]


def nginx_servers() -> list[str]:
    text = re.sub(r"#[^\n]*", "", prod.NGINX_SITE.read_text())
    return [m.group(1) for m in re.finditer(r"server\s*\{(.*?)\n\}", text, re.S)]


def directives(server: str, name: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(rf"^\s*{name}\s+([^;]*);", server, re.M)]


def test_nginx_sets_the_headers_the_settings_trust():
    plain, tls = nginx_servers()
    env = prod.environment_file()
    host = env["DJANGO_ALLOWED_HOSTS"].split(",")[0]

    assert directives(plain, "listen") == ["80", "[::]:80"]
    assert directives(plain, "return") == ["301 https://$host$request_uri"]
    assert not directives(plain, "proxy_pass"), "plain http must never reach the app: it would trust the header"

    assert directives(tls, "listen") == ["443 ssl http2", "[::]:443 ssl http2"]
    assert directives(plain, "server_name") == directives(tls, "server_name") == [host]
    assert directives(tls, "proxy_pass") == ["http://127.0.0.1:8000"], "whalefall-web.service's --bind"
    assert "--bind 127.0.0.1:8000 " in prod.unit_value("whalefall-web.service", "ExecStart")
    headers = dict(h.split(None, 1) for h in directives(tls, "proxy_set_header"))
    # SECURE_PROXY_SSL_HEADER is ("HTTP_X_FORWARDED_PROTO", "https") (test_the_settings_it_makes): that header
    assert headers["X-Forwarded-Proto"] == "$scheme"
    assert headers["Host"] == "$host"
    # one appending proxy, WHALEFALL_LOGIN_PROXY_COUNT=1
    assert headers["X-Forwarded-For"] == "$proxy_add_x_forwarded_for"
    assert len(directives(tls, "proxy_set_header")) == len(headers)
    (read_timeout,) = directives(tls, "proxy_read_timeout")
    gunicorn_conf = (ROOT / "deploy" / "gunicorn.conf.py").read_text()
    gunicorn_timeout = int(re.search(r'_int\("GUNICORN_TIMEOUT", (\d+)\)', gunicorn_conf).group(1))
    assert int(read_timeout.removesuffix("s")) > gunicorn_timeout


def test_the_doc_shows_the_deploy_files_as_they_are():
    blocks = prod.doc_blocks()
    shown = [
        prod.ENV_FILE,
        prod.NGINX_SITE,
        prod.SYSTEMD / "whalefall-web.service",
        prod.SYSTEMD / "whalefall-worker.service",
    ]
    for path in shown:
        assert path.read_text().rstrip("\n") in [b.rstrip("\n") for b in blocks], f"{path.name} differs from the doc"
    doc = prod.OPERATIONS.read_text()
    for path in [*prod.SYSTEMD.iterdir(), prod.NGINX_SITE]:
        assert path.name in doc, f"docs/operations.md never names {path.name}"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
def test_the_units_pass_systemd_analyze_verify(tmp_path):
    """With /opt/whalefall pointing at this checkout, so that systemd finds the commands they run."""
    units = sorted(p.name for p in prod.SYSTEMD.iterdir() if p.suffix in {".service", ".timer"})
    assert set(APP_UNITS) | {"whalefall-backup.service", "whalefall-backup.timer"} == set(units)
    for name in units:
        (tmp_path / name).write_text(prod.here((prod.SYSTEMD / name).read_text()))
    proc = prod.run(["systemd-analyze", "verify", *(str(tmp_path / n) for n in units)], prod.base_env(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    complaints = [line for line in (proc.stdout + proc.stderr).splitlines() if "whalefall" in line]
    assert not complaints, complaints


def test_the_units_run_what_the_compose_services_run():
    services = load_compose({"DJANGO_SECRET_KEY": "s", "WHALEFALL_FIELD_KEYS": "k", "POSTGRES_PASSWORD": "p"})
    services = services["services"]

    def as_compose(command: list[str]) -> list[str]:
        return [word.replace(f"{prod.BIN}/", "") for word in command]

    web = as_compose(prod.gunicorn_argv(8000))
    compose_web = argv(services["web"]["command"])
    compose_web[compose_web.index("--bind") + 1] = "127.0.0.1:8000"  # the loopback: nginx is on this host
    assert web == compose_web
    worker = as_compose(prod.exec_argv(prod.unit_value("whalefall-worker.service", "ExecStart")))
    assert worker == argv(services["worker"]["command"]) == ["python", "manage.py", "qcluster"]

    migrate = [as_compose(prod.exec_argv(line)) for line in prod.unit_values("whalefall-migrate.service", "ExecStart")]
    compose_migrate = [shlex.split(part) for part in argv(services["migrate"]["command"])[2].split("&&")]
    assert migrate[:2] == compose_migrate, "migrations, then the schedules, as compose's migrate service"
    assert "python manage.py collectstatic --noinput" in " ".join(dockerfile_stages()[-1].args("RUN"))
    assert migrate[2] == ["python", "manage.py", "collectstatic", "--noinput", "-v0"], "what the image build runs"
    assert prod.unit_value("whalefall-migrate.service", "Type") == "oneshot"
    assert not prod.unit("whalefall-migrate.service").get("Install"), "started by hand only, never at boot"

    env = prod.environment_file()
    for name in APP_UNITS:
        assert prod.unit_value(name, "User") == prod.unit_value(name, "Group") == "whalefall", name
        assert prod.unit_value(name, "WorkingDirectory") == prod.INSTALL_DIR, name
        assert prod.unit_value(name, "EnvironmentFile") == "/etc/whalefall/whalefall.env", name
        assert env["WHALEFALL_VAR_DIR"] == "/var/lib/" + prod.unit_value(name, "StateDirectory"), name
        assert prod.unit_value(name, "ProtectSystem") == "strict", name

    assert prod.unit_value("whalefall-web.service", "Type") == "notify"
    stop_web = int(prod.unit_value("whalefall-web.service", "TimeoutStopSec"))
    assert stop_web == int(services["web"]["stop_grace_period"].removesuffix("s"))
    assert stop_web > 30, "above GUNICORN_GRACEFUL_TIMEOUT, or systemd kills workers still finishing requests"
    stop_worker = int(prod.unit_value("whalefall-worker.service", "TimeoutStopSec"))
    assert stop_worker == int(services["worker"]["stop_grace_period"].removesuffix("s"))
    for name in ("whalefall-web.service", "whalefall-worker.service"):
        assert prod.unit_value(name, "KillMode") == "mixed", f"{name}: SIGTERM to the main process only"


def test_whalefall_manage_runs_as_the_units_do():
    script = (prod.SYSTEMD / "whalefall-manage").read_text()
    properties = dict(p.split("=", 1) for p in re.findall(r"--property=(\S+)", script))
    web = "whalefall-web.service"
    assert properties == {
        "User": prod.unit_value(web, "User"),
        "Group": prod.unit_value(web, "Group"),
        "WorkingDirectory": prod.unit_value(web, "WorkingDirectory"),
        "EnvironmentFile": prod.unit_value(web, "EnvironmentFile"),
    }
    assert f'{prod.INSTALL_DIR}/.venv/bin/python manage.py "$@"' in script
    for name in ("whalefall-manage", "whalefall-backup"):
        path = prod.SYSTEMD / name
        assert path.stat().st_mode & 0o111, f"{name} is not executable"
        proc = prod.run(["sh", "-n", str(path)], prod.base_env(ROOT))
        assert proc.returncode == 0, proc.stderr

    backup = prod.exec_argv(prod.unit_value("whalefall-backup.service", "ExecStart"))
    assert backup[0] == str(prod.SYSTEMD / "whalefall-backup")
    assert backup[1:] == ["/var/backups/whalefall", "whalefall", "14"]
    assert prod.exec_argv(prod.unit_value("whalefall-backup.service", "ExecStartPre"))[-1] == backup[1]
    assert prod.unit_value("whalefall-backup.service", "User") == "postgres"
    assert prod.unit_value("whalefall-backup.timer", "OnCalendar", "Timer") == "*-*-* 03:00:00"

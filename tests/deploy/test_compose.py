"""docker-compose.yml and the Dockerfile, read without a Docker engine (issue #20, part 4).

The stack starts in order postgres/redis -> migrate (once) -> web and worker; web's healthcheck works
with the ALLOWED_HOSTS it sets; the runtime image has no build tools. tests/deploy/test_web_service.py
starts the app the way the web service does.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from tests.deploy.compose import (
    ROOT,
    MissingVariable,
    argv,
    dockerfile_stages,
    load_compose,
    raw_compose,
    service_environment,
)

SECRETS = {"DJANGO_SECRET_KEY": "s" * 50, "WHALEFALL_FIELD_KEYS": "k", "POSTGRES_PASSWORD": "p"}
APP_SERVICES = ("migrate", "web", "worker")


@pytest.fixture
def services():
    return load_compose(SECRETS)["services"]


def test_services_and_start_order(services):
    assert set(services) == {"postgres", "redis", "migrate", "web", "worker"}
    for name in ("web", "worker"):
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"},
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }, name
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("postgres", "redis", "web"):
        assert "healthcheck" in services[name], name


def test_one_image_for_the_app_services(services):
    for name in APP_SERVICES:
        assert services[name]["build"] == "." and services[name]["image"] == "whalefall:local", name
    assert services["migrate"]["restart"] == "no", "a one-shot: restarting it would run migrations in a loop"


def test_migrations_and_schedules_run_once_in_migrate_only(services):
    from django.core.management import get_commands

    migrate = " ".join(argv(services["migrate"]["command"]))
    for cmd in ("migrate --noinput", "setup_schedules"):
        assert f"manage.py {cmd}" in migrate
        assert cmd.split()[0] in get_commands(), f"compose runs manage.py {cmd}, which does not exist"
    for name in ("web", "worker"):
        command = " ".join(argv(services[name]["command"]))
        assert "migrate" not in command and "setup_schedules" not in command, name
    assert argv(services["worker"]["command"]) == ["python", "manage.py", "qcluster"]


def test_web_runs_gunicorn_with_the_config_file_the_image_runs(services):
    web = argv(services["web"]["command"])
    assert web[0] == "gunicorn" and web[-1] == "config.wsgi:application"
    assert web[web.index("--config") + 1] == "deploy/gunicorn.conf.py"
    assert web[web.index("--bind") + 1] == "0.0.0.0:8000"
    assert (ROOT / "deploy" / "gunicorn.conf.py").exists() and (ROOT / "config" / "wsgi.py").exists()
    assert dockerfile_stages()[-1].exec_form("CMD") == web, "docker run and docker compose start it alike"


def test_gunicorn_settings_are_explicit(services):
    """Workers, timeout, graceful timeout and the access log, as gunicorn reads them from the web service."""
    from gunicorn.config import Config

    env = service_environment(services["web"])
    cfg = Config()
    namespace = {"__file__": str(ROOT / "deploy" / "gunicorn.conf.py")}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        exec(compile((ROOT / "deploy" / "gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec"), namespace)
    for key, value in namespace.items():
        if key in cfg.settings:
            cfg.set(key, value)
    assert (cfg.workers, cfg.timeout, cfg.graceful_timeout) == (3, 120, 30)
    assert (cfg.accesslog, cfg.errorlog) == ("-", "-")
    assert cfg.control_socket_disable
    stop_grace = int(services["web"]["stop_grace_period"].removesuffix("s"))
    assert stop_grace > cfg.graceful_timeout, "Docker would SIGKILL workers still finishing their requests"


def test_web_healthcheck_is_the_script_on_the_published_port(services):
    test = services["web"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "deploy/healthcheck.py"]
    assert test[3] == "http://127.0.0.1:8000/healthz", "the page that also asks the database"
    assert f'DEFAULT_URL = "{test[3]}"' in (ROOT / "deploy" / "healthcheck.py").read_text()
    assert services["web"]["ports"] == ["127.0.0.1:8000:8000"]


METRICS_DEFAULTS = {
    "WHALEFALL_METRICS_TOKEN": "",
    "WHALEFALL_METRICS_ALLOW": "127.0.0.1/32,::1/128",
    "WHALEFALL_METRICS_WINDOW_SECONDS": "86400",
}


def test_metrics_settings_reach_the_app_services_with_the_apps_defaults(services):
    """No token, the container's loopback only: a scrape of the published port needs the token (docs)."""
    from metrics.access import DEFAULT_ALLOW

    settings_text = (ROOT / "config" / "settings.py").read_text()
    for key, default in METRICS_DEFAULTS.items():
        assert f'env("{key}", default="{default}")' in settings_text or (
            f'env.int("{key}", default={default})' in settings_text
        ), f"compose's default for {key} is not the app's"
    assert METRICS_DEFAULTS["WHALEFALL_METRICS_ALLOW"] == DEFAULT_ALLOW
    for name in APP_SERVICES:
        env = service_environment(services[name])
        assert {k: env[k] for k in METRICS_DEFAULTS} == METRICS_DEFAULTS, name
        assert env["DJANGO_SECURE_REDIRECT_EXEMPT"] == "", name

    dot_env = {**SECRETS, "WHALEFALL_METRICS_TOKEN": "tok", "WHALEFALL_METRICS_WINDOW_SECONDS": "3600"}
    env = service_environment(load_compose(dot_env)["services"]["web"])
    assert (env["WHALEFALL_METRICS_TOKEN"], env["WHALEFALL_METRICS_WINDOW_SECONDS"]) == ("tok", "3600")
    # WHALEFALL_METRICS_ALLOW= in .env means "token only": kept empty, not replaced by the default
    token_only = load_compose({**SECRETS, "WHALEFALL_METRICS_ALLOW": ""})["services"]["web"]
    assert service_environment(token_only)["WHALEFALL_METRICS_ALLOW"] == ""


def test_required_secrets_fail_fast():
    for name in SECRETS:
        with pytest.raises(MissingVariable, match=name):
            load_compose({k: v for k, v in SECRETS.items() if k != name})


def test_app_env_is_read_by_the_app_and_documented(services):
    settings_text = (ROOT / "config" / "settings.py").read_text()
    gunicorn_text = (ROOT / "deploy" / "gunicorn.conf.py").read_text()
    env_example = (ROOT / ".env.example").read_text()
    for name in APP_SERVICES:
        env = service_environment(services[name])
        for key in env:
            assert f'"{key}"' in settings_text or f'"{key}"' in gunicorn_text, f"{name} sets {key}, never read"
            assert re.search(rf"^{key}=", env_example, re.M), f"{key} is not documented in .env.example"
        assert env["DATABASE_URL"] == "postgres://whalefall:p@postgres:5432/whalefall"
        assert env["Q_BROKER_URL"] == "redis://redis:6379/0"
        assert env["DJANGO_ENV"] == "production"
    interpolated = set(re.findall(r"\$\{([A-Z_]+)", (ROOT / "docker-compose.yml").read_text()))
    for key in interpolated:
        assert re.search(rf"^{key}=", env_example, re.M), f"compose reads {key} from .env; .env.example lacks it"
    assert raw_compose()["x-app-env"]["DJANGO_SECURE_SSL_REDIRECT"].endswith(":-true}")


def test_runtime_image_has_no_build_tools():
    stages = {stage.name: stage for stage in dockerfile_stages()}
    runtime = dockerfile_stages()[-1]
    assert runtime.name is None and {"builder", "source"} <= set(stages)
    assert {"gcc", "pkg-config", "default-libmysqlclient-dev"} <= stages["builder"].apt_packages()
    assert "/opt/venv/bin/pip install -r /tmp/requirements.txt" in stages["builder"].args("RUN")
    tools = {p for p in runtime.apt_packages() if p.endswith("-dev") or p in {"gcc", "g++", "make", "pkg-config"}}
    assert not tools, f"build tools in the runtime image: {tools}"
    assert {"libmariadb3", "libltdl7"} <= runtime.apt_packages()
    assert "--from=builder /opt/venv /opt/venv" in runtime.args("COPY")
    assert not [c for c in runtime.args("COPY") if not c.startswith("--from=")], "the checkout comes via source"
    assert any(".env" in run.split() and ".venv" in run.split() for run in stages["source"].args("RUN"))
    assert "python deploy/check_runtime_libs.py" in runtime.args("RUN")
    assert runtime.args("USER") == ["whalefall"]
    assert runtime.env()["DJANGO_ENV"] == "production"


@pytest.mark.skipif(not shutil.which("ldd"), reason="needs ldd")
def test_runtime_library_check_passes_here():
    """What the image build runs: here, against this venv (Debian 12 with the same runtime libraries)."""
    proc = subprocess.run(
        [sys.executable, "deploy/check_runtime_libs.py"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr

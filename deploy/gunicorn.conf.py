"""gunicorn settings for the `web` service of docker-compose.yml (and any production run).

Every value is explicit here, so the container never runs on gunicorn's defaults; the GUNICORN_* variables
(documented in .env.example) tune them without a rebuild. The bind address stays on the command line.
"""

import os


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


# Sync workers: each serves one request at a time. Rule of thumb 2 x CPUs + 1; 3 fits a small host.
workers = _int("GUNICORN_WORKERS", 3)
# A worker silent this long is killed and its request answered 502. Requests are short except the admin's
# "Test connection" action, which tries the selected instances one after another (WHALEFALL_CONNECT_TIMEOUT,
# 5 s each by default: ~20 unreachable instances fit) and exports streamed to the browser. Syncs never run
# here: they run on the worker (django-q2, Q_TIMEOUT).
timeout = _int("GUNICORN_TIMEOUT", 120)
# On SIGTERM (docker compose stop) workers get this long to finish their request; the web service's
# stop_grace_period is a little longer so Docker does not SIGKILL them first.
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = 5
# One line per request on stdout, errors on stderr: `docker compose logs web` shows both.
accesslog = "-"
errorlog = "-"
# The worker heartbeat file: on tmpfs when there is one (a container's overlay disk can stall it; gunicorn's
# docs advise /dev/shm for Docker). gunicorn creates it unlinked, with a random name.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
# No control socket (gunicorn >= 24 opens one under $HOME by default): nothing here uses it.
control_socket_disable = True

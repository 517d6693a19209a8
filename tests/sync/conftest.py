"""Instances that give real sync outcomes: a closed local port (classified failure) and the live MariaDB."""

from __future__ import annotations

import socket

import pytest

from tests.livedb import MARIADB, mariadb_admin, unique_prefix  # noqa: F401


def closed_port() -> int:
    """A local port nothing listens on: bind an ephemeral port, then release it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dead_instance(make_instance):
    """An Instance whose sync fails for real with a connection error."""

    def make(name: str = "dead"):
        return make_instance(name=name, port=closed_port(), options={"connect_timeout": 2})

    return make


@pytest.fixture
def live_mariadb_instance(mariadb_admin, make_instance, make_credential):  # noqa: F811
    """An Instance for the local MariaDB as root (skips or fails like other live tests when absent)."""
    cred = make_credential(name="live-root", username="root", password="")
    return make_instance(name="live-mariadb", port=MARIADB["port"], credential=cred)

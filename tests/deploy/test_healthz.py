"""GET /healthz (config/health.py): 200 while the app database answers, 503 when it does not, and nothing else.

The failing database is stood in for at the boundary: the default connection's ``cursor()`` raises what the
driver raises when PostgreSQL is gone. tests/deploy/test_web_service.py and test_production_live.py make it
fail for real (a closed port; a role that may no longer log in).
"""

from __future__ import annotations

import importlib.util
import logging

import pytest
from django.db import OperationalError, connections
from django.urls import reverse

from config.logging import JsonFormatter, PlainFormatter
from tests.deploy.compose import ROOT

pytestmark = pytest.mark.django_db

URL = "/healthz"
OK = {"status": "ok", "database": "ok"}
DOWN = {"status": "error", "database": "error"}
# What psycopg says when the server is gone, plus a password as a driver might echo a DSN.
DRIVER_TEXT = (
    'connection failed: connection to server at "db.internal" (10.0.0.5), port 5432 failed: '
    "Connection refused (dsn: password=hunter2-s3cret)\n\tIs the server running on that host?"
)


class DatabaseGone:
    """Makes the default connection's cursor() raise, as long as it is entered."""

    def __enter__(self):
        def cursor(*args, **kwargs):
            raise OperationalError(DRIVER_TEXT)

        self.conn = connections["default"]
        self.conn.cursor = cursor
        return self

    def __exit__(self, *exc):
        del self.conn.cursor  # the class's method again


def test_ok_with_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(1):  # SELECT 1: no session, no user, no audit row
        response = client.get(URL)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == OK
    assert "no-cache" in response["Cache-Control"] and "no-store" in response["Cache-Control"]
    assert not response.cookies
    assert reverse("healthz") == URL


def test_head_answers_and_other_methods_are_refused(client):
    assert client.head(URL).status_code == 200
    assert client.post(URL).status_code == 405
    assert client.put(URL).status_code == 405


def test_503_when_the_database_query_fails_and_nothing_leaks(client, caplog):
    with caplog.at_level(logging.ERROR, logger="whalefall.health"), DatabaseGone():
        response = client.get(URL)
    assert response.status_code == 503
    assert response.json() == DOWN
    assert response.content == b'{"status": "error", "database": "error"}'
    assert not response.cookies

    (record,) = [r for r in caplog.records if r.name == "whalefall.health"]
    assert record.levelno == logging.ERROR
    for formatter in (PlainFormatter(), JsonFormatter()):
        line = formatter.format(record)
        assert "healthz" in line and "OperationalError" in line and "db.internal" in line
        assert "hunter2-s3cret" not in line, "log lines are scrubbed like every other"
        assert "Is the server running" not in line, "one line of the driver's text, not all of it"


def test_it_recovers_when_the_database_is_back(client):
    with DatabaseGone():
        assert client.get(URL).status_code == 503
    assert client.get(URL).json() == OK


def test_no_authentication_and_the_same_answer_for_everyone(client, admin_user):
    anonymous = client.get(URL)
    client.force_login(admin_user)
    signed_in = client.get(URL)
    assert anonymous.status_code == signed_in.status_code == 200
    assert anonymous.content == signed_in.content


def test_a_probe_is_not_audited(client):
    from auditlog.models import LogEntry

    from audit.models import AuditEvent

    before = (AuditEvent.objects.count(), LogEntry.objects.count())
    client.get(URL)
    with DatabaseGone():
        client.get(URL)
    assert (AuditEvent.objects.count(), LogEntry.objects.count()) == before


def load_healthcheck():
    spec = importlib.util.spec_from_file_location("healthcheck", ROOT / "deploy" / "healthcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_healthcheck_script_probes_healthz_and_repeats_the_database_word():
    healthcheck = load_healthcheck()
    assert healthcheck.DEFAULT_URL == "http://127.0.0.1:8000/healthz"
    assert healthcheck.database_word(b'{"status": "ok", "database": "ok"}') == " (database: ok)"
    assert healthcheck.database_word(b'{"status": "error", "database": "error"}') == " (database: error)"
    for other in (b"<html>Not Found</html>", b"[1, 2]", b'{"database": 1}', b"\xff\xfe", b""):
        assert healthcheck.database_word(other) == ""

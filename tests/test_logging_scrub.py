"""Internal errors are logged with their traceback, and no emitted line contains a secret.

The sync engine's catch-all logs an unexpected adapter exception with its traceback;
the exception's text (driver text, in real life) may carry the monitoring password,
so both formatters scrub it, plus credential-looking text and the secrets live in
``secret_scope``.
"""

from __future__ import annotations

import io
import json
import logging

import pytest

from accountsync.services import account_sync_run
from config.logging import JsonFormatter, PlainFormatter, log_event, scrub_text, secret_scope
from tests.api.conftest import SECRET
from tests.chosen import chosen_server  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def emitted():
    """The lines the JSON and the text formatter emit for the root logger while the test runs."""
    streams = {"json": io.StringIO(), "plain": io.StringIO()}
    handlers = []
    for name, formatter in (("json", JsonFormatter()), ("plain", PlainFormatter())):
        handler = logging.StreamHandler(streams[name])
        handler.setFormatter(formatter)
        handlers.append(handler)
    root = logging.getLogger()
    for handler in handlers:
        root.addHandler(handler)
    try:
        yield streams
    finally:
        for handler in handlers:
            root.removeHandler(handler)


def test_an_internal_sync_error_logs_its_traceback_without_the_password(chosen_server, make_instance, emitted):  # noqa: F811
    instance = make_instance(name="prod-db-1")
    password = instance.credential.get_password()
    assert password == SECRET

    def fail_with_the_password_in_a_local():
        dsn = f"mysql://monitor:{password}@db.example:3306/"  # a local holding the secret
        raise RuntimeError(f"boom {password} while reading {dsn}")

    try:
        fail_with_the_password_in_a_local()
    except RuntimeError as exc:
        chosen_server.error = exc

    result = account_sync_run(instance=instance)
    assert not result.success and result.error_kind == "internal"
    assert password not in result.message

    lines = [json.loads(line) for line in emitted["json"].getvalue().splitlines()]
    error = next(line for line in lines if line.get("exc_type") == "RuntimeError")
    assert "Traceback" in error["traceback"] and "fail_with_the_password_in_a_local" in error["traceback"]
    assert "RuntimeError: boom ***" in error["traceback"]
    assert error["level"] == "ERROR" and error["phase"] == "error"
    for key in ("module", "operation", "instance_id", "db_type", "session_id"):
        assert key in error
    assert error["instance_id"] == instance.pk and error["operation"] == "account_sync_run"
    assert "wf_secrets" not in error
    assert password not in emitted["json"].getvalue()

    text = emitted["plain"].getvalue()
    assert "Traceback" in text and "RuntimeError: boom ***" in text
    assert password not in text


def _record(message: str, *, secrets=(), exc: BaseException | None = None, **context) -> logging.LogRecord:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("whalefall.test.scrub")
    handler = Keep()
    logger.addHandler(handler)
    try:
        if exc is None:
            log_event(logger, logging.ERROR, message, secrets=secrets, **context)
        else:
            try:
                raise exc
            except type(exc):
                log_event(logger, logging.ERROR, message, exc_info=True, secrets=secrets, **context)
    finally:
        logger.removeHandler(handler)
    return records[-1]


@pytest.mark.parametrize(
    "text",
    [
        "connect failed: host=db port=3306 user=monitor password=hunter2-X sslmode=require",
        "DRIVER={ODBC Driver 18};SERVER=db;UID=monitor;PWD=hunter2-X;Encrypt=yes",
        "psql postgres://monitor:hunter2-X@db.example:5432/postgres",
        "ALTER USER monitor IDENTIFIED BY 'hunter2-X'",
        '{"user": "monitor", "password": "hunter2-X"}',
    ],
)
def test_credential_looking_text_is_scrubbed_without_registration(text):
    assert "hunter2-X" not in scrub_text(text)
    for formatter in (JsonFormatter(), PlainFormatter()):
        line = formatter.format(_record(text, exc=ValueError(text)))
        assert "hunter2-X" not in line and "***" in line


def test_secrets_given_or_live_are_scrubbed_everywhere_and_never_emitted():
    record = _record("oops zz-top-1 in message", secrets=("zz-top-1",), exc=ValueError("zz-top-1"), phase="zz-top-1")
    for formatter in (JsonFormatter(), PlainFormatter()):
        assert "zz-top-1" not in formatter.format(record)
    with secret_scope("live-9Q"):
        record = _record("live-9Q leaked", exc=KeyError("live-9Q"))
        for formatter in (JsonFormatter(), PlainFormatter()):
            assert "live-9Q" not in formatter.format(record)
    assert scrub_text("live-9Q") == "live-9Q"  # the scope ended

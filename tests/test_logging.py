"""Structured logs carry the agreed keys in JSON and text form."""

from __future__ import annotations

import json
import logging

from config.logging import JsonFormatter, PlainFormatter, log_event

KEYS = {"module": "m", "operation": "sync", "instance_id": 7, "db_type": "mysql", "session_id": None, "phase": "fetch"}


def _record(caplog) -> logging.LogRecord:
    logger = logging.getLogger("whalefall.test")
    with caplog.at_level(logging.INFO, logger="whalefall.test"):
        log_event(logger, logging.INFO, "hello", duration_ms=12, **KEYS)
    return caplog.records[-1]


def test_json_formatter_emits_one_object_with_all_keys(caplog):
    data = json.loads(JsonFormatter().format(_record(caplog)))
    assert data["message"] == "hello"
    for key, value in KEYS.items():
        assert data[key] == value
    assert data["duration_ms"] == 12
    assert data["level"] == "INFO"


def test_plain_formatter_appends_key_values(caplog):
    text = PlainFormatter().format(_record(caplog))
    assert text.startswith("INFO whalefall.test: hello")
    assert "instance_id=7" in text and "db_type=mysql" in text and "phase=fetch" in text
    assert "session_id" not in text  # None values are left out


def test_an_internal_error_carries_its_traceback_in_both_forms(caplog):
    logger = logging.getLogger("whalefall.test")
    with caplog.at_level(logging.ERROR, logger="whalefall.test"):
        try:
            raise ValueError("boom")
        except ValueError:
            log_event(logger, logging.ERROR, "hook failed", exc_info=True, **KEYS)
    record = caplog.records[-1]
    data = json.loads(JsonFormatter().format(record))
    assert data["exc_type"] == "ValueError"
    assert "Traceback" in data["traceback"] and "ValueError: boom" in data["traceback"]
    text = PlainFormatter().format(record)
    assert text.splitlines()[0].startswith("ERROR whalefall.test: hook failed")
    assert "ValueError: boom" in text

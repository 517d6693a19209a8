"""Every /api/ response is JSON, also with DEBUG on and for failures outside DRF; Django's loggers are scrubbed.

With DEBUG, Django answers an unknown URL and an exception outside a DRF view with its technical
pages (settings, local variables); an API client must get the JSON error shape with a `code`
instead, and the traceback must reach the log through WhaleFall's scrubbing formatter.
"""

from __future__ import annotations

import io
import logging

import pytest
from django.test import Client, override_settings

from config.logging import JsonFormatter, PlainFormatter
from tests.api.boom_urls import LEAKED

pytestmark = pytest.mark.django_db


@pytest.fixture
def log_stream():
    """What Django's `django` logger writes, read from its (WhaleFall-configured) handler."""
    handler = next(h for h in logging.getLogger("django").handlers if type(h) is logging.StreamHandler)
    stream = io.StringIO()
    old = handler.setStream(stream)
    try:
        yield stream
    finally:
        handler.setStream(old)


def test_django_loggers_write_through_the_scrubbing_formatter() -> None:
    for name in ("django", "django.request", "django.server"):
        logger = logging.getLogger(name)
        while not logger.handlers and logger.propagate and logger.parent is not None:
            logger = logger.parent
        ours = [h for h in logger.handlers if not type(h).__module__.startswith("_pytest")]  # pytest adds its own
        assert ours, name
        assert all(isinstance(h.formatter, JsonFormatter | PlainFormatter) for h in ours), name
        assert not logger.propagate  # not also through the root: one line per error


@pytest.mark.parametrize("debug", [True, False])
@override_settings(ROOT_URLCONF="tests.api.boom_urls")
def test_an_error_outside_drf_is_json_and_logged_with_its_traceback_scrubbed(debug, log_stream, settings) -> None:
    settings.DEBUG = debug
    client = Client(raise_request_exception=False)
    response = client.get("/api/v1/boom/")
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == "internal" and LEAKED not in response.content.decode()
    assert "Traceback" not in response.content.decode() and "SECRET_KEY" not in response.content.decode()
    logged = log_stream.getvalue()
    assert "Traceback (most recent call last)" in logged and "RuntimeError" in logged
    assert LEAKED not in logged and "password=***" in logged


@pytest.mark.parametrize("debug", [True, False])
def test_unknown_urls_and_wrong_methods_are_json_with_debug_on_or_off(debug, settings, api_client, alice) -> None:
    settings.DEBUG = debug
    client = api_client(alice)
    missing = client.get("/api/v1/no-such-thing/")
    assert missing.status_code == 404 and missing["Content-Type"] == "application/json"
    assert missing.json()["code"] == "not_found"
    wrong = client.delete("/api/v1/audit-events/")
    assert wrong.status_code == 405 and wrong.json()["code"] == "method_not_allowed"
    page = Client().get("/admin/no-such-page/")  # outside /api/ pages stay pages
    assert "json" not in page["Content-Type"]

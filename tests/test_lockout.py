"""Sign-in lockout (django-axes, api/lockout.py) through the real admin login form.

Axes stays enabled here: every login below is a POST to /admin/login/ from an
address set with REMOTE_ADDR, as a browser's would be.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.core.management import call_command
from django.test import Client, RequestFactory, override_settings
from django.utils import timezone

from api.lockout import client_ip, lockout_response

LOGIN_URL = "/admin/login/"
PASSWORD = "staff-Pa55-word"
LIMIT = 3

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def small_limit():
    with override_settings(AXES_ENABLED=True, AXES_FAILURE_LIMIT=LIMIT, AXES_COOLOFF_TIME=timedelta(minutes=15)):
        yield


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("dora", "dora@example.com", PASSWORD, is_staff=True)


def attempt(username: str, password: str, ip: str = "10.0.0.1", client: Client | None = None):
    client = client or Client()
    return client.post(LOGIN_URL, {"username": username, "password": password, "next": "/admin/"}, REMOTE_ADDR=ip)


def logged_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


def lock(username: str = "dora", ip: str = "10.0.0.1"):
    responses = [attempt(username, "wrong-password", ip) for _ in range(LIMIT)]
    assert [r.status_code for r in responses[:-1]] == [200] * (LIMIT - 1)  # the form with its error
    return responses[-1]


def assert_locked(response) -> None:
    assert response.status_code == 429
    assert "locked" in response.content.decode().lower()


def events(caplog, operation: str) -> list[dict]:
    return [r.wf for r in caplog.records if getattr(r, "wf", {}).get("operation") == operation]


def test_settings_are_the_documented_defaults():
    assert settings.AUTHENTICATION_BACKENDS[0] == "api.lockout.LockoutBackend"
    assert "django.contrib.auth.backends.ModelBackend" in settings.AUTHENTICATION_BACKENDS
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]
    assert settings.AXES_RESET_ON_SUCCESS is True
    assert settings.MIDDLEWARE[-1] == "axes.middleware.AxesMiddleware"


def test_the_right_password_logs_in(staff):
    assert logged_in(attempt("dora", PASSWORD))


def test_the_limit_locks_the_user_and_address_out_even_with_the_right_password(staff):
    assert_locked(lock())
    assert_locked(attempt("dora", PASSWORD))
    assert AccessAttempt.objects.filter(username="dora", ip_address="10.0.0.1").exists()


def test_the_same_user_from_another_address_still_logs_in(staff):
    lock(ip="10.0.0.1")
    assert logged_in(attempt("dora", PASSWORD, ip="10.0.0.2"))
    assert_locked(attempt("dora", PASSWORD, ip="10.0.0.1"))


def test_another_user_from_the_locked_address_still_logs_in(staff, django_user_model):
    django_user_model.objects.create_user("eve", "eve@example.com", PASSWORD, is_staff=True)
    lock(username="dora", ip="10.0.0.1")
    assert logged_in(attempt("eve", PASSWORD, ip="10.0.0.1"))


def test_the_right_password_after_the_cool_off_logs_in(staff):
    lock()
    assert_locked(attempt("dora", PASSWORD))
    # the cool-off has passed: the failures are older than AXES_COOLOFF_TIME
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    assert logged_in(attempt("dora", PASSWORD))


def test_a_success_resets_the_count(staff):
    for _ in range(LIMIT - 1):
        attempt("dora", "wrong-password")
    assert logged_in(attempt("dora", PASSWORD))
    for _ in range(LIMIT - 1):
        assert attempt("dora", "wrong-password").status_code == 200
    assert logged_in(attempt("dora", PASSWORD))


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("axes_reset_username", ["dora"]),
        ("axes_reset_ip", ["10.0.0.1"]),
        ("axes_reset_ip_username", ["10.0.0.1", "dora"]),
        ("axes_reset", []),
    ],
)
def test_the_reset_commands_unlock(staff, command, args):
    lock()
    assert_locked(attempt("dora", PASSWORD))
    call_command(command, *args)
    assert not AccessAttempt.objects.filter(username="dora").exists()
    assert logged_in(attempt("dora", PASSWORD))


def test_resetting_another_user_keeps_the_lock(staff):
    lock()
    call_command("axes_reset_username", "nobody")
    assert_locked(attempt("dora", PASSWORD))


def test_failures_and_the_lockout_are_logged_with_the_structured_keys(staff, caplog):
    caplog.set_level(logging.INFO, logger="whalefall.auth")
    lock()
    failed = events(caplog, "login_failed")
    assert len(failed) == LIMIT
    for event in failed:
        assert event["module"] == "auth"
        assert event["username"] == "dora"
        assert event["ip"] == "10.0.0.1"
    assert [e["locked_out"] for e in failed] == [False] * (LIMIT - 1) + [True]
    locked = events(caplog, "login_locked_out")
    assert len(locked) == 1
    assert locked[0] == {
        "module": "auth",
        "operation": "login_locked_out",
        "username": "dora",
        "ip": "10.0.0.1",
        "path": LOGIN_URL,
        "failure_limit": LIMIT,
        "cooloff_seconds": 900,
    }
    assert all("wrong-password" not in r.getMessage() + str(getattr(r, "wf", "")) for r in caplog.records)


def test_an_attempt_while_locked_is_logged_as_a_lockout_again(staff, caplog):
    caplog.set_level(logging.INFO, logger="whalefall.auth")
    lock()
    caplog.clear()
    attempt("dora", PASSWORD)
    assert [e["locked_out"] for e in events(caplog, "login_failed")] == [True]
    assert len(events(caplog, "login_locked_out")) == 1


def test_an_unknown_user_is_counted_and_locked_too(db):
    assert_locked(lock(username="ghost"))


def test_a_test_client_login_without_request_is_let_through_and_not_counted(staff):
    # Client.login() calls authenticate() without a request: nothing to count it against
    assert Client().login(username="dora", password=PASSWORD)
    assert not Client().login(username="dora", password="wrong-password")
    assert not AccessAttempt.objects.exists()


def test_the_api_gets_json_429_locked_out():
    request = RequestFactory().post("/api/v1/instances/")
    response = lockout_response(request, None, {"username": "dora"})
    assert response.status_code == 429
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert body["code"] == "locked_out"
    assert "locked" in body["detail"].lower()


def test_the_admin_gets_the_text_page():
    response = lockout_response(RequestFactory().post(LOGIN_URL), None, {"username": "dora"})
    assert response.status_code == 429
    assert response["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "203.0.113.9", "10.9.9.9"),  # no proxy: the header is the client's own words
        (1, "203.0.113.9", "203.0.113.9"),
        (1, "1.2.3.4, 203.0.113.9", "203.0.113.9"),  # a forged left part is ignored
        (2, "1.2.3.4, 203.0.113.9, 10.0.0.5", "203.0.113.9"),
        (2, "203.0.113.9", "10.9.9.9"),  # fewer hops than proxies: bypassed them
        (1, "", "10.9.9.9"),
    ],
)
def test_the_client_address_behind_trusted_proxies(proxies, forwarded, expected):
    meta = {"REMOTE_ADDR": "10.9.9.9"}
    if forwarded:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    with override_settings(WHALEFALL_LOGIN_PROXY_COUNT=proxies):
        assert client_ip(RequestFactory().get("/", **meta)) == expected


def test_a_forged_forwarded_for_does_not_escape_the_lock_by_default(staff):
    lock(ip="10.0.0.1")
    response = Client().post(
        LOGIN_URL,
        {"username": "dora", "password": PASSWORD, "next": "/admin/"},
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR="198.51.100.7",
    )
    assert_locked(response)

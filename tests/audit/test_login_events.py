"""Logins, failed logins and lockouts through the real admin login form, with the address."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client, override_settings

from audit.models import AuditEvent
from tests.audit.conftest import only_event

pytestmark = pytest.mark.django_db

LOGIN_URL = "/admin/login/"
PASSWORD = "staff-Pa55-word"


@pytest.fixture
def dora(django_user_model):
    return django_user_model.objects.create_user("dora", "dora@example.com", PASSWORD, is_staff=True)


def attempt(username: str, password: str, ip: str = "10.0.0.1", **headers):
    return Client().post(
        LOGIN_URL, {"username": username, "password": password, "next": "/admin/"}, REMOTE_ADDR=ip, **headers
    )


def test_a_login_is_recorded_with_the_user_and_the_address(dora):
    assert attempt("dora", PASSWORD, "10.0.0.5").status_code == 302
    event = only_event("login")
    assert (event.actor, event.actor_username, event.via, event.remote_addr) == (dora, "dora", "admin", "10.0.0.5")
    assert event.details["path"] == LOGIN_URL


def test_a_failed_login_is_recorded_with_the_tried_name_and_the_address(dora):
    assert attempt("dora", "wrong", "10.0.0.6").status_code == 200
    event = only_event("login_failed")
    assert (event.actor, event.actor_username, event.via, event.remote_addr) == (dora, "dora", "admin", "10.0.0.6")
    assert event.details["locked_out"] is False
    attempt("nobody-like-this", "wrong", "10.0.0.7")
    unknown = only_event("login_failed", actor_username="nobody-like-this")
    assert (unknown.actor, unknown.remote_addr) == (None, "10.0.0.7")
    assert not AuditEvent.objects.filter(kind="login").exists()


@override_settings(WHALEFALL_LOGIN_PROXY_COUNT=1)
def test_behind_a_trusted_proxy_the_address_is_the_one_the_proxy_saw(dora):
    attempt("dora", "wrong", "10.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9")
    assert only_event("login_failed").remote_addr == "203.0.113.9"


def test_without_trusted_proxies_a_forwarded_header_is_not_believed(dora):
    attempt("dora", "wrong", "10.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6")
    assert only_event("login_failed").remote_addr == "10.0.0.1"


@override_settings(AXES_ENABLED=True, AXES_FAILURE_LIMIT=2, AXES_COOLOFF_TIME=timedelta(minutes=15))
def test_a_lockout_is_recorded(dora):
    for _ in range(2):
        attempt("dora", "wrong", "10.0.0.8")
    event = only_event("locked_out")
    assert (event.actor, event.actor_username, event.remote_addr) == (dora, "dora", "10.0.0.8")
    assert event.details["failure_limit"] == 2 and event.details["cooloff_seconds"] == 900
    assert AuditEvent.objects.filter(kind="login_failed").count() == 2


def test_an_in_process_login_is_not_a_sign_in(client, dora):
    client.force_login(dora)
    assert client.login(username="dora", password=PASSWORD)
    assert not AuditEvent.objects.exists()

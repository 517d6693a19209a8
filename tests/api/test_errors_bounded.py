"""Every /api/ answer is JSON with a stable ``code``, and every free-text parameter is bounded.

Unknown URLs (404 ``not_found``), wrong methods (405 ``method_not_allowed``) and a bug in
a view (500 ``internal``, even with DEBUG on) answer JSON; a search or name filter over
``MAX_QUERY_LENGTH`` characters is a 400 ``query_too_long`` naming the parameter, on
SQLite (whose LIKE refuses a 50,000-character pattern) and PostgreSQL alike.
"""

from __future__ import annotations

import logging

import pytest
from django.test import RequestFactory, override_settings

from api.exceptions import server_error
from api.querying import MAX_QUERY_LENGTH

pytestmark = pytest.mark.django_db

HUGE = "x" * 60_000

FREE_TEXT = [
    ("/api/v1/instances/", "search"),
    ("/api/v1/instances/", "tag"),
    ("/api/v1/accounts/", "search"),
    ("/api/v1/accounts/search/", "q"),
    ("/api/v1/permissions/export/", "search"),
    ("/api/v1/findings/export/", "rule_code"),
    ("/api/v1/findings/", "rule_code"),
    ("/api/v1/accounts/export/", "search"),
]


@pytest.mark.parametrize("url", ["/api/nowhere/", "/api/v1/instances/0.5/", "/api/v1/nothing/"])
def test_an_unknown_api_url_is_json_not_found(api_client, alice, url):
    response = api_client(alice).get(url)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["code"] == "not_found"


def test_a_wrong_method_is_json_method_not_allowed(api_client, alice):
    response = api_client(alice).delete("/api/v1/sync-sessions/")
    assert response.status_code == 405
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["code"] == "method_not_allowed"


@override_settings(DEBUG=True)
def test_a_bug_in_a_view_is_json_internal_with_its_traceback_logged(api_client, alice, monkeypatch, caplog):
    """The only stand-in: the account-search selector is made to raise at the view boundary.

    No input makes a WhaleFall view fail on its own (that is the point), so the
    selector the view calls is replaced by one raising a plain RuntimeError.
    """
    from accountsync import selectors

    def broken(**kwargs):
        raise RuntimeError("selector exploded")

    monkeypatch.setattr(selectors, "account_search", broken)
    client = api_client(alice)
    client.raise_request_exception = False
    with caplog.at_level(logging.ERROR, logger="api.exceptions"):
        response = client.get("/api/v1/accounts/search/", {"q": "app_rw"})
    assert response.status_code == 500
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == "internal"
    assert "selector exploded" not in body["detail"]  # the client is not told the internals
    assert b"Traceback" not in response.content and b"<html" not in response.content.lower()
    record = next(r for r in caplog.records if r.name == "api.exceptions")
    assert record.exc_info and record.exc_info[0] is RuntimeError
    assert body["reference"] in record.getMessage()


def test_django_500_handler_answers_json_under_api_and_a_page_elsewhere(db):
    from config import urls

    assert urls.handler500 == "api.exceptions.server_error"
    factory = RequestFactory()
    api = server_error(factory.get("/api/v1/instances/"))
    assert api.status_code == 500 and api["Content-Type"].startswith("application/json")
    assert b'"code": "internal"' in api.content
    page = server_error(factory.get("/admin/"))
    assert page.status_code == 500 and page["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(("url", "param"), FREE_TEXT)
def test_free_text_over_the_bound_is_400_query_too_long(api_client, alice, make_instance, url, param):
    make_instance(name="prod-db-1")
    response = api_client(alice).get(url, {param: HUGE})
    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert body["code"] == "query_too_long"
    assert param in body
    assert str(MAX_QUERY_LENGTH) in body[param][0]
    assert HUGE not in response.content.decode()


@pytest.mark.parametrize(("url", "param"), FREE_TEXT)
def test_free_text_at_the_bound_runs(api_client, alice, make_instance, url, param):
    make_instance(name="prod-db-1")
    value = "x" * MAX_QUERY_LENGTH
    if param == "q":
        value = "x" * (MAX_QUERY_LENGTH - 1) + "*"  # a prefix search: a LIKE pattern
    response = api_client(alice).get(url, {param: value})
    assert response.status_code == 200, response.content[:300]


def test_a_too_long_body_field_keeps_the_invalid_code(api_client, alice):
    """query_too_long is for query parameters; a body field over its length stays ``invalid``."""
    response = api_client(alice).post("/api/v1/credentials/", {"name": "n" * 300, "username": "u", "password": "p"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


@pytest.mark.parametrize("param", ["started_after", "started_before"])
def test_an_offset_postgresql_refuses_is_read_in_utc(api_client, alice, param):
    """``-16:00`` is valid ISO 8601 but beyond PostgreSQL's ±15:59 (a DataError, a 500, before)."""
    response = api_client(alice).get("/api/v1/sync-sessions/", {param: "1037-05-22T15:09:51-16:00"})
    assert response.status_code == 200, response.content[:300]


def test_a_date_time_without_a_utc_form_is_400_invalid_datetime(api_client, alice):
    response = api_client(alice).get("/api/v1/change-logs/", {"detected_after": "0001-01-01T00:00:00+15:00"})
    assert response.status_code == 400, response.content[:300]
    assert response.json()["code"] == "invalid_datetime"
    assert "detected_after" in response.json()

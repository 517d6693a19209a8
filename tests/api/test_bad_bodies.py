"""Bodies no endpoint can use are a JSON 4xx with a ``code``, never a 500 or an HTML page.

Nesting: ``json`` decodes recursively, so a body nested deep enough raised RecursionError
(a 500) in the parser every endpoint uses; anything deeper than 64 levels is now 400
``parse_error``. Size: Django refuses a body over DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) when
DRF reads ``request.data``; that is now 413 ``too_large`` instead of Django's HTML 400.
"""

from __future__ import annotations

import json

import pytest
from django.conf import settings

from api.parsers import MAX_DEPTH
from instances.models import Instance
from sync.models import SyncSession

pytestmark = pytest.mark.django_db

THREE_MB = 3 * 1024 * 1024


def nested(depth: int, *, opener: bytes = b"[", closer: bytes = b"]", middle: bytes = b"") -> bytes:
    return opener * depth + middle + closer * depth


def nested_objects(depth: int) -> bytes:
    """``{"k": {"k": ... {} ...}}``: ``depth`` objects inside one another."""
    return b'{"k": ' * (depth - 1) + b"{}" + b"}" * (depth - 1)


@pytest.fixture
def endpoints(api_client, alice, unreachable_instance):
    """(client, method, url) for a POST that starts sessions and a PATCH that edits an instance."""
    instance = unreachable_instance()
    client = api_client(alice)
    return {
        "post": (client, "POST", "/api/v1/sync-sessions/", instance),
        "patch": (client, "PATCH", f"/api/v1/instances/{instance.pk}/", instance),
    }


def send(endpoint, body: bytes):
    client, method, url, _ = endpoint
    return client.generic(method, url, body, content_type="application/json")


def assert_json_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def assert_nothing_changed(instance) -> None:
    assert SyncSession.objects.count() == 0
    stored = Instance.objects.get(pk=instance.pk)
    assert (stored.name, stored.options) == (instance.name, instance.options)


@pytest.mark.parametrize("which", ["post", "patch"])
@pytest.mark.parametrize(
    "body",
    [
        nested(900),  # decodes, then overflowed the old recursive storable check
        nested(100_000),  # overflows json's own decoder
        nested_objects(900),
        b'{"options": ' + nested(MAX_DEPTH) + b"}",  # one level over the limit
        b'{"name": "x", "options": {"k": ' + nested(5000, opener=b'[{"a": ', closer=b"}]", middle=b"1") + b"}}",
    ],
    ids=["lists-900", "lists-100000", "objects-900", "just-over", "mixed-10000"],
)
def test_deep_nesting_is_400_parse_error(endpoints, which, body):
    endpoint = endpoints[which]
    result = assert_json_error(send(endpoint, body), 400, "parse_error")
    assert "nested deeper than 64" in result["detail"]
    assert_nothing_changed(endpoint[3])


def test_nesting_up_to_the_limit_is_parsed(endpoints):
    client, _, url, instance = endpoints["patch"]
    options = {"connect_timeout": 1, "deep": json.loads(nested(MAX_DEPTH - 2))}  # body -> options -> 62 lists
    response = client.patch(url, {"options": options}, format="json")
    # parsed: it reaches the options' own validation, which knows no key "deep" (not a parse_error)
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == "invalid" and "Unknown option(s) deep" in str(response.json()["options"])
    assert_nothing_changed(instance)


@pytest.mark.parametrize("which", ["post", "patch"])
def test_a_3mb_body_is_413_too_large(endpoints, which):
    endpoint = endpoints[which]
    body = json.dumps({"all": True, "name": "x", "options": {"pad": "x" * THREE_MB}}).encode()
    assert len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    result = assert_json_error(send(endpoint, body), 413, "too_large")
    assert str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) in result["detail"]
    assert_nothing_changed(endpoint[3])


def test_a_3mb_body_that_is_not_json_is_still_413(endpoints):
    result = send(endpoints["post"], b"\xff" * THREE_MB)
    assert_json_error(result, 413, "too_large")


def test_a_body_just_under_the_limit_is_parsed(endpoints):
    client, _, url, instance = endpoints["patch"]
    pad = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE - 1000)
    response = client.patch(url, {"description": pad}, format="json")
    assert response.status_code == 200, response.content[:300]
    assert Instance.objects.get(pk=instance.pk).description == pad


@pytest.mark.parametrize("method", ["GET", "POST", "PATCH"])
def test_unknown_api_url_is_json_404_even_with_a_big_body(api_client, alice, method):
    body = json.dumps({"pad": "x" * THREE_MB}).encode()
    response = api_client(alice).generic(method, "/api/v1/no-such-thing/", body, content_type="application/json")
    assert_json_error(response, 404, "not_found")

"""The OpenAPI schema validates and the docs pages work without internet."""

from __future__ import annotations

import re

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_schema_generation_validates_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    for path in (
        "/api/v1/instances/{id}/sync/",
        "/api/v1/sync-sessions/{session_id}/cancel/",
        "/api/v1/sync-sessions/{session_id}/retry-failed/",
        "/api/v1/sync-records/",
        "/api/v1/accounts/",
        "/api/v1/change-logs/",
    ):
        assert f"  {path}:" in text


def test_schema_documents_errors_and_keeps_the_password_write_only(api_client):
    schema = api_client().get("/api/schema/?format=json").json()
    sync = schema["paths"]["/api/v1/instances/{id}/sync/"]["post"]["responses"]
    assert {"200", "400", "401", "403", "404", "409"} <= set(sync)
    components = schema["components"]["schemas"]
    assert "password" in components["CredentialRequest"]["properties"]
    assert "password" not in components["Credential"]["properties"]
    assert components["Error"]["required"] == ["code"]


def test_docs_page_loads_only_local_assets(api_client):
    response = api_client().get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert not re.search(r"""(src|href)=["']https?://""", html), "docs page loads something from the internet"
    assets = re.findall(r"""(?:src|href)=["']/static/([^"']+)["']""", html)
    assert assets
    for asset in assets:
        assert finders.find(asset), asset

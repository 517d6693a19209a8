"""The new issue-10 operations are in the OpenAPI schema with their real content types and errors."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_exports_search_and_point_in_time_are_documented(api_client):
    paths = api_client().get("/api/schema/?format=json").json()["paths"]
    for name in ("accounts", "permissions", "change-logs", "findings"):
        op = paths[f"/api/v1/{name}/export/"]["get"]
        assert set(op["responses"]["200"]["content"]) == {"text/csv", "application/json", "application/x-ndjson"}
        assert {"400", "401", "403"} <= set(op["responses"])
        fmt = next(p for p in op["parameters"] if p["name"] == "format")
        assert fmt["schema"]["enum"] == ["csv", "json", "ndjson"]
    accounts_filters = {p["name"] for p in paths["/api/v1/accounts/export/"]["get"]["parameters"]}
    assert {"instance", "db_type", "superuser", "search"} <= accounts_filters
    search = paths["/api/v1/accounts/search/"]["get"]
    assert {"q", "mode", "active", "db_type", "page"} <= {p["name"] for p in search["parameters"]}
    at = paths["/api/v1/accounts/{id}/at/"]["get"]
    assert {"200", "400", "404"} <= set(at["responses"])
    changes = paths["/api/v1/instances/{id}/changes/"]["get"]
    assert {p["name"] for p in changes["parameters"]} >= {"from", "to", "page"}
    assert {"200", "400", "404"} <= set(changes["responses"])

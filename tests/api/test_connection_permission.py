"""POST /instances/{id}/test-connection/ needs sync.run_sync: 403 for viewers, 200 for operators and admins."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_viewer_is_refused_and_nothing_is_tested(api_client, charlie, unreachable_instance, monkeypatch):
    import api.views

    monkeypatch.setattr(api.views, "instance_connection_test", lambda **kw: pytest.fail("must not connect"))
    instance = unreachable_instance(version="15.2")
    response = api_client(charlie).post(f"/api/v1/instances/{instance.pk}/test-connection/")
    assert response.status_code == 403
    assert "test connections (sync.run_sync)" in response.json()["detail"]
    instance.refresh_from_db()
    assert instance.version == "15.2"


@pytest.mark.parametrize("name", ["bob", "alice"])
def test_operator_and_admin_may_test(api_client, role_user, unreachable_instance, name):
    instance = unreachable_instance()
    response = api_client(role_user(name)).post(f"/api/v1/instances/{instance.pk}/test-connection/")
    assert response.status_code == 200
    assert response.json()["ok"] is False and response.json()["error_kind"] == "connection"


def test_anonymous_is_401(api_client, unreachable_instance):
    instance = unreachable_instance()
    assert api_client().post(f"/api/v1/instances/{instance.pk}/test-connection/").status_code == 401

"""Test connection needs sync.run_sync: it connects out with the production credential and records the version."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.sync.conftest import closed_port

pytestmark = pytest.mark.django_db

INSTANCES = reverse("admin:instances_instance_changelist")


@pytest.fixture
def closed(make_instance):
    return make_instance(name="closed", port=closed_port(), options={"connect_timeout": 1}, version="8.0.1")


@pytest.fixture
def calls(monkeypatch):
    """Every connection test the admin starts (the real one still runs)."""
    import console.admin

    seen = []
    real = console.admin.instance_connection_test

    def spy(*, instance):
        seen.append(instance.name)
        return real(instance=instance)

    monkeypatch.setattr(console.admin, "instance_connection_test", spy)
    return seen


def test_viewer_has_no_test_connection_action_and_a_forged_post_is_refused(client_for, closed, calls):
    charlie = client_for("charlie")
    assert 'value="test_connection"' not in charlie.get(INSTANCES).content.decode()
    response = charlie.post(INSTANCES, {"action": "test_connection", "_selected_action": [closed.pk]}, follow=True)
    assert "You do not have permission to test connections (sync.run_sync)" in response.content.decode()
    assert calls == []
    closed.refresh_from_db()
    assert closed.version == "8.0.1"


@pytest.mark.parametrize("name", ["bob", "alice"])
def test_operator_and_admin_test_connections(client_for, closed, calls, name):
    client = client_for(name)
    assert 'value="test_connection"' in client.get(INSTANCES).content.decode()
    response = client.post(INSTANCES, {"action": "test_connection", "_selected_action": [closed.pk]}, follow=True)
    html = response.content.decode()
    assert "[connection error] closed" in html and "0 of 1 instance reachable" in html
    assert calls == ["closed"]

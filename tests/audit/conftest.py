"""Audit fixtures: logged-in admin clients, API token clients, instances that fail fast, account rows."""

from __future__ import annotations

import pytest
from django.test import Client

from audit.models import AuditEvent
from tests.api.conftest import api_client, make_history, unreachable_instance  # noqa: F401


@pytest.fixture(autouse=True)
def role_groups(request) -> None:
    """Recreate the role groups a previous transactional test's flush removed (as tests/admin does)."""
    if request.node.get_closest_marker("django_db") is None:
        return
    request.getfixturevalue("db")
    from sync.roles import ensure_role_groups

    ensure_role_groups()


@pytest.fixture
def client_for(alice, bob, charlie):
    """client_for("bob") -> an admin client logged in as that role user (force_login: no login event)."""
    users = {"alice": alice, "bob": bob, "charlie": charlie}

    def make(name: str) -> Client:
        client = Client(REMOTE_ADDR="10.9.8.7")
        client.force_login(users[name])
        return client

    return make


def only_event(kind: str, **filters) -> AuditEvent:
    """The one audit event of ``kind`` (and the filters); fails when there are none or several."""
    events = list(AuditEvent.objects.filter(kind=kind, **filters))
    assert len(events) == 1, [(e.kind, e.via, e.actor_username, e.details) for e in AuditEvent.objects.all()]
    return events[0]

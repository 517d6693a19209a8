"""Admin test helpers: logged-in clients per role and catalogs applied through the real engine."""

from __future__ import annotations

import pytest
from django.test import Client

from accountsync.adapters.base import AccountRecord, Catalog, Privilege, RoleGrant
from accountsync.services import account_sync_apply


@pytest.fixture(autouse=True)
def role_groups(request) -> None:
    """Recreate the role groups a previous transactional test's flush removed.

    ``flush`` emits post_migrate without ``apps``, which ``sync.roles.post_migrate_roles``
    ignores, so after any transactional test the groups are gone until the next migrate.
    """
    if request.node.get_closest_marker("django_db") is None:
        return
    request.getfixturevalue("db")
    from sync.roles import ensure_role_groups

    ensure_role_groups()


@pytest.fixture
def client_for(alice, bob, charlie):
    """client_for("alice") -> a Client logged in as that role user."""
    users = {"alice": alice, "bob": bob, "charlie": charlie}

    def make(name: str) -> Client:
        client = Client()
        client.force_login(users[name])
        return client

    return make


def account(
    name: str,
    host: str = "10.0.0.1",
    *,
    privileges: list[Privilege] | None = None,
    capabilities: set[str] | None = None,
    roles: list[RoleGrant] | None = None,
    **kw,
) -> AccountRecord:
    return AccountRecord(
        identity=f"'{name}'@'{host}'",
        username=name,
        host=host,
        privileges=privileges if privileges is not None else [Privilege(scope="database:app", privilege="SELECT")],
        capabilities=capabilities or set(),
        roles=roles or [],
        **kw,
    )


def apply(instance, *accounts: AccountRecord, session_id=None):
    """Apply a catalog with the real engine (inventory, snapshots, change logs)."""
    return account_sync_apply(
        instance=instance, catalog=Catalog(accounts=list(accounts)).finalize(), session_id=session_id
    )

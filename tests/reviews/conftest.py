"""Review fixtures: a small fleet applied through the real engine, and reviewers dave and erin.

Accounts come from catalogs applied with ``account_sync_apply`` (inventory, snapshots, role graph),
so the access a campaign freezes is computed by the real effective-access code from real snapshots.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accountsync.adapters.base import AccountRecord, Catalog, Privilege, RoleGrant
from accountsync.services import account_sync_apply
from sync.roles import REVIEWERS
from tests.admin.conftest import role_groups  # noqa: F401  (autouse: groups back after a flush)

REVIEWER_PASSWORDS = {"dave": "dave-Pa55-word", "erin": "erin-Pa55-word"}


def user(name: str, host: str = "%", *, privileges=(), roles=()) -> AccountRecord:
    return AccountRecord(
        identity=f"'{name}'@'{host}'",
        username=name,
        host=host,
        privileges=list(privileges),
        roles=[RoleGrant(r) for r in roles],
    )


def role(name: str, *, privileges=()) -> AccountRecord:
    return AccountRecord(identity=f"'{name}'", username=name, kind="role", host=None, privileges=list(privileges))


def apply(instance, *accounts: AccountRecord):
    result = account_sync_apply(instance=instance, catalog=Catalog(accounts=list(accounts)).finalize())
    assert result.success, result.message
    return result


@pytest.fixture
def reviewer(db, django_user_model):
    def make(name: str):
        found = django_user_model.objects.filter(username=name).first()
        if found is not None:
            return found
        made = django_user_model.objects.create_user(
            name, f"{name}@example.com", REVIEWER_PASSWORDS[name], is_staff=True
        )
        made.groups.add(Group.objects.get(name=REVIEWERS))
        return made

    return make


@pytest.fixture
def dave(reviewer):
    return reviewer("dave")


@pytest.fixture
def erin(reviewer):
    return reviewer("erin")


@pytest.fixture
def fleet(make_instance):
    """Two MySQL instances (production, staging) with users, a role and a hostile name."""
    prod = make_instance("mysql", name="prod-db", environment="production")
    stage = make_instance("mysql", name="stage-db", environment="staging")
    apply(
        prod,
        role("app_rw", privileges=[Privilege("database:sales", "INSERT"), Privilege("database:sales", "SELECT")]),
        user("ann", privileges=[Privilege("database:sales", "SELECT")], roles=["'app_rw'"]),
        user("bo", privileges=[Privilege("global", "PROCESS"), Privilege("database:hr", "SELECT", grantable=True)]),
        user('=HYPERLINK("http://x")', privileges=[Privilege("database:sales", "SELECT")]),
        user("cy", privileges=[]),
    )
    apply(stage, user("dee", privileges=[Privilege("database:stage", "ALL PRIVILEGES")]))
    return {"prod": prod, "stage": stage}


@pytest.fixture
def client_of():
    def make(user) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def api_of():
    def make(user) -> APIClient:
        client = APIClient()
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make

"""A MariaDB-flavoured and a PostgreSQL instance whose snapshots were stored by the real apply path."""

from __future__ import annotations

from typing import Any

import pytest

from accountsync.adapters.base import AccountRecord, Catalog, Privilege, RoleGrant
from accountsync.models import InstanceAccount
from accountsync.services import account_sync_apply
from tests.api.conftest import api_client  # noqa: F401

PASSWORD = "Never-Stored-Pa55"


def mysql_user(user: str, host: str, privileges: list[Privilege], roles: list[RoleGrant] = ()) -> AccountRecord:
    from accountsync.adapters.mysql import account_identity

    return AccountRecord(
        identity=account_identity(user, host),
        username=user,
        host=host,
        attributes={"auth_plugin": "mysql_native_password", "locked": False, "is_role": False},
        privileges=privileges,
        roles=list(roles),
    )


def mysql_role(name: str, privileges: list[Privilege]) -> AccountRecord:
    return AccountRecord(
        identity=f"'{name}'", username=name, kind="role", attributes={"is_role": True}, privileges=privileges
    )


def apply(instance: Any, accounts: list[AccountRecord]) -> None:
    account_sync_apply(
        instance=instance, catalog=Catalog(accounts=accounts, server_version="MariaDB 10.11.19").finalize(), force=True
    )


@pytest.fixture
def mysql_instance(make_instance, make_credential):
    """`app'x`@`%` holding role `reader`, with grants on `sales`; stored through account_sync_apply."""
    instance = make_instance(
        "mysql", name="maria-1", credential=make_credential(password=PASSWORD), version="MariaDB 10.11.19"
    )
    apply(
        instance,
        [
            mysql_role("reader", [Privilege("database:sales", "SELECT")]),
            mysql_user(
                "app'x",
                "%",
                [Privilege("database:sales", "INSERT", True), Privilege("object:sales.orders", "UPDATE")],
                [RoleGrant("'reader'", admin_option=True, default=True)],
            ),
        ],
    )
    instance.refresh_from_db()
    return instance


def account(instance: Any, username: str) -> InstanceAccount:
    return InstanceAccount.objects.get(instance=instance, username=username)

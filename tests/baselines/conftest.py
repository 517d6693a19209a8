"""Baselines fixtures: a PostgreSQL-family instance whose catalog each test applies for real (account_sync_apply)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from accountsync.adapters.base import AccountRecord, Catalog, CoverageGap, Privilege, RoleGrant
from accountsync.models import InstanceAccount
from accountsync.services import account_sync_apply
from tests.browser.conftest import page  # noqa: F401  (the browser fixture is the session one, tests/conftest.py)

ORDERS = "object:sales.public.orders"
ITEMS = "object:sales.public.items"
SHOP = "object:shop.public.t"


def catalog(
    grants: dict[str, Iterable[tuple[str, str] | tuple[str, str, bool]]],
    roles: dict[str, Iterable[str]] | None = None,
    role_names: Iterable[str] = ("readers",),
    gaps: Iterable[str] = (),
) -> Catalog:
    """A catalog: `grants` per account name ((scope, privilege[, grantable])), `roles` held per account name."""
    roles = roles or {}
    names = sorted(set(grants) | set(roles) | set(role_names))
    accounts = [
        AccountRecord(
            identity=name,
            username=name,
            kind="role" if name in role_names else "user",
            privileges=[Privilege(g[0], g[1], bool(g[2]) if len(g) > 2 else False) for g in grants.get(name, ())],
            roles=[RoleGrant(r, False, True) for r in roles.get(name, ())],
        )
        for name in names
    ]
    return Catalog(accounts=accounts, coverage=[CoverageGap(scope=s, reason="permission denied") for s in gaps])


@pytest.fixture(autouse=True)
def role_groups(request) -> None:
    """The role groups with their permissions (a transactional test's flush elsewhere removes them)."""
    if request.node.get_closest_marker("django_db") is None:
        return
    request.getfixturevalue("db")
    from sync.roles import ensure_role_groups

    ensure_role_groups()


@pytest.fixture
def pg(make_instance):
    return make_instance("postgresql", port=5432, name="pg-baselines")


@pytest.fixture
def apply(pg):
    """``apply(grants, roles, ...)``: apply that catalog to the instance; returns {name: account}."""

    def run(grants: dict[str, Any], roles: dict[str, Any] | None = None, **kw: Any) -> dict[str, InstanceAccount]:
        result = account_sync_apply(instance=pg, catalog=catalog(grants, roles, **kw).finalize(), force=True)
        assert result.success, result.message
        return {a.identity: a for a in InstanceAccount.objects.filter(instance=pg)}

    return run

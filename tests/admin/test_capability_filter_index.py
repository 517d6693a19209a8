"""The grant_admin / wildcard_host filters: the current snapshot decides, and PostgreSQL answers from an index."""

from __future__ import annotations

import pytest
from django.db import connection

from accountsync import selectors
from accountsync.models import InstanceAccount

from .conftest import account, apply

pytestmark = pytest.mark.django_db

INDEX = "perm_open_caps_gin"  # accountsync/migrations/0010_open_capabilities_gin_index.py


@pytest.fixture
def accounts(make_instance):
    inst = make_instance(name="caps")
    apply(
        inst,
        account("granter", capabilities={"GRANT_ADMIN"}),
        account("both", "%", capabilities={"GRANT_ADMIN", "WILDCARD_HOST"}),
        account("lookalike", capabilities={"GRANT_ADMIN_X", "NOT_WILDCARD_HOST"}),
        account("plain"),
        account("was_granter", capabilities={"GRANT_ADMIN"}),
    )
    # was_granter loses it: its closed snapshot still lists GRANT_ADMIN, its open one does not
    apply(
        inst,
        account("granter", capabilities={"GRANT_ADMIN"}),
        account("both", "%", capabilities={"GRANT_ADMIN", "WILDCARD_HOST"}),
        account("lookalike", capabilities={"GRANT_ADMIN_X", "NOT_WILDCARD_HOST"}),
        account("plain"),
        account("was_granter"),
    )
    return inst


def usernames(capability: str, present: bool) -> set[str]:
    qs = selectors.account_capability_filter(InstanceAccount.objects.all(), capability=capability, present=present)
    return set(qs.values_list("username", flat=True))


def test_the_current_snapshot_decides_on_every_backend(accounts):
    assert usernames("GRANT_ADMIN", True) == {"granter", "both"}
    assert usernames("GRANT_ADMIN", False) == {"lookalike", "plain", "was_granter"}
    assert usernames("WILDCARD_HOST", True) == {"both"}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the GIN index exists on PostgreSQL only")
def test_postgresql_finds_the_few_grant_admins_through_the_gin_index(accounts, make_instance):
    """The index must match the expression Django writes, or the planner can never use it.

    With 3,000 current snapshots of which two grant, and fresh statistics, the planner's best way to
    the two is the GIN index (without it: every open snapshot's JSON, the 0.66 s of issue #19 at a
    million accounts). A different JSON path or operator class in the filter would silently lose it.
    """
    apply(make_instance(name="bulk"), *[account(f"bulk_{i}") for i in range(3000)])
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [INDEX])
        (definition,) = cursor.fetchone()
        assert "jsonb_path_ops" in definition and "valid_to IS NULL" in definition
        cursor.execute("ANALYZE accountsync_accountpermission")
        cursor.execute("ANALYZE accountsync_instanceaccount")
    qs = selectors.account_capability_filter(InstanceAccount.objects.all(), capability="GRANT_ADMIN")
    plan = qs.explain()
    assert f"Bitmap Index Scan on {INDEX}" in plan, plan
    assert set(qs.values_list("username", flat=True)) == {"granter", "both"}

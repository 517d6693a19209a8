"""Findings read effective access (#16 part 2): a grant option held through a role is listed with its path,
and an escalation route says why (the adapters' capability_reasons)."""

from __future__ import annotations

import pytest

from accountsync.adapters.base import AccountRecord, Catalog, Privilege, RoleGrant
from accountsync.services import account_sync_apply
from findings.models import Finding
from findings.services import findings_refresh

pytestmark = pytest.mark.django_db


def test_grant_option_through_a_role_is_listed_with_its_path(make_instance):
    instance = make_instance("postgresql", port=5432)
    catalog = Catalog(
        accounts=[
            AccountRecord(
                identity="app_owner",
                username="app_owner",
                kind="role",
                privileges=[Privilege("object:shop.public.orders", "INSERT", grantable=True)],
                capabilities={"GRANT_ADMIN"},
            ),
            AccountRecord(identity="ann", username="ann", attributes={"login": True}, roles=[RoleGrant("app_owner")]),
            AccountRecord(
                identity="bob",
                username="bob",
                attributes={"login": True},
                privileges=[Privilege("object:shop.public.items", "SELECT", grantable=True)],
                capabilities={"GRANT_ADMIN"},
            ),
        ]
    ).finalize()
    assert account_sync_apply(instance=instance, catalog=catalog).success
    findings_refresh(instance=instance)
    ann = Finding.objects.get(account__identity="ann", rule_code="GRANT_OPTION", is_open=True)
    assert ann.detail["grantable"] == {"count": 1, "examples": ["INSERT on object:shop.public.orders (via app_owner)"]}
    bob = Finding.objects.get(account__identity="bob", rule_code="GRANT_OPTION", is_open=True)
    assert bob.detail["grantable"]["examples"] == ["SELECT on object:shop.public.items"]


def test_superuser_finding_says_why(make_instance):
    instance = make_instance("postgresql", port=5432)
    route = "pg_read_server_files: can read any file the server's OS user can, which gives superuser-level access"
    files = AccountRecord(
        identity="pg_read_server_files",
        username="pg_read_server_files",
        kind="role",
        capabilities={"SUPERUSER"},
        capability_reasons={"SUPERUSER": [route]},
    )
    eve = AccountRecord(
        identity="eve", username="eve", attributes={"login": True}, roles=[RoleGrant("pg_read_server_files")]
    )
    assert account_sync_apply(instance=instance, catalog=Catalog(accounts=[files, eve]).finalize()).success
    findings_refresh(instance=instance)
    finding = Finding.objects.get(account__identity="eve", rule_code="SUPERUSER", is_open=True)
    assert finding.detail["reasons"] == [f"via role pg_read_server_files ({route})"]

"""The built-in roles: admins hold everything, operators run syncs but never touch credentials, viewers only view."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission

from sync.roles import ADMINS, OPERATORS, VIEWERS, ensure_role_groups

pytestmark = pytest.mark.django_db


def codes(group_name: str) -> set[str]:
    return {
        f"{app}.{code}"
        for app, code in Group.objects.get(name=group_name).permissions.values_list(
            "content_type__app_label", "codename"
        )
    }


def test_migrate_creates_the_three_roles_with_their_permissions():
    assert Permission.objects.count() == len(codes(ADMINS))
    operators = codes(OPERATORS)
    assert {
        "sync.run_sync",
        "instances.add_instance",
        "instances.change_instance",
        "instances.delete_instance",
    } <= operators
    assert "instances.view_credential" in operators
    assert not {c for c in operators if c.startswith("instances.") and c.endswith("_credential") and "view" not in c}
    assert "auth.change_user" not in operators
    viewers = codes(VIEWERS)
    assert "sync.run_sync" not in viewers
    assert viewers == {c for c in viewers if c.split(".")[1].startswith("view_")}
    assert {"sync.view_syncsession", "accountsync.view_accountchangelog", "instances.view_instance"} <= viewers


def test_role_users_get_permissions_through_groups(alice, bob, charlie):
    assert not alice.is_superuser and alice.has_perm("auth.change_user") and alice.has_perm("sync.run_sync")
    assert bob.has_perm("sync.run_sync") and not bob.has_perm("instances.change_credential")
    assert charlie.has_perm("sync.view_syncsession") and not charlie.has_perm("sync.run_sync")


def test_ensure_role_groups_is_idempotent_and_repairs_drift():
    Group.objects.get(name=VIEWERS).permissions.clear()
    ensure_role_groups()
    ensure_role_groups()
    assert Group.objects.filter(name__in=[ADMINS, OPERATORS, VIEWERS]).count() == 3
    assert "sync.view_syncsession" in codes(VIEWERS)


@pytest.mark.django_db(transaction=True)
def test_roles_survive_a_flush():
    """TransactionTestCase and `manage.py flush` empty every table; post_migrate puts the roles back."""
    from django.core.management import call_command

    call_command("flush", interactive=False, verbosity=0)
    assert "sync.run_sync" in codes(OPERATORS)
    assert "sync.view_syncsession" in codes(VIEWERS)

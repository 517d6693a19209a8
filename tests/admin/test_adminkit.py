"""The admin kit offers actions that features registered, under Django's own permission rules."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import RequestFactory

from accountsync.models import InstanceAccount
from config.registry import admin_action_register, admin_actions_for, registry

pytestmark = pytest.mark.django_db


@pytest.fixture
def restore_actions():
    saved = {label: list(actions) for label, actions in registry["admin_actions"].items()}
    yield
    registry["admin_actions"].clear()
    registry["admin_actions"].update(saved)


def action_names(user, *, popup: bool = False) -> list[str]:
    request = RequestFactory().get("/admin/accountsync/instanceaccount/", {"_popup": "1"} if popup else {})
    request.user = user
    return list(admin.site._registry[InstanceAccount].get_actions(request))


def test_exports_registered_their_actions_on_the_accounts_admin():
    names = [a.__name__ for a in admin_actions_for("accountsync.InstanceAccount")]
    assert "export_grant_script_accounts" in names  # grantscripts registers one too (docs/grant-scripts.md)
    # other features register theirs as well: this checks the exports' own, in their order
    assert [n for n in names if n.startswith("export_") and n != "export_grant_script_accounts"] == [
        "export_accounts_csv",
        "export_accounts_json",
        "export_permissions_csv",
        "export_effective_access_csv",
    ]


def test_a_registered_action_keeps_its_permissions_and_popups_show_none(restore_actions, alice, charlie):
    def wipe_selected(modeladmin, request, queryset):
        return None

    wipe_selected.allowed_permissions = ("change",)

    def peek_selected(modeladmin, request, queryset):
        return None

    peek_selected.allowed_permissions = ("view",)
    admin_action_register(model="accountsync.instanceaccount", action=wipe_selected)
    admin_action_register(model="accountsync.instanceaccount", action=peek_selected)
    admin_action_register(model="accountsync.instanceaccount", action=peek_selected)  # once is enough

    names = action_names(charlie)
    assert "peek_selected" in names and "export_accounts_csv" in names
    assert "wipe_selected" not in names, "history is read-only: no user has the change permission there"
    assert action_names(alice).count("peek_selected") == 1
    assert action_names(charlie, popup=True) == []

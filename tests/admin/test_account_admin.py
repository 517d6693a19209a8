"""Accounts and change log in the admin: filters (capabilities from the current snapshot), rendering, read-only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accountsync.adapters.base import Privilege, RoleGrant
from accountsync.models import AccountChangeLog, InstanceAccount
from adminkit.kit import diff_html, diff_line

from .conftest import account, apply

pytestmark = pytest.mark.django_db

ACCOUNTS = reverse("admin:accountsync_instanceaccount_changelist")
CHANGES = reverse("admin:accountsync_accountchangelog_changelist")


@pytest.fixture
def fleet(make_instance):
    """A MySQL production instance with varied accounts and a PostgreSQL staging one."""
    my = make_instance(name="my-prod", environment="production")
    pg = make_instance(db_type="postgresql", name="pg-stage", port=5432, environment="staging")
    apply(
        my,
        account("plain"),
        account(
            "granter", privileges=[Privilege("database:app", "SELECT", grantable=True)], capabilities={"GRANT_ADMIN"}
        ),
        account("anyhost", "%", capabilities={"WILDCARD_HOST"}),
        account("root", "localhost", is_superuser=True, capabilities={"SUPERUSER"}),
        account("frozen", is_locked=True, capabilities={"LOCKED"}),
        # GRANT_ADMIN_X must not match a GRANT_ADMIN filter
        account("lookalike", capabilities={"GRANT_ADMIN_X"}),
    )
    apply(pg, account("pgplain", "", kind="role"))
    return my, pg


def names(client, **params) -> set[str]:
    resp = client.get(ACCOUNTS, params)
    assert resp.status_code == 200
    return {a.username for a in resp.context["cl"].result_list}


def test_account_filters(client_for, fleet):
    my, pg = fleet
    client = client_for("charlie")
    mine = {"plain", "granter", "anyhost", "root", "frozen", "lookalike"}
    assert names(client) == mine | {"pgplain"}
    assert names(client, grant_admin="1") == {"granter"}
    assert names(client, grant_admin="0") == (mine | {"pgplain"}) - {"granter"}
    assert names(client, wildcard_host="1") == {"anyhost"}
    assert names(client, is_superuser__exact="1") == {"root"}
    assert names(client, is_locked__exact="1") == {"frozen"}
    assert names(client, instance__db_type__exact="postgresql") == {"pgplain"}
    assert names(client, instance__environment__exact="production") == mine
    assert names(client, instance__id__exact=str(pg.pk)) == {"pgplain"}
    assert names(client, q="granter") == {"granter"}
    apply(my, account("plain"), account("granter"), account("anyhost", "%"), account("root", "localhost"))
    assert names(client, is_active__exact="0") == {"lookalike", "frozen"}
    assert names(client, grant_admin="1") == set()  # the current snapshot decides, not history


def test_account_page_groups_the_snapshot_by_scope_and_shows_history(client_for, make_instance):
    inst = make_instance(name="m")
    apply(inst, account("app", privileges=[Privilege("database:sales", "SELECT"), Privilege("global", "PROCESS")]))
    apply(
        inst,
        account(
            "app",
            privileges=[
                Privilege("database:sales", "SELECT"),
                Privilege("object:sales.orders", "UPDATE", grantable=True),
            ],
            roles=[RoleGrant("reporting", admin_option=True)],
            capabilities={"GRANT_ADMIN"},
        ),
    )
    acc = InstanceAccount.objects.get(username="app")
    html = (
        client_for("charlie").get(reverse("admin:accountsync_instanceaccount_change", args=[acc.pk])).content.decode()
    )
    assert html.index("Database sales") < html.index("Object sales.orders")
    assert "Global" not in html.split("Current permissions")[1].split("Change history")[0]
    assert "reporting" in html and "GRANT_ADMIN" in html and "2 versions recorded" in html
    history = html.split("Change history")[1]
    assert '<div class="wf-diff wf-diff-revoke">- PROCESS on Global</div>' in history
    assert '<div class="wf-diff wf-diff-grant">+ UPDATE on Object sales.orders with grant option</div>' in history
    assert '<div class="wf-diff wf-diff-grant">+ role reporting</div>' in history
    assert 'name="_save"' not in html


def test_diff_lines_colour_grants_revokes_and_changes():
    assert diff_line({"op": "grant", "scope": "global", "privilege": "SELECT", "new": {"grantable": False}}) == (
        "grant",
        "+ SELECT on Global",
    )
    deny = {"op": "revoke", "scope": "database:x", "privilege": "DELETE", "old": {"effect": "DENY"}}
    assert diff_line(deny) == ("revoke", "- DENY DELETE on Database x")
    assert (
        diff_line({"op": "set", "scope": "capability", "field": "SUPERUSER", "old": True, "new": False})[0] == "revoke"
    )
    changed = {"op": "set", "scope": "attribute", "field": "locked", "old": False, "new": True}
    assert diff_line(changed) == ("set", "~ locked: no → yes")
    html = diff_html([{"op": "grant", "scope": "global", "privilege": f"P{i}", "new": {}} for i in range(9)], limit=6)
    assert html.count("wf-diff-grant") == 6 and "… 3 more" in html
    # a set from nothing on an existing account shows both values (issue #22 part 5)
    came = diff_html([{"op": "set", "scope": "attribute", "field": "valid_until", "old": None, "new": "2030-01-01"}])
    assert "~ valid_until: ∅ → 2030-01-01" in came


def test_change_log_filters_and_coloured_list(client_for, make_instance):
    a = make_instance(name="a-inst")
    b = make_instance(db_type="postgresql", name="b-inst", port=5432)
    apply(a, account("u1"))
    apply(a, account("u1", privileges=[Privilege("database:app", "INSERT")]))
    apply(b, account("u2", "", kind="role"))
    old = AccountChangeLog.objects.filter(instance=b).get()
    AccountChangeLog.objects.filter(pk=old.pk).update(detected_at=timezone.now() - timedelta(days=10))
    client = client_for("charlie")

    def shown(**params) -> list[tuple[str, str]]:
        resp = client.get(CHANGES, params)
        assert resp.status_code == 200
        return sorted((c.account.username, c.change_type) for c in resp.context["cl"].result_list)

    everything = [("u1", "added"), ("u1", "privileges_changed"), ("u2", "added")]
    assert shown() == everything
    assert shown(change_type__exact="privileges_changed") == [("u1", "privileges_changed")]
    assert shown(instance__id__exact=str(b.pk)) == [("u2", "added")]
    assert shown(instance__db_type__exact="mysql") == everything[:2]
    assert shown(detected="7d") == everything[:2]
    day = (timezone.localdate() - timedelta(days=10)).isoformat()
    assert shown(detected_from=day, detected_to=day) == [("u2", "added")]
    html = client.get(CHANGES, {"change_type__exact": "privileges_changed"}).content.decode()
    assert '<div class="wf-diff wf-diff-grant">+ INSERT on Database app</div>' in html
    assert '<div class="wf-diff wf-diff-revoke">- SELECT on Database app</div>' in html
    detail = client.get(reverse("admin:accountsync_accountchangelog_change", args=[old.pk])).content.decode()
    assert "wf-diff-grant" in detail and 'name="_save"' not in detail


def test_history_is_read_only_even_for_admins(client_for, make_instance):
    inst = make_instance(name="ro")
    apply(inst, account("x"))
    client = client_for("alice")
    change = AccountChangeLog.objects.get()
    for name, pk in (("accountsync_accountchangelog", change.pk), ("accountsync_instanceaccount", change.account_id)):
        assert client.get(reverse(f"admin:{name}_add")).status_code == 403
        assert client.post(reverse(f"admin:{name}_delete", args=[pk])).status_code == 403
        assert client.post(reverse(f"admin:{name}_change", args=[pk]), {"summary": "x"}).status_code == 403
    assert AccountChangeLog.objects.get().summary == change.summary

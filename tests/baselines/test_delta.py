"""The delta between an approved set and the current one: beyond, short of, grant option, role path, coverage."""

from __future__ import annotations

from accountsync.effective import EffectiveGrant
from baselines.canonical import access_delta, access_digest, bounded, canonical_access, delta_lines, has_drift

T1 = "object:sales.public.orders"
T2 = "object:sales.public.items"


def access(*grants: EffectiveGrant, roles=(), capabilities=()):
    return canonical_access(grants, roles, capabilities)


def test_canonical_form_is_compact_sorted_and_merges_paths():
    got = access(
        EffectiveGrant(T2, "SELECT", via=("readers",)),
        EffectiveGrant(T1, "SELECT", via=("app", "readers")),
        EffectiveGrant(T1, "SELECT", grantable=True, via=("owners",)),
        EffectiveGrant(T1, "SELECT"),
        roles=[{"role": "readers", "admin_option": False}, {"role": "app", "admin_option": True}],
        capabilities={"GRANT_ADMIN"},
    )
    assert got == {
        # one row per (scope, privilege, effect): grantable if any path is, the shortest path (direct here)
        "grants": [[T2, "SELECT", "GRANT", False, ["readers"]], [T1, "SELECT", "GRANT", True, []]],
        "roles": [["app", True], ["readers", False]],
        "capabilities": ["GRANT_ADMIN"],
    }


def test_same_access_by_another_path_is_no_drift_and_has_the_same_digest():
    before = access(EffectiveGrant(T1, "SELECT", via=("readers",)))
    after = access(EffectiveGrant(T1, "SELECT", via=("app_rw",)))
    assert not has_drift(access_delta(before, after))
    assert access_digest(before) == access_digest(after)
    assert access_digest(before) != access_digest(access(EffectiveGrant(T1, "INSERT")))


def test_access_beyond_the_baseline_is_added_with_its_role_path():
    before = access(EffectiveGrant(T1, "SELECT"))
    after = access(EffectiveGrant(T1, "SELECT"), EffectiveGrant(T2, "DELETE", via=("app_rw", "writers")))
    delta = access_delta(before, after)
    assert delta["added"] == [{"scope": T2, "privilege": "DELETE", "grantable": False, "via": ["app_rw", "writers"]}]
    assert delta["missing"] == []
    assert has_drift(delta)
    assert delta_lines(delta) == [f"+ DELETE on {T2} (via app_rw → writers)"]


def test_access_short_of_the_baseline_is_missing_with_the_approved_path():
    before = access(EffectiveGrant(T1, "SELECT", via=("readers",)), EffectiveGrant(T2, "SELECT"))
    after = access(EffectiveGrant(T2, "SELECT"))
    delta = access_delta(before, after)
    assert delta["missing"] == [{"scope": T1, "privilege": "SELECT", "grantable": False, "via": ["readers"]}]
    assert delta["added"] == []
    assert delta_lines(delta) == [f"- SELECT on {T1} (via readers)"]


def test_a_grant_option_change_is_drift_both_ways():
    plain, grantable = access(EffectiveGrant(T1, "SELECT")), access(EffectiveGrant(T1, "SELECT", grantable=True))
    gained = access_delta(plain, grantable)
    assert gained["added"] == [{"scope": T1, "privilege": "SELECT", "grantable": True, "via": [], "grant_option": True}]
    assert gained["missing"] == []
    lost = access_delta(grantable, plain)
    assert lost["missing"] == [{"scope": T1, "privilege": "SELECT", "grantable": True, "via": [], "grant_option": True}]
    assert delta_lines(lost) == [f"- grant option of SELECT on {T1} (via direct)"]


def test_roles_capabilities_and_deny_effects():
    before = access(roles=[{"role": "readers"}], capabilities={"CREATE_USER"})
    after = access(
        EffectiveGrant("database:sales", "SELECT", effect="DENY"),
        roles=[{"role": "readers", "admin_option": True}, {"role": "admins"}],
        capabilities={"SUPERUSER"},
    )
    delta = access_delta(before, after)
    assert delta["added"] == [
        {"scope": "database:sales", "privilege": "SELECT", "grantable": False, "via": [], "effect": "DENY"}
    ]
    assert delta["added_roles"] == [
        {"role": "admins", "admin_option": False},
        {"role": "readers", "admin_option": True, "admin_option_only": True},
    ]
    assert (delta["added_capabilities"], delta["missing_capabilities"]) == (["SUPERUSER"], ["CREATE_USER"])
    assert "+ role admins" in delta_lines(delta) and "- capability CREATE_USER" in delta_lines(delta)


def test_differences_in_unreadable_scopes_are_unverified_never_added_or_missing():
    def unreadable(scope: str) -> str | None:
        return "database:sales" if scope.startswith("object:sales.") else None

    before = access(EffectiveGrant(T1, "SELECT"), EffectiveGrant("object:shop.public.t", "SELECT"))
    after = access(EffectiveGrant(T2, "INSERT"), EffectiveGrant("object:shop.public.t", "SELECT"))
    delta = access_delta(before, after, unreadable)
    assert not has_drift(delta)
    assert [(u["change"], u["scope"], u["gap_scope"]) for u in delta["unverified"]] == [
        ("added", T2, "database:sales"),
        ("missing", T1, "database:sales"),
    ]
    # a readable difference beside it is still drift, the unreadable one still only unverified
    after_shop = access(EffectiveGrant(T2, "INSERT"))
    mixed = access_delta(before, after_shop, unreadable)
    assert [m["scope"] for m in mixed["missing"]] == ["object:shop.public.t"]
    assert len(mixed["unverified"]) == 2


def test_no_entry_means_everything_current_is_added_and_lists_are_bounded():
    after = access(*(EffectiveGrant(f"object:db.s.t{i:03d}", "SELECT") for i in range(250)))
    delta = access_delta(None, after)
    assert len(delta["added"]) == 250
    cut = bounded(delta)
    assert len(cut["added"]) == 200 and cut["added_total"] == 250
    assert "missing_total" not in cut


def test_role_memberships_are_unverified_while_memberships_are_unreadable():
    from accountsync.adapters.base import CoverageGap

    gap = CoverageGap(scope="role", reason="pg_auth_members not readable")

    def unreadable(scope: str) -> str | None:
        return gap.scope if gap.covers(scope) else None

    delta = access_delta(access(roles=[{"role": "readers"}]), access(roles=[{"role": "admins"}]), unreadable)
    assert (delta["added_roles"], delta["missing_roles"]) == ([], [])
    assert [(u["change"], u["role"]) for u in delta["unverified"]] == [
        ("added_roles", "admins"),
        ("missing_roles", "readers"),
    ]
    assert not has_drift(delta)

"""Catalog.finalize computes each role's inherited capabilities once (#16 part 2: no graph walk per account).

The oracle is the walk per account finalize used to do; random role graphs (cycles, diamonds,
self-grants, dangling names) must give the same effective capabilities and superuser flags.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from accountsync.adapters import base
from accountsync.adapters.base import INHERITABLE_CAPABILITIES, AccountRecord, Catalog, RoleGrant

CAPS = ["SUPERUSER", "GRANT_ADMIN", "CREATE_DB", "LOCKED"]


def oracle(accounts: list[AccountRecord]) -> dict[str, set[str]]:
    by_name: dict[str, AccountRecord] = {}
    for acc in accounts:
        if acc.kind == "role":
            by_name.setdefault(acc.username, acc)
    for acc in accounts:
        by_name[acc.identity] = acc
    out = {}
    for acc in accounts:
        inherited: set[str] = set()
        seen = {acc.identity}
        stack = [r.role for r in acc.roles]
        while stack:
            role = by_name.get(stack.pop())
            if role is None or role.identity in seen:
                continue
            seen.add(role.identity)
            inherited |= role.capabilities & INHERITABLE_CAPABILITIES
            stack.extend(r.role for r in role.roles)
        out[acc.identity] = set(acc.capabilities) | inherited
    return out


@st.composite
def graphs(draw) -> list[AccountRecord]:
    n = draw(st.integers(1, 12))
    names = [f"r{i}" for i in range(n)]
    accounts = []
    for name in names:
        roles = draw(st.lists(st.sampled_from([*names, "missing"]), max_size=4))
        accounts.append(
            AccountRecord(
                identity=name,
                username=name,
                kind=draw(st.sampled_from(["role", "user"])),
                capabilities=set(draw(st.lists(st.sampled_from(CAPS), max_size=2))),
                roles=[RoleGrant(r) for r in roles],
            )
        )
    return accounts


@settings(max_examples=300, deadline=None)
@given(graphs())
def test_memoised_closures_equal_the_walk_per_account(accounts: list[AccountRecord]) -> None:
    expected = oracle(accounts)
    catalog = Catalog(accounts=accounts).finalize()
    assert {a.identity: a.effective_capabilities for a in catalog.accounts} == expected
    assert all(a.is_superuser == ("SUPERUSER" in expected[a.identity]) for a in catalog.accounts)


def test_each_component_is_closed_once_for_thousands_of_accounts(monkeypatch) -> None:
    closed: list[list[str]] = []
    original = base._RoleGraph._add_component

    def counting(self, members):
        closed.append(members)
        return original(self, members)

    monkeypatch.setattr(base._RoleGraph, "_add_component", counting)
    roles = [
        AccountRecord(identity=f"role{i}", username=f"role{i}", kind="role", capabilities={"CREATE_DB"} if i else set())
        for i in range(20)
    ]
    roles[0].roles = [RoleGrant("role1")]  # a chain: role0 -> role1
    users = [AccountRecord(identity=f"u{i}", username=f"u{i}", roles=[RoleGrant(f"role{i % 20}")]) for i in range(5000)]
    catalog = Catalog(accounts=[*roles, *users]).finalize()
    assert len(closed) == 5020  # one component per account, each closed exactly once
    assert all("CREATE_DB" in u.effective_capabilities for u in catalog.accounts if u.identity.startswith("u"))


def test_an_escalation_route_is_named_by_its_shortest_role_path() -> None:
    files = AccountRecord(
        identity="pg_read_server_files",
        username="pg_read_server_files",
        kind="role",
        capabilities={"SUPERUSER"},
        capability_reasons={"SUPERUSER": ["reads server files"]},
    )
    ops = AccountRecord(identity="ops", username="ops", kind="role", roles=[RoleGrant("pg_read_server_files")])
    eve = AccountRecord(identity="eve", username="eve", roles=[RoleGrant("ops"), RoleGrant("pg_read_server_files")])
    dan = AccountRecord(identity="dan", username="dan", roles=[RoleGrant("ops")])
    catalog = Catalog(accounts=[files, ops, eve, dan]).finalize()
    reasons = {a.identity: a.attributes.get("capability_reasons") for a in catalog.accounts}
    assert reasons["eve"] == {"SUPERUSER": ["via role pg_read_server_files (reads server files)"]}
    assert reasons["dan"] == {"SUPERUSER": ["via role ops → pg_read_server_files (reads server files)"]}
    assert reasons["pg_read_server_files"] == {"SUPERUSER": ["reads server files"]}

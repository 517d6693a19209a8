"""Effective access: for every account, what it can do through its roles, and by which path.

Why a pure module: the snapshot stores what each account was granted (its own privileges and
the roles it holds); what it can really *do* follows from the role graph and each family's rules
for when a role is in force. This module works that out from a `Catalog` alone (no ORM, no I/O),
so the apply, the account page and the tests all get the same answer from the same rows.

The result, per account identity, is a list of `EffectiveGrant`: scope · privilege · via direct
or a role path (`("app_rw", "readers")`: the account holds app_rw, which holds readers, which
was granted the privilege), and `active`: in force at login without SET ROLE (True) or only
reachable with SET ROLE / by enabling a non-default role (False). What is neither (a PostgreSQL
16 membership with INHERIT FALSE and SET FALSE) is not listed: the account cannot use it.

Set-based: every role's closure (all it gives, with the best paths) is computed once, in one
pass over the role graph's strongly connected components, sinks first, and reused by every
account and role holding it. An account's own list is then one merge of its direct privileges
with the closures of the roles it holds: never a walk of the graph per account. Cycles (which
the servers forbid, but a catalog may still show) are handled by computing the closures of one
cycle's roles together. See docs/effective-access.md for every family's rules and sources.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from accountsync.adapters.base import AccountRecord, Catalog, RoleGrant
from accountsync.adapters.sqlserver import ImplicitMemberships
from config.scopes import split_scope

FAMILIES = ("mysql", "postgresql", "sqlserver", "oracle")
_ALIASES = {"mariadb": "mysql"}

Key = tuple[str, str, str]  # (scope, PRIVILEGE, EFFECT)
Path = tuple[str, ...]

# --- the result ----------------------------------------------------------------------------


@dataclass(frozen=True)
class EffectiveGrant:
    """One thing an account can do, and how it gets it.

    `via` is () for the account's own grant, else the role path from the account outward, each
    element a role's identity (as `RoleGrant.role` names it: `app_rw` on PostgreSQL,
    `'app_rw'@'%'` on MySQL, `sales::reporting` for a SQL Server database role). `active` is
    False when the privilege is only reachable by SET ROLE (or, on Oracle, by enabling a
    non-default role).
    """

    scope: str
    privilege: str
    grantable: bool = False
    effect: str = "GRANT"
    via: Path = ()
    active: bool = True

    @property
    def direct(self) -> bool:
        return not self.via

    def as_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "privilege": self.privilege,
            "grantable": self.grantable,
            "effect": self.effect,
            "via": list(self.via),
            "active": self.active,
        }

    def label(self) -> str:
        """`scope · privilege · via direct | a → b`, as the account page shows it."""
        how = "direct" if not self.via else " → ".join(self.via)
        privilege = self.privilege if self.effect == "GRANT" else f"{self.effect} {self.privilege}"
        return f"{self.scope} · {privilege} · via {how}" + ("" if self.active else " (SET ROLE)")


# --- fixed roles' implied permissions (SQL Server) -------------------------------------------
# Source: "Permissions of Fixed Server Roles" / "Server-level roles" and "Permissions of Fixed
# Database Roles" / "Database-level roles" (Microsoft Learn). These permissions are in no
# catalog view, so the fixed role is given them here; a member's path ends in the role.
# Server fixed roles are accounts (kind role, attribute fixed_role); database fixed roles are
# not, the adapter records membership as the privilege `ROLE DB_X` on `database:<db>`, and the
# path names them `<db>::db_x`. SQL Server 2022's ##MS_...## roles need no table: their
# permissions are rows of sys.server_permissions, which the adapter already reads.

SERVER_FIXED_ROLES: dict[str, tuple[tuple[str, bool], ...]] = {
    "sysadmin": (("CONTROL SERVER", True),),
    "serveradmin": (
        ("ALTER ANY ENDPOINT", False),
        ("ALTER RESOURCES", False),
        ("ALTER SERVER STATE", False),
        ("ALTER SETTINGS", False),
        ("SHUTDOWN", False),
        ("VIEW SERVER STATE", False),
    ),
    "securityadmin": (("ALTER ANY LOGIN", False),),
    "processadmin": (("ALTER ANY CONNECTION", False), ("ALTER SERVER STATE", False)),
    "setupadmin": (("ALTER ANY LINKED SERVER", False),),
    "bulkadmin": (("ADMINISTER BULK OPERATIONS", False),),
    "diskadmin": (("ALTER RESOURCES", False),),
    "dbcreator": (("CREATE ANY DATABASE", False),),
}

_DDLADMIN = (
    "ALTER ANY ASSEMBLY", "ALTER ANY ASYMMETRIC KEY", "ALTER ANY CERTIFICATE", "ALTER ANY CONTRACT",
    "ALTER ANY DATABASE DDL TRIGGER", "ALTER ANY DATABASE EVENT NOTIFICATION", "ALTER ANY DATASPACE",
    "ALTER ANY FULLTEXT CATALOG", "ALTER ANY MESSAGE TYPE", "ALTER ANY REMOTE SERVICE BINDING", "ALTER ANY ROUTE",
    "ALTER ANY SCHEMA", "ALTER ANY SERVICE", "ALTER ANY SYMMETRIC KEY", "CHECKPOINT", "CREATE AGGREGATE",
    "CREATE DEFAULT", "CREATE FUNCTION", "CREATE PROCEDURE", "CREATE QUEUE", "CREATE RULE", "CREATE SYNONYM",
    "CREATE TABLE", "CREATE TYPE", "CREATE VIEW", "CREATE XML SCHEMA COLLECTION", "REFERENCES",
)  # fmt: skip


def _granted(*privileges: str, grantable: bool = False, effect: str = "GRANT") -> tuple[tuple[str, bool, str], ...]:
    return tuple((p, grantable, effect) for p in privileges)


# (privilege, grantable, effect) on the role's database
DATABASE_FIXED_ROLES: dict[str, tuple[tuple[str, bool, str], ...]] = {
    "db_owner": _granted("CONTROL", grantable=True),
    "db_securityadmin": _granted("ALTER ANY APPLICATION ROLE", "ALTER ANY ROLE", "CREATE SCHEMA", "VIEW DEFINITION"),
    "db_accessadmin": _granted("ALTER ANY USER", "CREATE SCHEMA") + _granted("CONNECT", grantable=True),
    "db_backupoperator": _granted("BACKUP DATABASE", "BACKUP LOG", "CHECKPOINT"),
    "db_ddladmin": _granted(*_DDLADMIN),
    "db_datareader": _granted("SELECT"),
    "db_datawriter": _granted("DELETE", "INSERT", "UPDATE"),
    "db_denydatareader": _granted("SELECT", effect="DENY"),
    "db_denydatawriter": _granted("DELETE", "INSERT", "UPDATE", effect="DENY"),
}

_LEVEL_DEPTH = {"database": 1, "schema": 2, "object": 3, "column": 4}


# --- the graph -----------------------------------------------------------------------------


@dataclass
class _Node:
    """A role (or pseudo-role) as the closure sees it: its own grants and its outgoing memberships.

    Edge flags, per membership: `inherit` (the role's privileges are in force whenever the
    holder's are) and `settable` (the holder may SET ROLE to it).
    """

    identity: str
    own: dict[Key, bool]  # key -> grantable
    edges: list[tuple[str, bool, bool]]  # (role identity, inherit, settable), sorted by identity


# One closure entry: (best in-force path or None, its grantable, best reachable path or None, its grantable).
# "In force" (I): every membership on the path inherits. "Reachable" (S): some prefix of the path is
# settable memberships (SET ROLE to its end) and the rest inherits; in-force paths are reachable too.
_Entry = tuple[Path | None, bool, Path | None, bool]


def _better(new: Path, old: Path | None) -> bool:
    return old is None or len(new) < len(old) or (len(new) == len(old) and new < old)


class _Best:
    """Per key: the best in-force path and the best reachable path, with grantable OR-ed over each set."""

    __slots__ = ("table",)

    def __init__(self) -> None:
        self.table: dict[Key, list[Any]] = {}

    def offer(self, key: Key, path: Path, grantable: bool, in_force: bool, reachable: bool) -> None:
        row = self.table.get(key)
        if row is None:
            self.table[key] = [
                path if in_force else None,
                grantable and in_force,
                path if reachable else None,
                grantable and reachable,
            ]
            return
        if in_force:
            if _better(path, row[0]):
                row[0] = path
            row[1] = row[1] or grantable
        if reachable:
            if _better(path, row[2]):
                row[2] = path
            row[3] = row[3] or grantable

    def entries(self) -> dict[Key, _Entry]:
        return {k: (r[0], r[1], r[2], r[3]) for k, r in self.table.items() if r[0] is not None or r[2] is not None}


class _Rules:
    """One family's rules: membership flags, implicit memberships (PUBLIC, mandatory roles), pseudo-roles."""

    def __init__(
        self,
        catalog: Catalog,
        family: str,
        settable: Mapping[tuple[str, str], bool] | None,
        resolve: Mapping[str, str],
        include_public: bool = True,
    ) -> None:
        self.family = family
        self.include_public = include_public
        self.settable = settable
        self.details = catalog.details or {}
        self.resolve = resolve
        self.activate_all = bool(self.details.get("activate_all_roles_on_login"))
        self.activate_mandatory = bool(self.details.get("activate_mandatory_roles"))
        self.public_identity = self._public_identity(catalog)
        mandatory = (self.details.get("mandatory_roles") or []) if family == "mysql" else []
        self.mandatory = sorted({resolve[m] for m in mandatory if m in resolve})
        # SQL Server: server public, each database's public, guest (accountsync/adapters/sqlserver.py)
        self.sqlserver = ImplicitMemberships(catalog.accounts) if family == "sqlserver" else None

    def _public_identity(self, catalog: Catalog) -> str | None:
        if self.family == "oracle":
            # the server facts' full list, or (stored snapshots without facts) the pseudo-role's own snapshot
            if self.oracle_public_grants() is not None:
                return "PUBLIC"
            pseudo = any(acc.identity == "PUBLIC" and acc.kind == "role" for acc in catalog.accounts)
            return "PUBLIC" if pseudo else None
        for acc in catalog.accounts:
            if acc.kind != "role":
                continue
            if self.family == "postgresql" and acc.identity == "public":
                return acc.identity
            if self.family == "sqlserver" and acc.identity == "public":
                return acc.identity
            if self.family == "mysql" and acc.username == "PUBLIC" and acc.host is None:  # MariaDB 10.11+
                return acc.identity
        return None

    def oracle_public_grants(self) -> Mapping[str, Any] | None:
        """Oracle's PUBLIC grants in full (details["public_grants"]), or None when the details lack them.

        A sync record's details hold only a reference there (``{"count", "facts_id"}``,
        accountsync/facts.py); that is no list of grants, so it counts as absent.
        """
        public = self.details.get("public_grants")
        if not isinstance(public, Mapping) or not public or "facts_id" in public:
            return None
        return public

    def _pg_settable(self, member: str, role: str) -> bool:
        if self.settable is None:
            return True  # before 16 any member may SET ROLE; on 16+ SET TRUE is the default
        return bool(self.settable.get((member, role), True))

    def inner(self, holder: str, grant: RoleGrant, role: str) -> tuple[bool, bool]:
        """Flags of a membership held by a role, as seen by whoever has that role in force."""
        if self.family == "postgresql":
            return bool(grant.default), self._pg_settable(holder, role)
        # MySQL, MariaDB, Oracle: a role's roles are in force whenever it is; SQL Server has no SET ROLE
        return True, False

    def first(self, acc: AccountRecord, grant: RoleGrant, role: str) -> tuple[bool, bool]:
        """Flags of a membership held by the account whose access is listed (its session's first hop)."""
        if self.family in ("mysql", "oracle") and acc.kind != "role":
            return bool(grant.default) or (self.family == "mysql" and self.activate_all), True
        return self.inner(acc.identity, grant, role)

    def implicit(self, acc: AccountRecord) -> list[tuple[str, bool, bool]]:
        """Memberships no RoleGrant shows: PUBLIC, and MySQL's mandatory roles."""
        if self.sqlserver is not None:
            return [(role, True, False) for role in self.sqlserver.roles_of(acc)] if self.include_public else []
        edges: list[tuple[str, bool, bool]] = []
        public = self.public_identity
        if public is not None and acc.identity != public and self.include_public:
            wanted = {
                "postgresql": True,  # has_*_privilege: every role, login or not, holds what PUBLIC holds
                "sqlserver": acc.kind == "login",  # every login is a member of the server role public
                "oracle": acc.kind == "user",
                "mysql": acc.kind == "user",
            }[self.family]
            if wanted:
                # Oracle: a role granted to PUBLIC but not as a default role can still be SET
                edges.append((public, True, self.family == "oracle"))
        if self.mandatory and acc.kind == "user":
            on = self.activate_all or self.activate_mandatory
            edges += [(role, on, True) for role in self.mandatory if role != acc.identity]
        return edges


def _own(privileges: Iterable[Any]) -> dict[Key, bool]:
    own: dict[Key, bool] = {}
    for p in privileges:
        key = (p.scope, p.privilege.upper(), p.effect.upper())
        own[key] = own.get(key, False) or bool(p.grantable)
    return own


def _resolver(catalog: Catalog) -> dict[str, str]:
    """Catalog.finalize's lookup: a role by its identity, or a role account by its username."""
    by_name: dict[str, str] = {}
    for acc in catalog.accounts:
        if acc.kind == "role":
            by_name.setdefault(acc.username, acc.identity)
    for acc in catalog.accounts:
        by_name[acc.identity] = acc.identity
    return by_name


class _Graph:
    """Nodes for every account and pseudo-role, then closures for the roles someone holds."""

    def __init__(self, catalog: Catalog, rules: _Rules) -> None:
        self.rules = rules
        self.nodes: dict[str, _Node] = {}
        self.first_edges: dict[str, list[tuple[str, bool, bool]]] = {}
        for acc in catalog.accounts:
            self._add_account(acc)
        public = rules.oracle_public_grants() if rules.family == "oracle" else None
        if public is not None:
            self._add_oracle_public(public)
        self.closures: dict[str, dict[Key, _Entry]] = {}
        self.reaches: dict[str, frozenset[str]] = {}
        self.closures_computed = 0

    def _add_account(self, acc: AccountRecord) -> None:
        rules = self.rules
        own = _own(acc.privileges)
        edges: list[tuple[str, bool, bool]] = []
        first: list[tuple[str, bool, bool]] = []
        for grant in acc.roles:
            role = rules.resolve.get(grant.role)
            if role is None or role == acc.identity:
                continue  # a role not in the catalog (e.g. an Oracle-maintained one left out) is not followed
            edges.append((role, *rules.inner(acc.identity, grant, role)))
            first.append((role, *rules.first(acc, grant, role)))
        if rules.family == "sqlserver":
            fixed = self._sqlserver_fixed(acc, own)
            edges += fixed
            first += fixed
        first += rules.implicit(acc)
        self.nodes[acc.identity] = _Node(acc.identity, own, sorted(set(edges)))
        self.first_edges[acc.identity] = sorted(set(first))

    def _sqlserver_fixed(self, acc: AccountRecord, own: dict[Key, bool]) -> list[tuple[str, bool, bool]]:
        """A server fixed role gets its implied permissions; `ROLE DB_X` becomes a membership of `<db>::db_x`."""
        if acc.kind == "role" and acc.attributes.get("fixed_role"):
            for privilege, grantable in SERVER_FIXED_ROLES.get(acc.username, ()):
                key = ("global", privilege, "GRANT")
                own[key] = own.get(key, False) or grantable
        edges = []
        for scope, privilege, effect in list(own):
            role_name = privilege[5:].lower() if privilege.startswith("ROLE ") and effect == "GRANT" else ""
            if role_name not in DATABASE_FIXED_ROLES or not scope.startswith("database:"):
                continue
            db = split_scope(scope)[1][0]
            pseudo = f"{db}::{role_name}"
            if pseudo not in self.nodes:
                implied = {(scope, p, e): g for p, g, e in DATABASE_FIXED_ROLES[role_name]}
                self.nodes[pseudo] = _Node(pseudo, implied, [])
            edges.append((pseudo, True, False))
        return edges

    def _add_oracle_public(self, public: Mapping[str, Any]) -> None:
        """PUBLIC is no account on Oracle: the adapter keeps its grants in details["public_grants"]."""
        own: dict[Key, bool] = {}
        for p in public.get("privileges", ()):
            key = (p["scope"], str(p["privilege"]).upper(), str(p.get("effect", "GRANT")).upper())
            own[key] = own.get(key, False) or bool(p.get("grantable"))
        edges = []
        for r in public.get("roles", ()):
            role = self.rules.resolve.get(r["role"])
            if role is not None:
                edges.append((role, bool(r.get("default", True)), True))
        self.nodes["PUBLIC"] = _Node("PUBLIC", own, sorted(set(edges)))

    # --- closures ---------------------------------------------------------------------------

    def compute_closures(self) -> None:
        """Every held role's closure, once: SCCs in reverse topological order (Tarjan), sinks first."""
        held = sorted({t for edges in self.first_edges.values() for t, _i, _s in edges})
        for component in _sccs(held, lambda v: [t for t, _i, _s in self.nodes[v].edges]):
            members = set(component)
            for role in sorted(component):
                self.closures[role], self.reaches[role] = self._closure(role, members)
                self.closures_computed += 1

    def _closure(self, start: str, component: set[str]) -> tuple[dict[Key, _Entry], frozenset[str]]:
        """What `start` gives when it is in force: a breadth-first walk inside its own SCC only.

        Outside the SCC the successors' closures are already known and are reused. Walk states
        are (in force, reachable, all-settable-so-far); a state at a node that an earlier (so
        shorter, or as short and sorted first) state there dominates is dropped, which keeps
        the walk finite on cycles and the paths simple.
        """
        best = _Best()
        reach: set[str] = {start}
        seen: dict[str, list[tuple[bool, bool, bool]]] = {start: [(True, True, True)]}
        queue: deque[tuple[str, Path, bool, bool, bool]] = deque([(start, (start,), True, True, True)])
        while queue:
            node_id, path, in_force, reachable, settable = queue.popleft()
            node = self.nodes[node_id]
            for key, grantable in node.own.items():
                best.offer(key, path, grantable, in_force, reachable)
            for target, inherit, can_set in node.edges:
                if target in component:
                    i2 = in_force and inherit
                    s2 = (reachable and inherit) or (settable and can_set)
                    t2 = settable and can_set
                    if not s2:
                        continue
                    states = seen.setdefault(target, [])
                    if any(a >= i2 and b >= s2 and c >= t2 for a, b, c in states):
                        continue
                    states.append((i2, s2, t2))
                    reach.add(target)
                    queue.append((target, (*path, target), i2, s2, t2))
                else:
                    reach |= self.reaches[target]
                    _extend(best, path, in_force, reachable, settable, inherit, can_set, self.closures[target])
        return best.entries(), frozenset(reach)

    # --- per account --------------------------------------------------------------------------

    def listing(self, identity: str, shared: _Shared) -> dict[Key, tuple[_Entry, EffectiveGrant | None]]:
        """The account's direct grants merged with the (shared) contribution of each role it holds.

        Most keys come from one source only: they keep the contribution's ready-made grant; a key
        offered twice is merged (`_merge`) and its grant is made afterwards.
        """
        best: dict[Key, tuple[_Entry, EffectiveGrant | None]] = {
            key: (((), grantable, (), grantable), None) for key, grantable in self.nodes[identity].own.items()
        }
        get = best.get
        for edge in self.first_edges[identity]:
            part = shared.parts.get(edge)
            if part is None:
                part = shared.parts[edge] = shared.contribution(self.closures[edge[0]], edge[1], edge[2])
            for key, entry, grant in part:
                old = get(key)
                best[key] = (entry, grant) if old is None else (_merge(old[0], entry), None)
        return best

    def holds(self, identity: str, role: str) -> bool:
        return any(role in self.reaches[t] for t, inherit, _s in self.first_edges[identity] if inherit)


def _extend(
    best: _Best,
    prefix: Path,
    in_force: bool,
    reachable: bool,
    settable: bool,
    inherit: bool,
    can_set: bool,
    closure: Mapping[Key, _Entry],
) -> None:
    """Offer a role's closure, reached by `prefix` in the given walk state through one membership."""
    for key, (ipath, igrant, spath, sgrant) in closure.items():
        if ipath is not None and inherit and reachable:
            best.offer(key, prefix + ipath, igrant, in_force, True)
        if spath is not None and can_set and settable:
            best.offer(key, prefix + spath, sgrant, False, True)


def _pick(a: Path | None, b: Path | None) -> Path | None:
    """The better of two optional paths (shorter, then sorted first)."""
    if a is None:
        return b
    if b is None:
        return a
    return b if _better(b, a) else a


def _merge(a: _Entry, b: _Entry) -> _Entry:
    """Two sources of one key: the best path of each kind, grantable OR-ed within each kind."""
    return (_pick(a[0], b[0]), a[1] or b[1], _pick(a[2], b[2]), a[3] or b[3])


class _Shared:
    """What is the same for every account: each membership's contribution and the grant objects."""

    def __init__(self) -> None:
        self.parts: dict[tuple[str, bool, bool], list[tuple[Key, _Entry, EffectiveGrant]]] = {}
        self.interned: dict[tuple[Any, ...], EffectiveGrant] = {}

    def grant(self, key: Key, entry: _Entry) -> EffectiveGrant:
        """The entry as the account sees it: in force if any path is, else reachable by SET ROLE."""
        ipath, igrant, spath, sgrant = entry
        fields = (*key, ipath, igrant, True) if ipath is not None else (*key, spath, sgrant, False)
        grant = self.interned.get(fields)
        if grant is None:
            scope, privilege, effect, via, grantable, active = fields
            grant = self.interned[fields] = EffectiveGrant(scope, privilege, grantable, effect, via, active)
        return grant

    def contribution(
        self, closure: Mapping[Key, _Entry], inherit: bool, can_set: bool
    ) -> list[tuple[Key, _Entry, EffectiveGrant]]:
        """What holding a role through one membership offers an account (the same for every holder)."""
        out = []
        for key, (ipath, igrant, spath, sgrant) in closure.items():
            in_force = ipath if inherit else None
            reach = _pick(in_force, spath if can_set else None)
            if reach is None:
                continue
            entry = (in_force, inherit and igrant, reach, (inherit and igrant) or (can_set and sgrant))
            out.append((key, entry, self.grant(key, entry)))
        return out


def _sccs(roots: Iterable[str], successors: Any) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively; each comes after all it can reach."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    for root in roots:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(successors(root)))]
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(successors(w))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    u = work[-1][0]
                    low[u] = min(low[u], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    out.append(component)
    return out


# --- DENY (SQL Server) --------------------------------------------------------------------------


def _deny_covers(deny_scope: str, grant_scope: str, common_criteria: bool) -> bool:
    """Whether a DENY on `deny_scope` takes a GRANT of the same permission on `grant_scope` away.

    The securable hierarchy inside a database: database ⊃ schema ⊃ object ⊃ column. A table-level
    DENY does not beat a column-level GRANT (kept by SQL Server for backward compatibility) unless
    common criteria compliance is enabled.
    """
    if deny_scope == grant_scope:
        return True
    d_level, d_parts = split_scope(deny_scope)
    g_level, g_parts = split_scope(grant_scope)
    if d_level not in _LEVEL_DEPTH or g_level not in _LEVEL_DEPTH or _LEVEL_DEPTH[g_level] <= _LEVEL_DEPTH[d_level]:
        return False
    if d_level == "object" and g_level == "column" and not common_criteria:
        return False
    return g_parts[: len(d_parts)] == d_parts


def _apply_denies(grants: list[EffectiveGrant], common_criteria: bool) -> list[EffectiveGrant]:
    denies: dict[str, list[str]] = {}
    for g in grants:
        if g.effect == "DENY" and g.active:
            denies.setdefault(g.privilege, []).append(g.scope)
    if not denies:
        return grants
    return [
        g
        for g in grants
        if g.effect == "DENY"
        or not any(_deny_covers(scope, g.scope, common_criteria) for scope in denies.get(g.privilege, ()))
    ]


# --- OWNER (PostgreSQL) --------------------------------------------------------------------------


def _owner_grant_options(grants: list[EffectiveGrant]) -> list[EffectiveGrant]:
    """Whoever has an object's OWNER in force may grant every privilege on it (and its columns).

    Why: the owner's implicit rights are in no ACL (the adapter records them as the privilege
    OWNER); its ACL entries carry no grant option, yet PostgreSQL's aclmask gives the owner, and
    every role that inherits from it, all grant options on the object.
    """
    owned = {g.scope for g in grants if g.privilege == "OWNER" and g.active}
    if not owned:
        return grants
    owned_parts = [split_scope(scope) for scope in owned]

    def is_owned(scope: str) -> bool:
        if scope in owned:
            return True
        level, parts = split_scope(scope)
        return level == "column" and any(lvl == "object" and parts[:-1] == o for lvl, o in owned_parts)

    return [
        replace(g, grantable=True) if g.active and not g.grantable and g.effect == "GRANT" and is_owned(g.scope) else g
        for g in grants
    ]


# --- the entry point ----------------------------------------------------------------------------


def effective_access(
    catalog: Catalog,
    *,
    family: str,
    settable: Mapping[tuple[str, str], bool] | None = None,
    include_public: bool = True,
    stats: dict[str, int] | None = None,
    only: Iterable[str] | None = None,
) -> dict[str, list[EffectiveGrant]]:
    """Every account's effective grants, keyed by identity, each list sorted by (scope, privilege, effect).

    `family` is the instance's db_type (`mysql` covers MariaDB: `catalog.details["flavor"]`).
    `settable` (PostgreSQL 16+) maps (member identity, role identity) to the membership's
    set_option; a missing pair counts as settable (the server's default, and the only
    behaviour before 16). `include_public=False` leaves PUBLIC's grants out of every other
    account's list (PUBLIC's own list keeps them): on PostgreSQL PUBLIC holds EXECUTE on every
    function and CONNECT on most databases, which would repeat in every list; a caller can show
    them once, as the snapshot does with `details["public_grants"]`. `stats`, when given,
    receives `closures` (how many role closures were computed: one per role anyone holds) and
    `accounts`. `only` limits the answer to those identities (one account's page); the closures
    are still computed once each.

    One entry per (scope, privilege, effect): a direct grant beats any role path, an in-force
    path beats a SET ROLE one, then the shortest path, ties broken by sorting; `grantable` is
    True when any path of the kept kind (in force, else reachable) is grantable. On SQL Server a
    DENY in force takes away every GRANT of that permission it covers (the GRANT entry is
    dropped, the DENY stays), except for members of sysadmin, whom no DENY restricts. On
    PostgreSQL, an OWNER in force makes every in-force grant on that object (and its columns)
    grantable, as the owner's implicit grant options do.
    """
    family = _ALIASES.get(family, family)
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
    rules = _Rules(catalog, family, settable, _resolver(catalog), include_public)
    graph = _Graph(catalog, rules)
    graph.compute_closures()
    common_criteria = bool(rules.details.get("common_criteria_compliance_enabled"))
    sysadmin = {a.identity for a in catalog.accounts if a.username == "sysadmin" and a.kind == "role"}

    shared = _Shared()
    result: dict[str, list[EffectiveGrant]] = {}
    wanted = set(only) if only is not None else None
    for acc in catalog.accounts:
        if wanted is not None and acc.identity not in wanted:
            continue
        best = graph.listing(acc.identity, shared)
        grants = [
            grant if grant is not None else shared.grant(key, entry)
            for key in sorted(best)
            for entry, grant in (best[key],)
        ]
        if family == "sqlserver" and not (
            acc.identity in sysadmin or any(graph.holds(acc.identity, r) for r in sysadmin)
        ):
            grants = _apply_denies(grants, common_criteria)
        if family == "postgresql":
            grants = _owner_grant_options(grants)
        result[acc.identity] = grants
    if stats is not None:
        stats["closures"] = graph.closures_computed
        stats["accounts"] = len(result)
    return result


def active_grants(grants: Iterable[EffectiveGrant]) -> list[EffectiveGrant]:
    """The grants in force at login (without SET ROLE)."""
    return [g for g in grants if g.active]

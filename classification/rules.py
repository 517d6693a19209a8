"""The classification rule language: validate a JSON rule, then compile it into a set-based evaluator.

Why compiled to set operations: a rule is evaluated over every active account of the fleet
(100,000 and more) after each rule change. Each leaf is answered once for the whole population
from inverted indexes (capability → accounts, role → accounts, privilege key → accounts), the
patterns are matched against the *distinct* values only (a fleet has far fewer distinct roles and
privilege keys than accounts), and ``all``/``any``/``not`` are set intersections, unions and
differences. No leaf walks the accounts one by one except the few attribute tests, which are a
single comprehension. The language is documented, with examples, in docs/classification.md.

Validation reports the path of the bad part (``rule.all[2].has_privilege.scope: unknown level
'tabel'``) so the person editing the rule sees where to look.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from django.utils.translation import gettext as _

from config.scopes import SCOPE_LEVELS, split_scope

FAMILIES = ("mysql", "postgresql", "sqlserver", "oracle")
ENVIRONMENTS = ("production", "staging", "development", "testing")
KINDS = ("user", "role", "login")
ATTRIBUTE_OPS = ("eq", "ne", "in", "not_in", "matches", "exists", "lt", "le", "gt", "ge")
MAX_DEPTH = 16
KEY_SEP = "|"

OPERATORS = (
    "all",
    "any",
    "not",
    "has_capability",
    "has_role",
    "has_privilege",
    "attribute",
    "locked",
    "expired",
    "kind",
    "name",
    "host",
    "environment",
    "tag",
    "db_type",
    "is_held",
)


class RuleError(ValueError):
    """A rule that does not parse; ``path`` points at the bad part (``rule.all[2].has_privilege.scope``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


# --- facts: what a compiled rule reads ---------------------------------------------------------

# The per-account fields an instance's index holds, each as [[value, [account ids]], ...].
INDEXED = ("capabilities", "roles", "keys", "username", "host", "kind", "is_locked", "is_held")
LISTED = ("capabilities", "roles", "keys")


@dataclass
class Subject:
    """One account as the rules see it (its facts plus its account row); `facts_index` indexes many."""

    account_id: int
    username: str
    host: str | None
    kind: str
    is_locked: bool
    capabilities: Sequence[str] = ()
    roles: Sequence[str] = ()
    keys: Sequence[str] = ()
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def is_held(self) -> bool:
        return bool(self.attributes.get("is_held"))


def _hashed(value: Any) -> Any:
    """A dict key for an attribute value; by type too, so `true` and `1` (equal in Python) stay apart."""
    if isinstance(value, (dict, list)):
        return ("j", json.dumps(value, sort_keys=True))
    return ("v", type(value).__name__, value)


def facts_index(subjects: Iterable[Subject]) -> dict[str, Any]:
    """One instance's accounts as inverted indexes: what `InstanceFacts.index` stores (JSON-ready).

    Why inverted and per instance: evaluating a rule then reads a few dozen rows, not one per
    account, and every leaf is a lookup of distinct values (docs/classification.md).
    """
    plain: dict[str, dict[Any, tuple[Any, list[int]]]] = {name: {} for name in INDEXED}
    attributes: dict[str, dict[Any, tuple[Any, list[int]]]] = {}
    ids: list[int] = []
    for s in subjects:
        aid = s.account_id
        ids.append(aid)
        for name in INDEXED:
            values = getattr(s, name)
            for value in values if name in LISTED else (values,):
                key = ("v", type(value).__name__, value)
                entry = plain[name].get(key)
                if entry is None:
                    plain[name][key] = (value, [aid])
                else:
                    entry[1].append(aid)
        for name, value in s.attributes.items():
            bucket = attributes.setdefault(name, {})
            key = _hashed(value)
            entry = bucket.get(key)
            if entry is None:
                bucket[key] = (value, [aid])
            else:
                entry[1].append(aid)
    index: dict[str, Any] = {"ids": ids}
    for name, entries in plain.items():
        index[name] = [[value, aids] for value, aids in entries.values()]
    index["attributes"] = {name: [[value, aids] for value, aids in b.values()] for name, b in attributes.items()}
    return index


@dataclass
class InstancePart:
    """One instance's slice of the population: its own attributes and its accounts' index."""

    instance_id: int
    db_type: str
    environment: str
    tags: frozenset[str]
    index: dict[str, Any]


@dataclass
class Population:
    """The accounts rules are evaluated over; the leaves' merged indexes are built lazily and shared."""

    parts: list[InstancePart]
    _all: set[int] | None = None
    _indexes: dict[str, dict[Any, set[int]]] = field(default_factory=dict)
    _values: dict[str, dict[Any, tuple[Any, set[int]]]] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        subjects: Iterable[Subject],
        *,
        instance_id: int = 0,
        db_type: str = "mysql",
        environment: str = "",
        tags=(),
    ) -> Population:
        """A population of one instance (tests, previews of a hand-built set)."""
        return cls(parts=[InstancePart(instance_id, db_type, environment, frozenset(tags), facts_index(subjects))])

    @property
    def all_ids(self) -> set[int]:
        if self._all is None:
            self._all = set().union(*(part.index["ids"] for part in self.parts)) if self.parts else set()
        return self._all

    def instance_ids(self, instance_id: int) -> set[int]:
        return self.index("instance_id").get(instance_id, set())

    def index(self, name: str) -> dict[Any, set[int]]:
        """Value → account ids, over every instance: an account field, or `db_type`/`environment`/`instance_id`."""
        found = self._indexes.get(name)
        if found is not None:
            return found
        found = {}
        if name in ("db_type", "environment", "instance_id"):
            for part in self.parts:
                found.setdefault(getattr(part, name), set()).update(part.index["ids"])
        else:
            for part in self.parts:
                for value, aids in part.index.get(name) or ():
                    bucket = found.get(value)
                    if bucket is None:
                        found[value] = set(aids)
                    else:
                        bucket.update(aids)
        self._indexes[name] = found
        return found

    def attribute_index(self, name: str) -> dict[Any, tuple[Any, set[int]]]:
        """One attribute's distinct values → (the value, account ids); accounts without it are left out."""
        found = self._values.get(name)
        if found is not None:
            return found
        found = {}
        for part in self.parts:
            for value, aids in (part.index.get("attributes") or {}).get(name) or ():
                key = _hashed(value)
                entry = found.get(key)
                if entry is None:
                    found[key] = (value, set(aids))
                else:
                    entry[1].update(aids)
        self._values[name] = found
        return found

    def tagged(self, tags: set[str]) -> set[int]:
        out: set[int] = set()
        for part in self.parts:
            if part.tags & tags:
                out.update(part.index["ids"])
        return out


Evaluator = Callable[[Population], set[int]]


def privilege_key(scope: str, privilege: str, *, grantable: bool, active: bool) -> str:
    """``scope|PRIVILEGE|flags``: ``G`` grantable, ``S`` only reachable with SET ROLE (the facts' `keys`)."""
    flags = ("G" if grantable else "") + ("" if active else "S")
    return f"{scope}{KEY_SEP}{privilege.upper()}{KEY_SEP}{flags}"


def split_key(key: str) -> tuple[str, str, str]:
    scope, privilege, flags = key.rsplit(KEY_SEP, 2)
    return scope, privilege, flags


# --- validation and compilation -----------------------------------------------------------------


def _strings(value: Any, path: str, *, upper: bool = False, choices: Iterable[str] | None = None) -> list[str]:
    """A string or a non-empty list of strings (a list means "any of")."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v.strip() for v in items):
        raise RuleError(path, _("expected a non-empty string or a non-empty list of strings"))
    items = [v.strip().upper() if upper else v.strip() for v in items]
    if choices is not None:
        allowed = tuple(choices)
        for i, v in enumerate(items):
            if v not in allowed:
                where = path if isinstance(value, str) else f"{path}[{i}]"
                raise RuleError(
                    where,
                    _("unknown value %(value)r (one of: %(allowed)s)") % {"value": v, "allowed": ", ".join(allowed)},
                )
    return items


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise RuleError(path, _("expected true or false"))
    return value


def _glob(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    """A `*`/`?` glob as a compiled regular expression (fnmatch's translation, anchored)."""
    from fnmatch import translate

    return re.compile(translate(pattern), re.IGNORECASE if ignore_case else 0)


@dataclass(frozen=True)
class ScopePattern:
    """``level:part.part`` with `*`/`?` in each part; `within` also matches every scope below it."""

    level: str
    parts: tuple[str, ...]
    within: bool

    def matches(self, scope: str) -> bool:
        level, parts = split_scope(scope)
        if self.within:
            if level not in SCOPE_LEVELS or SCOPE_LEVELS.index(level) < SCOPE_LEVELS.index(self.level):
                return False
            if self.level == "global":
                return True
            if len(parts) < len(self.parts):
                return False
        elif level != self.level or len(parts) != len(self.parts):
            return False
        return all(fnmatchcase(part, pattern) for part, pattern in zip(parts, self.parts, strict=False))


def _scope(value: Any, path: str, *, within: bool) -> ScopePattern:
    if not isinstance(value, str) or not value.strip():
        raise RuleError(path, _("expected a scope pattern such as 'database:prod_*' or 'object:sales.*.customers'"))
    text = value.strip()
    level, parts = split_scope(text) if ":" in text else (text, [])
    if level not in SCOPE_LEVELS:
        raise RuleError(
            path,
            _("unknown level %(level)r (one of: %(levels)s)") % {"level": level, "levels": ", ".join(SCOPE_LEVELS)},
        )
    if level == "global" and parts:
        raise RuleError(path, _("the global level has no parts: write 'global'"))
    if level != "global" and (not parts or any(not p for p in parts)):
        raise RuleError(path, _("%(level)s needs its parts, e.g. '%(level)s:name'") % {"level": level})
    return ScopePattern(level=level, parts=tuple(parts), within=within)


def _union_where(index: dict[Any, set[int]], test: Callable[[Any], bool]) -> set[int]:
    """Accounts under every index value `test` accepts: the patterns run over distinct values only."""
    out: set[int] = set()
    for value, ids in index.items():
        if test(value):
            out |= ids
    return out


def _compile_has_privilege(spec: Any, path: str) -> Evaluator:
    if isinstance(spec, str):
        spec = {"privilege": spec}
    if not isinstance(spec, dict):
        raise RuleError(path, _("expected an object with 'privilege' and optionally 'scope' or 'within'"))
    allowed = {"privilege", "scope", "within", "grantable", "include_set_role"}
    for key in spec:
        if key not in allowed:
            raise RuleError(
                f"{path}.{key}",
                _("unknown key (one of: %(keys)s)") % {"keys": ", ".join(sorted(allowed))},
            )
    if "privilege" not in spec:
        raise RuleError(f"{path}.privilege", _("missing: name the privilege(s), e.g. 'SELECT' or ['INSERT', 'UPDATE']"))
    privileges = set(_strings(spec["privilege"], f"{path}.privilege", upper=True))
    if "scope" in spec and "within" in spec:
        raise RuleError(path, _("give 'scope' or 'within', not both"))
    scope: ScopePattern | None = None
    if "scope" in spec:
        scope = _scope(spec["scope"], f"{path}.scope", within=False)
    elif "within" in spec:
        scope = _scope(spec["within"], f"{path}.within", within=True)
    grantable = _bool(spec["grantable"], f"{path}.grantable") if "grantable" in spec else False
    set_role = _bool(spec["include_set_role"], f"{path}.include_set_role") if "include_set_role" in spec else True

    def key_ok(key: str) -> bool:
        key_scope, privilege, flags = split_key(key)
        if privilege not in privileges and not any(fnmatchcase(privilege, p) for p in privileges):
            return False
        if grantable and "G" not in flags:
            return False
        if not set_role and "S" in flags:
            return False
        return scope is None or scope.matches(key_scope)

    return lambda pop: _union_where(pop.index("keys"), key_ok)


def _compile_attribute(spec: Any, path: str) -> Evaluator:
    if not isinstance(spec, dict):
        raise RuleError(path, _("expected an object with 'name', 'op' and 'value'"))
    for key in spec:
        if key not in ("name", "op", "value"):
            raise RuleError(f"{path}.{key}", _("unknown key (one of: name, op, value)"))
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RuleError(f"{path}.name", _("missing: name the attribute, e.g. 'auth_plugin'"))
    op = spec.get("op", "eq")
    if op not in ATTRIBUTE_OPS:
        raise RuleError(
            f"{path}.op", _("unknown operator %(op)r (one of: %(ops)s)") % {"op": op, "ops": ", ".join(ATTRIBUTE_OPS)}
        )
    if op != "exists" and "value" not in spec:
        raise RuleError(f"{path}.value", _("missing: the value to compare with"))
    value = spec.get("value")
    if op in ("in", "not_in") and not isinstance(value, list):
        raise RuleError(f"{path}.value", _("'%(op)s' needs a list") % {"op": op})
    if op == "matches" and not isinstance(value, str):
        raise RuleError(f"{path}.value", _("'matches' needs a pattern string"))
    if op == "exists" and "value" in spec and not isinstance(value, bool):
        raise RuleError(f"{path}.value", _("'exists' takes true or false"))
    if op in ("lt", "le", "gt", "ge") and (isinstance(value, bool) or not isinstance(value, (int, float, str))):
        raise RuleError(f"{path}.value", _("'%(op)s' needs a number or a date/time text") % {"op": op})
    key = name.strip()
    glob = _glob(value, ignore_case=True) if op == "matches" else None
    missing = object()

    def compare(found: Any) -> bool:
        if op == "exists":
            return (found is not missing and found is not None) == (value if isinstance(value, bool) else True)
        if found is missing:
            return op in ("ne", "not_in")
        if op == "eq":
            return _same(found, value)
        if op == "ne":
            return not _same(found, value)
        if op == "in":
            return any(_same(found, v) for v in value)
        if op == "not_in":
            return not any(_same(found, v) for v in value)
        if op == "matches":
            return found is not None and glob is not None and glob.match(str(found)) is not None
        return _ordered(found, value, op)

    def run_attribute(pop: Population) -> set[int]:
        values = pop.attribute_index(key)
        out: set[int] = set()
        for found, ids in values.values():
            if compare(found):
                out |= ids
        if compare(missing):  # ne / not_in / exists false also hold where the attribute is absent
            out |= pop.all_ids - set().union(*(ids for _v, ids in values.values()))
        return out

    return run_attribute


def _same(a: Any, b: Any) -> bool:
    """JSON equality: `true` is not `1` (Python says it is)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    return a == b


def _ordered(found: Any, value: Any, op: str) -> bool:
    """`lt`…`ge` on numbers, or on ISO date/time texts (`valid_until`, `password_last_changed`)."""
    if found is None or isinstance(found, bool):
        return False
    if isinstance(value, (int, float)):
        if not isinstance(found, (int, float)):
            return False
        left, right = found, value
    else:
        left, right = _moment(found), _moment(value)
        if left is None or right is None:
            return False
    return {"lt": left < right, "le": left <= right, "gt": left > right, "ge": left >= right}[op]


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.now().astimezone().tzinfo)


def _compile(node: Any, path: str, depth: int) -> Evaluator:
    if depth > MAX_DEPTH:
        raise RuleError(path, _("nested too deeply (at most %(n)d levels)") % {"n": MAX_DEPTH})
    if not isinstance(node, dict) or len(node) != 1:
        raise RuleError(
            path, _("expected an object with exactly one operator (one of: %(ops)s)") % {"ops": ", ".join(OPERATORS)}
        )
    ((op, arg),) = node.items()
    here = f"{path}.{op}"
    if op in ("all", "any"):
        if not isinstance(arg, list) or not arg:
            raise RuleError(here, _("expected a non-empty list of rules"))
        parts = [_compile(child, f"{here}[{i}]", depth + 1) for i, child in enumerate(arg)]
        if op == "all":

            def run_all(pop: Population) -> set[int]:
                result = parts[0](pop)
                for part in parts[1:]:
                    if not result:
                        break
                    result = result & part(pop)
                return result

            return run_all

        def run_any(pop: Population) -> set[int]:
            result: set[int] = set()
            for part in parts:
                result |= part(pop)
            return result

        return run_any
    if op == "not":
        inner = _compile(arg, here, depth + 1)
        return lambda pop: pop.all_ids - inner(pop)
    if op == "has_capability":
        caps = _strings(arg, here, upper=True)
        return lambda pop: _union_where(pop.index("capabilities"), lambda c: any(fnmatchcase(c, p) for p in caps))
    if op == "has_role":
        patterns = [_glob(p, ignore_case=True) for p in _strings(arg, here)]
        return lambda pop: _union_where(pop.index("roles"), lambda r: any(p.match(r) for p in patterns))
    if op == "has_privilege":
        return _compile_has_privilege(arg, here)
    if op == "attribute":
        return _compile_attribute(arg, here)
    if op in ("locked", "is_held"):
        want = _bool(arg, here)
        field_name = "is_locked" if op == "locked" else "is_held"
        return lambda pop: set(pop.index(field_name).get(want, set()))
    if op == "expired":
        want = _bool(arg, here)

        def run_expired(pop: Population) -> set[int]:
            entry = pop.attribute_index("password_expired").get(("v", "bool", True))
            expired = pop.index("capabilities").get("EXPIRED", set()) | (entry[1] if entry else set())
            return expired if want else pop.all_ids - expired

        return run_expired
    if op == "kind":
        kinds = set(_strings(arg, here, choices=KINDS))
        return lambda pop: _union_where(pop.index("kind"), lambda k: k in kinds)
    if op in ("name", "host"):
        patterns = [_glob(p, ignore_case=True) for p in _strings(arg, here)]
        attr = "username" if op == "name" else "host"
        return lambda pop: _union_where(
            pop.index(attr), lambda value: value is not None and any(p.match(value) for p in patterns)
        )
    if op == "environment":
        envs = set(_strings(arg, here, choices=ENVIRONMENTS))
        return lambda pop: _union_where(pop.index("environment"), lambda e: e in envs)
    if op == "db_type":
        families = {"mysql" if f == "mariadb" else f for f in _strings(arg, here, choices=(*FAMILIES, "mariadb"))}
        return lambda pop: _union_where(pop.index("db_type"), lambda d: d in families)
    if op == "tag":
        tags = set(_strings(arg, here))
        return lambda pop: pop.tagged(tags)
    raise RuleError(
        here if isinstance(op, str) else path,
        _("unknown operator %(op)r (one of: %(ops)s)") % {"op": op, "ops": ", ".join(OPERATORS)},
    )


@dataclass(frozen=True)
class CompiledRule:
    """A validated rule, ready to run over a population."""

    expression: Any
    run: Evaluator

    def __call__(self, pop: Population) -> set[int]:
        return self.run(pop)


def rule_compile(expression: Any) -> CompiledRule:
    """Validate and compile; raises `RuleError` pointing at the first bad part."""
    return CompiledRule(expression=expression, run=_compile(expression, "rule", 0))


def rule_errors(expression: Any) -> list[str]:
    """The validation message of a rule (empty when it is valid), for forms and serializers."""
    try:
        rule_compile(expression)
    except RuleError as exc:
        return [str(exc)]
    return []

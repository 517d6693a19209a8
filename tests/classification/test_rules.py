"""The rule language: every operator over a hand-built population, and validation that points at the bad part.

Pure: no database. The population is built with the same `facts_index` the service stores,
so these are the indexes a real evaluation reads.
"""

from __future__ import annotations

import pytest

from classification.rules import InstancePart, Population, RuleError, Subject, facts_index, privilege_key, rule_compile


def key(scope: str, privilege: str, *, grantable: bool = False, active: bool = True) -> str:
    return privilege_key(scope, privilege, grantable=grantable, active=active)


ALICE = Subject(
    1,
    "alice",
    "%",
    "user",
    False,
    capabilities=["SUPERUSER"],
    roles=["'dba'", "dba"],
    keys=[key("global", "ALL PRIVILEGES", grantable=True)],
    attributes={"auth_plugin": "mysql_native_password", "max_connections": 0, "is_held": False},
)
BOB = Subject(
    2,
    "bob",
    "10.1.2.3",
    "user",
    True,
    capabilities=["EXPIRED"],
    roles=[],
    keys=[key("object:sales.public.customers", "SELECT"), key("database:prod_app", "INSERT", active=False)],
    attributes={"auth_plugin": "ed25519", "max_connections": 10, "password_last_changed": "2025-01-01T00:00:00"},
)
READER = Subject(
    3,
    "reader",
    None,
    "role",
    False,
    keys=[key("schema:sales.public", "SELECT")],
    attributes={"is_held": True},
)
LONELY = Subject(4, "lonely", None, "role", False, attributes={"is_held": False})
SVC = Subject(
    5,
    "svc_report",
    None,
    "user",
    False,
    roles=["report_ro"],
    keys=[key("object:sales.crm.customers", "SELECT"), key("database:prod_billing", "UPDATE")],
    attributes={"valid_until": "2027-06-01T00:00:00+00:00", "locked": 1},
)
OTHER = Subject(6, "pg_app", None, "user", False, keys=[key("database:prod_x", "CONNECT")])


@pytest.fixture
def pop() -> Population:
    mysql = InstancePart(10, "mysql", "production", frozenset({"pci"}), facts_index([ALICE, BOB, READER, LONELY]))
    pg = InstancePart(20, "postgresql", "staging", frozenset(), facts_index([SVC, OTHER]))
    return Population(parts=[mysql, pg])


def run(pop: Population, expression: object) -> set[int]:
    return rule_compile(expression)(pop)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ({"has_capability": "SUPERUSER"}, {1}),
        ({"has_capability": ["superuser", "EXPIRED"]}, {1, 2}),
        ({"has_role": "dba"}, {1}),
        ({"has_role": "report_*"}, {5}),
        ({"has_privilege": "SELECT"}, {2, 3, 5}),
        ({"has_privilege": {"privilege": "SELECT", "scope": "object:sales.*.customers"}}, {2, 5}),
        ({"has_privilege": {"privilege": "SELECT", "within": "database:sales"}}, {2, 3, 5}),
        ({"has_privilege": {"privilege": ["INSERT", "UPDATE"], "within": "database:prod_*"}}, {2, 5}),
        ({"has_privilege": {"privilege": "INSERT", "within": "database:prod_*", "include_set_role": False}}, set()),
        ({"has_privilege": {"privilege": "*", "grantable": True}}, {1}),
        ({"has_privilege": {"privilege": "*", "scope": "global"}}, {1}),
        ({"has_privilege": {"privilege": "SELECT", "within": "global"}}, {2, 3, 5}),
        ({"attribute": {"name": "auth_plugin", "op": "eq", "value": "ed25519"}}, {2}),
        ({"attribute": {"name": "auth_plugin", "op": "ne", "value": "ed25519"}}, {1, 3, 4, 5, 6}),
        ({"attribute": {"name": "auth_plugin", "op": "in", "value": ["ed25519", "x"]}}, {2}),
        ({"attribute": {"name": "auth_plugin", "op": "not_in", "value": ["ed25519"]}}, {1, 3, 4, 5, 6}),
        ({"attribute": {"name": "auth_plugin", "op": "matches", "value": "MYSQL_*"}}, {1}),
        ({"attribute": {"name": "auth_plugin", "op": "exists"}}, {1, 2}),
        ({"attribute": {"name": "auth_plugin", "op": "exists", "value": False}}, {3, 4, 5, 6}),
        ({"attribute": {"name": "max_connections", "op": "gt", "value": 5}}, {2}),
        ({"attribute": {"name": "max_connections", "op": "le", "value": 0}}, {1}),
        ({"attribute": {"name": "valid_until", "op": "lt", "value": "2028-01-01T00:00:00+00:00"}}, {5}),
        ({"attribute": {"name": "password_last_changed", "op": "ge", "value": "2024-12-31T00:00:00"}}, {2}),
        ({"attribute": {"name": "locked", "op": "eq", "value": True}}, set()),  # 1 is not true
        ({"locked": True}, {2}),
        ({"locked": False}, {1, 3, 4, 5, 6}),
        ({"expired": True}, {2}),
        ({"is_held": False}, {1, 2, 4, 5, 6}),  # users are held by nobody either
        ({"kind": "role"}, {3, 4}),
        ({"name": "svc*"}, {5}),
        ({"name": ["ALICE", "bob"]}, {1, 2}),
        ({"host": "10.*"}, {2}),
        ({"environment": "production"}, {1, 2, 3, 4}),
        ({"tag": "pci"}, {1, 2, 3, 4}),
        ({"db_type": "postgresql"}, {5, 6}),
        ({"db_type": "mariadb"}, {1, 2, 3, 4}),
        ({"not": {"kind": "role"}}, {1, 2, 5, 6}),
        ({"all": [{"kind": "role"}, {"is_held": False}]}, {4}),
        ({"any": [{"name": "lonely"}, {"has_role": "dba"}]}, {1, 4}),
        ({"all": [{"environment": "production"}, {"not": {"any": [{"locked": True}, {"kind": "role"}]}}]}, {1}),
    ],
)
def test_every_operator(pop: Population, expression: object, expected: set[int]) -> None:
    assert run(pop, expression) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        (
            {
                "all": [
                    {"kind": "user"},
                    {"kind": "role"},
                    {"has_privilege": {"privilege": "SELECT", "scope": "tabel:a"}},
                ]
            },
            "rule.all[2].has_privilege.scope: unknown level 'tabel'",
        ),
        ({"any": [{"has_role": "x"}, {"bogus": 1}]}, "rule.any[1].bogus: unknown operator 'bogus'"),
        ({"all": []}, "rule.all: expected a non-empty list of rules"),
        ({"not": {"kind": "admin"}}, "rule.not.kind: unknown value 'admin'"),
        ({"environment": ["production", "prod"]}, "rule.environment[1]: unknown value 'prod'"),
        ({"has_privilege": {"scope": "database:x"}}, "rule.has_privilege.privilege: missing"),
        ({"has_privilege": {"privilege": "SELECT", "scope": "database:"}}, "rule.has_privilege.scope: database needs"),
        ({"has_privilege": {"privilege": "SELECT", "scope": "global:x"}}, "rule.has_privilege.scope: the global"),
        (
            {"has_privilege": {"privilege": "S", "scope": "database:a", "within": "database:b"}},
            "rule.has_privilege: give",
        ),
        ({"has_privilege": {"privilege": "SELECT", "grantable": "yes"}}, "rule.has_privilege.grantable: expected true"),
        ({"has_privilege": {"privilege": "SELECT", "onn": "x"}}, "rule.has_privilege.onn: unknown key"),
        ({"attribute": {"name": "x", "op": "like", "value": 1}}, "rule.attribute.op: unknown operator 'like'"),
        ({"attribute": {"name": "x", "op": "in", "value": 1}}, "rule.attribute.value: 'in' needs a list"),
        ({"attribute": {"name": "x", "op": "gt", "value": True}}, "rule.attribute.value: 'gt' needs a number"),
        ({"attribute": {"name": "x", "op": "eq"}}, "rule.attribute.value: missing"),
        ({"attribute": {"op": "eq", "value": 1}}, "rule.attribute.name: missing"),
        ({"locked": "yes"}, "rule.locked: expected true or false"),
        ({"has_capability": []}, "rule.has_capability: expected a non-empty string"),
        ({"kind": "user", "name": "x"}, "rule: expected an object with exactly one operator"),
        ([{"kind": "user"}], "rule: expected an object with exactly one operator"),
        ({"db_type": "db2"}, "rule.db_type: unknown value 'db2'"),
    ],
)
def test_validation_points_at_the_bad_part(expression: object, message: str) -> None:
    with pytest.raises(RuleError) as err:
        rule_compile(expression)
    assert str(err.value).startswith(message), str(err.value)


def test_too_deep_is_refused() -> None:
    expression: object = {"kind": "user"}
    for _ in range(20):
        expression = {"not": expression}
    with pytest.raises(RuleError, match="nested too deeply"):
        rule_compile(expression)


def test_true_and_one_stay_apart() -> None:
    subjects = [
        Subject(1, "a", None, "user", False, attributes={"x": True}),
        Subject(2, "b", None, "user", False, attributes={"x": 1}),
    ]
    pop = Population.of(subjects)
    assert run(pop, {"attribute": {"name": "x", "op": "eq", "value": True}}) == {1}
    assert run(pop, {"attribute": {"name": "x", "op": "eq", "value": 1}}) == {2}

"""Live: real CREATE USER/ROLE and GRANT, a real sync (hooks included), then the rule classifies; a GRANT and
another sync re-classify, a REVOKE and another sync take it back.

Syncs go through `sync.services.sync_accounts` (manual_single), so the adapters, the engine and the
post-sync hook are the real ones. The servers are shared: rules only look at this test's uniquely
named accounts, and syncs are forced (other tests drop their users concurrently).
"""

from __future__ import annotations

from typing import Any

import pytest

from classification.models import Classification, ClassificationRule
from classification.services import classification_evaluate, rule_save
from sync.services import sync_accounts
from tests.classification.helpers import members
from tests.livedb import MARIADB, POSTGRES

pytestmark = [pytest.mark.live, pytest.mark.django_db]


def run_sync(instance: Any) -> dict[str, Any]:
    result = sync_accounts(instance=instance, sync_type="manual_single", force=True)
    assert result["success"], result["message"]
    assert "classification" in result["details"], result["details"]
    return result


def category(code: str, expression: Any, db_type: str) -> Classification:
    found = Classification.objects.create(code=code, name=code, risk_level=4)
    rule_save(rule=ClassificationRule(classification=found, name=code, db_type=db_type, expression=expression))
    classification_evaluate()  # what the queued task does after a rule change
    return found


def test_mariadb_rule_follows_grants_and_roles(mariadb_admin, make_instance, make_credential, unique_prefix):
    p = unique_prefix
    inst = make_instance(
        "mysql",
        port=MARIADB["port"],
        environment="production",
        credential=make_credential(name="root", username="root", password=""),
    )
    cur = mariadb_admin.cursor()
    app, ro, other = (f"'{p}_{n}'@'localhost'" for n in ("app", "ro", "other"))
    role = f"{p}_reader"
    try:
        cur.execute(f"CREATE DATABASE {p}_db")
        cur.execute(f"CREATE TABLE {p}_db.customers (id int)")
        for user in (app, ro, other):
            cur.execute(f"CREATE USER {user} IDENTIFIED BY 'Pw-{p}-1'")
        cur.execute(f"CREATE ROLE {role}")
        cur.execute(f"GRANT SELECT ON {p}_db.customers TO {role}")
        cur.execute(f"GRANT {role} TO {ro}")
        cur.execute(f"SET DEFAULT ROLE {role} FOR {ro}")
        cur.execute(f"GRANT SELECT ON {p}_db.* TO {other}")
        run_sync(inst)
        category(
            f"{p}-writers",
            {"all": [{"name": f"{p}_*"}, {"has_privilege": {"privilege": "INSERT", "within": f"database:{p}_db"}}]},
            "mysql",
        )
        category(
            f"{p}-pii",
            {
                "all": [
                    {"name": f"{p}_*"},
                    {"kind": "user"},
                    {"has_privilege": {"privilege": "SELECT", "scope": f"object:{p}_db.customers"}},
                ]
            },
            "mysql",
        )
        category(f"{p}-roles", {"all": [{"name": f"{p}_*"}, {"has_role": role}]}, "")
        category(f"{p}-pg-only", {"name": f"{p}_*"}, "postgresql")  # another family: never matches here
        assert members(f"{p}-writers") == set()
        assert members(f"{p}-pii") == {ro}  # through its default role, not other's database-wide SELECT
        assert members(f"{p}-roles") == {ro}
        assert members(f"{p}-pg-only") == set()

        cur.execute(f"GRANT INSERT ON {p}_db.customers TO {app}")
        run_sync(inst)
        assert members(f"{p}-writers") == {app}

        cur.execute(f"REVOKE INSERT ON {p}_db.customers FROM {app}")
        cur.execute(f"REVOKE {role} FROM {ro}")
        run_sync(inst)
        assert members(f"{p}-writers") == set()
        assert members(f"{p}-pii") == set() and members(f"{p}-roles") == set()

        cur.execute(f"DROP USER {other}")
        cur.execute(f"GRANT INSERT ON {p}_db.* TO {ro}")
        run_sync(inst)
        assert members(f"{p}-writers") == {ro}
    finally:
        for user in (app, ro, other):
            cur.execute(f"DROP USER IF EXISTS {user}")
        cur.execute(f"DROP ROLE IF EXISTS {role}")
        cur.execute(f"DROP DATABASE IF EXISTS {p}_db")


def test_postgresql_rule_follows_grants_and_memberships(postgres_admin, make_instance, make_credential, unique_prefix):
    p = unique_prefix
    inst = make_instance(
        "postgresql",
        port=POSTGRES["port"],
        environment="production",
        credential=make_credential(name="pg", username="postgres", password=""),
        database_name="postgres",
        options={"databases": ["postgres"]},
    )
    run = postgres_admin.execute
    app, reader, ro = (f"{p}_{n}" for n in ("app", "reader", "ro"))
    try:
        run(f"CREATE SCHEMA {p}_s")
        run(f"CREATE TABLE {p}_s.customers (id int)")
        run(f"CREATE ROLE {app} LOGIN PASSWORD 'Pw-{p}-1'")
        run(f"CREATE ROLE {reader} NOLOGIN")
        run(f"CREATE ROLE {ro} LOGIN PASSWORD 'Pw-{p}-1'")
        run(f"GRANT USAGE ON SCHEMA {p}_s TO {reader}")
        run(f"GRANT SELECT ON {p}_s.customers TO {reader}")
        run(f"GRANT {reader} TO {ro}")
        run_sync(inst)
        category(
            f"{p}-pii",
            {"all": [{"name": f"{p}_*"}, {"kind": "user"},
                     {"has_privilege": {"privilege": "SELECT", "scope": "object:postgres.*.customers"}}]},
            "postgresql",
        )  # fmt: skip
        category(
            f"{p}-writers",
            {
                "all": [
                    {"name": f"{p}_*"},
                    {"has_privilege": {"privilege": ["INSERT", "UPDATE"], "within": "database:postgres"}},
                ]
            },
            "",
        )
        category(f"{p}-unused", {"all": [{"name": f"{p}_*"}, {"kind": "role"}, {"is_held": False}]}, "")
        assert members(f"{p}-pii") == {ro}  # through reader
        assert members(f"{p}-writers") == set()
        assert members(f"{p}-unused") == set()  # reader is held by ro

        run(f"GRANT INSERT ON {p}_s.customers TO {app}")
        run(f"REVOKE {reader} FROM {ro}")
        run_sync(inst)
        assert members(f"{p}-writers") == {app}
        assert members(f"{p}-pii") == set()
        assert members(f"{p}-unused") == {reader}
    finally:
        run(f"DROP SCHEMA IF EXISTS {p}_s CASCADE")
        for role in (app, ro, reader):
            run(f"DROP ROLE IF EXISTS {role}")

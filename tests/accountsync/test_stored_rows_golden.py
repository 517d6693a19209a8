"""Every byte the apply stores, compared with a fixture recorded from the engine before its refactor.

Why a golden file: stored digests are sha256 of the stored snapshot text and the
change log is an audit trail, so a refactor of the apply must not move one byte
of either, nor reorder inserts, nor change a count in the result dict kept in
the sync records. Property tests cover the codec; this covers the apply as a
whole over a realistic sequence of syncs on one instance.

What is normalised, and only that: primary keys (accounts are named by identity,
snapshot and change rows by their rank in insert order) and timestamps (named by
the apply that wrote them). JSON columns are read as raw text through the cursor,
so the comparison is of the stored text, not of the decoded values. The raw text
depends on the database (SQLite keeps what was sent, PostgreSQL's jsonb has its
own output form), hence one fixture per vendor.

Re-record (only when a change to stored rows is intended and reviewed):
    WHALEFALL_RECORD_GOLDEN=1 .venv/bin/python -m pytest tests/accountsync/test_stored_rows_golden.py
and with DATABASE_URL=postgres://... for the PostgreSQL fixture.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from accountsync.adapters.base import AccountRecord, Catalog, Privilege, RoleGrant
from accountsync.models import AccountPermission, InstanceAccount
from accountsync.services import account_sync_apply

pytestmark = pytest.mark.django_db

GOLDEN_DIR = Path(__file__).parent / "golden"
RECORD = os.environ.get("WHALEFALL_RECORD_GOLDEN") == "1"

# --- the recorded catalogs -----------------------------------------------------------


def user(name: str, *privs: Privilege, host: str | None = "%", **kw: Any) -> AccountRecord:
    kw.setdefault("attributes", {"locked": False, "plugin": "mysql_native_password"})
    return AccountRecord(identity=f"'{name}'@'{host}'", username=name, host=host, privileges=list(privs), **kw)


def role(name: str, *privs: Privilege, **kw: Any) -> AccountRecord:
    return AccountRecord(identity=name, username=name, kind="role", privileges=list(privs), **kw)


def alice(step: int) -> AccountRecord:
    """Grants at every scope level, a DENY, grant options, two roles, attributes that are not plain JSON."""
    privs = [
        Privilege("global", "usage"),
        Privilege("database:sales", "SELECT", grantable=True),
        Privilege("schema:sales.public", "USAGE"),
        Privilege("object:sales.public.orders", "INSERT"),
        Privilege('object:sales."odd.name"', "UPDATE", effect="deny"),
        Privilege("database:hr", "select"),
        Privilege("database:sales", "SELECT", grantable=True),  # duplicate: deduplicated
    ]
    attributes: dict[str, Any] = {
        "auth_plugin": "caching_sha2_password",
        "password_changed_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "valid_until": date(2027, 1, 1),
        "comment": 'Zoë ✓ "quoted"',
        "limits": {"max_queries": 0, "max_connections": 10},
        "hosts": ["b", "a"],
        "ratio": 1.5,
        "note": None,
        3: "int key",
    }
    roles = [RoleGrant("r_app"), RoleGrant("r_admin", admin_option=True, default=False)]
    if step >= 2:  # grant, revoke, role option changed, attribute dates changed
        privs = [p for p in privs if p.scope != "database:hr"] + [Privilege("object:sales.public.orders", "DELETE")]
        roles = [RoleGrant("r_app"), RoleGrant("r_admin", admin_option=False, default=False)]
        attributes |= {"password_changed_at": datetime(2026, 6, 7, 8, 9, 10, 123456, tzinfo=UTC)}
        attributes |= {"valid_until": date(2028, 2, 29), "hosts": ["c", "a"]}
    return user("alice", *privs, attributes=attributes, roles=roles)


def bob(step: int) -> AccountRecord:
    """A superuser by capability; from step 2 locked on the row only (its snapshot does not move)."""
    return user(
        "bob",
        Privilege("global", "ALL PRIVILEGES", grantable=True),
        capabilities={"SUPERUSER"},
        is_locked=step >= 2,
    )


def r_app(step: int) -> AccountRecord:
    caps = {"CREATE_DB", "LOCKED"} if step < 2 else {"LOCKED"}  # alice inherits CREATE_DB, then loses it
    privs = [Privilege("database:app", "SELECT")] if step < 8 else []  # unreadable at step 8: carried forward
    return role("r_app", *privs, capabilities=caps, attributes={"can_login": False, "conn_limit": -1 - (step >= 2)})


def r_admin(step: int) -> AccountRecord:
    """From step 3 an attribute alone changes (an attributes_changed entry)."""
    attributes = {"can_login": False} | ({"comment": "reviewed"} if step >= 3 else {})
    return role("r_admin", capabilities={"GRANT_ADMIN"}, attributes=attributes)


def carol(step: int) -> AccountRecord:
    """database:hr is never readable (a gap of the whole catalog): its grants are carried forward, never revoked."""
    privs = [Privilege("database:hr", "SELECT"), Privilege("object:hr.salaries", "SELECT")]
    if step >= 2:
        privs = [Privilege("database:hr", "SELECT"), Privilege("global", "PROCESS")]
    return user("carol", *privs, unknown_scopes=["database:hr", "database:hr"])


def dave(step: int) -> AccountRecord:
    return AccountRecord(identity="dave", username="dave", kind="login", attributes={})


def erin(step: int) -> AccountRecord:
    """More operations than a summary shows; at step 8 two tables are unreadable (carried forward)."""
    tables = range(14) if step < 8 else range(12)
    return user("erin", *(Privilege(f"object:app.t{i:02d}", "SELECT") for i in tables), roles=[RoleGrant("r_app")])


def frank(step: int) -> AccountRecord:
    return user("frank", Privilege("database:app", "INSERT"), attributes={"locked": False, "created": date(2026, 3, 4)})


def cat(
    *accounts: AccountRecord, unknown: tuple[str, ...] = (), digest: str = "", details: dict | None = None
) -> Catalog:
    return Catalog(
        accounts=list(accounts), unknown_scopes=list(unknown), source_digest=digest, details=details or {}
    ).finalize()


def steady(step: int, *, with_dave: bool = True, with_frank: bool = False) -> list[AccountRecord]:
    accounts = [alice(step), bob(step), r_app(step), r_admin(step), carol(step), erin(step)]
    return accounts + ([dave(step)] if with_dave else []) + ([frank(step)] if with_frank else [])


def reopen_last_snapshot(instance: Any, identity: str) -> None:
    """Older data: an account removed before removals closed its snapshot."""
    last = AccountPermission.objects.filter(account__instance=instance, account__identity=identity).latest("id")
    AccountPermission.objects.filter(pk=last.pk).update(valid_to=None)


def scenario(instance: Any, settings: Any, apply: Any) -> None:
    settings.WHALEFALL_MAX_REMOVAL_RATIO = 0.5
    public = [{"scope": "database:sales", "privilege": "CONNECT", "grantable": False, "effect": "GRANT"}]
    details = {"public_grants": public, "default_password_lifetime": 90, "flavor": "mariadb"}
    first = steady(1)
    first.insert(2, user("bob", Privilege("global", "SELECT")))  # same identity twice: the first one wins
    apply("first sync", cat(*first, digest="1" * 64, details=details))
    apply(
        "grants, revokes, attributes; dave removed, frank added",
        cat(*steady(2, with_dave=False, with_frank=True), digest="2" * 64),
    )
    apply("dave reactivated, frank removed", cat(*steady(3), digest="3" * 64))
    apply("no change", cat(*steady(3), digest="4" * 64))
    apply("catalog unchanged", Catalog(source_digest="4" * 64, unchanged=True))
    apply("catalog unchanged, other digest", Catalog(source_digest="5" * 64, unchanged=True))
    reopen_last_snapshot(instance, "'frank'@'%'")
    apply("frank reactivated over an open snapshot", cat(*steady(3, with_frank=True)))
    apply("partial read", cat(*steady(8, with_frank=True), unknown=("database:app",), digest="8" * 64))
    apply("guard: too many removals", cat(alice(8), bob(8), digest="9" * 64))
    apply("guard: empty catalog", cat(digest="a" * 64))
    apply("forced removals", cat(alice(8), bob(8), digest="b" * 64), force=True, session=None)
    apply("forced empty", cat(), force=True)
    reopen_last_snapshot(instance, "'alice'@'%'")
    apply("all back, alice over an open snapshot", cat(*steady(8, with_frank=True), digest="d" * 64))


# --- reading back what is stored ---------------------------------------------------------


class Clock:
    """Names each stored timestamp after the apply whose time window holds it."""

    def __init__(self) -> None:
        self.windows: list[tuple[datetime, datetime, str]] = []

    def name(self, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        for start, end, label in self.windows:
            if start <= value <= end:
                return f"<{label}>"
        return f"<outside any apply: {value.isoformat()}>"


def json_cast(column: str) -> str:
    return f"CAST({column} AS CHAR)" if connection.vendor == "mysql" else f"CAST({column} AS TEXT)"


def raw_rows(sql: str, params: list[Any]) -> list[dict[str, Any]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        names = [col[0] for col in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def scalar(value: Any) -> Any:
    """Driver values in a JSON-storable form, types kept apart (SQLite gives 0/1 for booleans)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def stored_accounts(instance: Any, clock: Clock) -> list[dict[str, Any]]:
    rows = raw_rows(
        "SELECT id, instance_id, identity, username, host, kind, is_active, is_superuser, is_locked, "
        f"{json_cast('attributes')} AS attributes, first_seen_at, last_seen_at, deactivated_at "
        "FROM accountsync_instanceaccount WHERE instance_id = %s ORDER BY id",
        [instance.pk],
    )
    out = []
    for rank, row in enumerate(rows):
        assert row.pop("instance_id") == instance.pk
        row["id"] = rank
        for name in ("first_seen_at", "last_seen_at", "deactivated_at"):
            row[name] = clock.name(row[name])
        out.append({k: scalar(v) for k, v in row.items()})
    return out


def identities(instance: Any) -> dict[int, str]:
    return dict(InstanceAccount.objects.filter(instance=instance).values_list("id", "identity"))


def stored_rows(instance: Any, clock: Clock, sql: str, times: tuple[str, ...]) -> list[dict[str, Any]]:
    """One table's rows of `instance` in insert order, pks and timestamps normalised (see the module docstring)."""
    names = identities(instance)
    out = []
    for rank, row in enumerate(raw_rows(sql, [instance.pk])):
        assert row.pop("instance_id") == instance.pk
        row["id"], row["account"] = rank, names[row.pop("account_id")]
        for name in times:
            row[name] = clock.name(row[name])
        out.append({k: scalar(v) for k, v in row.items()})
    return out


def stored_permissions(instance: Any, clock: Clock) -> list[dict[str, Any]]:
    sql = (
        f"SELECT id, account_id, instance_id, {json_cast('snapshot')} AS snapshot, digest, schema_version, "
        "collected_at, valid_from, valid_to FROM accountsync_accountpermission WHERE instance_id = %s ORDER BY id"
    )
    return stored_rows(instance, clock, sql, ("collected_at", "valid_from", "valid_to"))


def stored_changes(instance: Any, clock: Clock) -> list[dict[str, Any]]:
    sql = (
        f"SELECT id, account_id, instance_id, session_id, change_type, {json_cast('diff')} AS diff, summary, "
        "detected_at FROM accountsync_accountchangelog WHERE instance_id = %s ORDER BY id"
    )
    return stored_rows(instance, clock, sql, ("detected_at",))


def run_scenario(instance: Any, settings: Any) -> dict[str, Any]:
    clock = Clock()
    steps: list[dict[str, Any]] = []

    def apply(label: str, catalog: Catalog, *, force: bool = False, session: Any = ...) -> None:
        n = len(steps) + 1
        session_id = uuid.UUID(int=n) if session is ... else session
        start = timezone.now()
        result = account_sync_apply(instance=instance, catalog=catalog, session_id=session_id, force=force)
        clock.windows.append((start, timezone.now(), f"apply {n}"))
        instance.refresh_from_db(fields=["catalog_digest"])
        outcome = result.as_dict()
        for gap in (outcome["details"].get("coverage") or {}).get("gaps") or []:
            gap["since"], gap["last_read_at"] = clock.name(gap["since"]), clock.name(gap["last_read_at"])
        # the server facts' version (accountsync/facts.py): its id and start are normalised like the rest
        version = outcome["details"].get("server_facts")
        if version:
            version["id"], version["valid_from"] = "<facts version>", clock.name(version["valid_from"])
            for value in outcome["details"].values():
                if isinstance(value, dict) and "facts_id" in value:
                    value["facts_id"] = "<facts version>"
        steps.append(
            {
                "step": f"{n}: {label}",
                "result": outcome,
                "catalog_digest": instance.catalog_digest,
                "accounts": stored_accounts(instance, clock),
                "permission_rows": AccountPermission.objects.filter(instance=instance).count(),
            }
        )

    scenario(instance, settings, apply)
    observed = {
        "vendor": connection.vendor,
        "steps": steps,
        "permissions": stored_permissions(instance, clock),
        "changes": stored_changes(instance, clock),
    }
    return json.loads(json.dumps(observed, ensure_ascii=False))  # tuples -> lists, as the fixture reads back


def test_stored_rows_equal_the_recorded_ones(make_instance, settings) -> None:
    observed = run_scenario(make_instance(name="golden"), settings)
    fixture = GOLDEN_DIR / f"stored_rows.{connection.vendor}.json"
    if RECORD:
        GOLDEN_DIR.mkdir(exist_ok=True)
        fixture.write_text(json.dumps(observed, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        pytest.skip(f"recorded {fixture}")
    if not fixture.exists():
        pytest.fail(f"no golden fixture for {connection.vendor}: record it with WHALEFALL_RECORD_GOLDEN=1")
    expected = json.loads(fixture.read_text("utf-8"))
    assert [s["step"] for s in observed["steps"]] == [s["step"] for s in expected["steps"]]
    for got, want in zip(observed["steps"], expected["steps"], strict=True):
        assert got == want, got["step"]
    assert observed["permissions"] == expected["permissions"]
    assert observed["changes"] == expected["changes"]
    assert observed == expected


def test_the_scenario_covers_every_branch_of_the_apply(make_instance, settings) -> None:
    """Guards the fixture's worth: each kind of change and outcome occurs at least once."""
    observed = run_scenario(make_instance(name="golden"), settings)
    kinds = {c["change_type"] for c in observed["changes"]}
    assert kinds == {"added", "removed", "reactivated", "privileges_changed", "attributes_changed"}
    reactivated = [c for c in observed["changes"] if c["change_type"] == "reactivated"]
    assert any(c["diff"] == "[]" for c in reactivated)  # over an open, equal snapshot
    assert any(c["account"] == "'alice'@'%'" and "GRANT_ADMIN" in c["summary"] for c in reactivated)
    assert any("more)" in c["summary"] for c in observed["changes"])
    errors = [s["result"]["error_kind"] for s in observed["steps"]]
    assert errors.count("guard") == 2 and errors.count("conflict") == 1
    assert any(s["result"]["details"].get("inventory", {}).get("catalog_unchanged") for s in observed["steps"])
    updated = [s["result"]["details"]["inventory"]["updated"] for s in observed["steps"] if s["result"]["success"]]
    assert any(updated)
    assert all("<outside" not in json.dumps(s["accounts"]) for s in observed["steps"])
    assert "<outside" not in json.dumps(observed["permissions"]) + json.dumps(observed["changes"])

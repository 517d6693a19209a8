"""Recorded Oracle dictionary rows (tests/fixtures/oracle, see its README.md) for the Oracle tests.

Why one helper: the adapter tests answer the statements over a fake DB-API cursor, while the
effective-access and findings tests feed the same rows straight to `build_catalog`; both must
see the rows exactly as a server of the fixture's release returns them (the columns each
statement selects, DATE/TIMESTAMP cells as datetime, WHERE conditions applied).
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

from accountsync.adapters.oracle import OracleRows, release_of, statements

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "oracle"


def load(name: str = "catalog_19c.json") -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text("utf-8"))


def with_additions(base: str = "catalog_19c.json", extra: str = "catalog_23ai.json") -> dict[str, Any]:
    """`base`'s views with `extra`'s views added or replacing them, answered as `extra`'s release."""
    fixture = load(base)
    more = load(extra)
    fixture["views"].update(copy.deepcopy(more["views"]))
    fixture["connection_version"] = more["connection_version"]
    return fixture


def parse_select(sql: str) -> tuple[str, list[str]]:
    """(view, columns) of a plain SELECT, parsed as Oracle SQL; raises on anything else.

    The one expression allowed is SYSDATE (sqlglot's CURRENT_TIMESTAMP), read from DUAL as column SYSDATE.
    """
    tree = sqlglot.parse_one(sql, read="oracle", error_level=sqlglot.ErrorLevel.RAISE)
    assert isinstance(tree, exp.Select), sql
    assert all(isinstance(s, exp.Column | exp.CurrentTimestamp) for s in tree.selects), sql
    table = tree.find(exp.Table)
    assert table is not None, sql
    return table.name, [s.name if isinstance(s, exp.Column) else "SYSDATE" for s in tree.selects]


def where_equals(sql: str) -> dict[str, str]:
    """The `column = 'text'` conditions of a statement's WHERE clause (the only kind the adapter sends)."""
    tree = sqlglot.parse_one(sql, read="oracle")
    where = tree.args.get("where")
    if where is None:
        return {}
    conditions = list(where.find_all(exp.EQ))
    assert conditions and all(isinstance(c.left, exp.Column) and c.right.is_string for c in conditions), sql
    return {c.left.name: c.right.this for c in conditions}


def answer(fixture: dict[str, Any], sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """(columns, rows) a server of the fixture's release returns for `sql`.

    A column the recorded view lacks raises ValueError, as the server raises ORA-00904.
    """
    view, columns = parse_select(sql)
    recorded = fixture["views"][view]
    index = [recorded["columns"].index(c) for c in columns]
    conditions = [(recorded["columns"].index(c), value) for c, value in where_equals(sql).items()]
    dates = set(fixture["date_columns"])
    rows = [
        tuple(datetime.fromisoformat(row[i]) if columns[n] in dates and row[i] else row[i] for n, i in enumerate(index))
        for row in recorded["rows"]
        if all(row[i] == value for i, value in conditions)
    ]
    return columns, rows


class RecordedCursor:
    """Answers like an oracledb cursor: tuples, `description`, DATE/TIMESTAMP columns as datetime.

    `state` holds the fixture (`state["fixture"]`) and the errors to raise per view (`state["fail_on"]`).
    """

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.executed: list[str] = []
        self.description: list[tuple[Any, ...]] | None = None
        self._rows: list[tuple[Any, ...]] = []

    def execute(self, sql: str, params: Any = None) -> None:
        self.executed.append(sql)
        view, _columns = parse_select(sql)
        if view in self.state["fail_on"]:
            raise self.state["fail_on"][view]
        columns, self._rows = answer(self.state["fixture"], sql)  # ValueError: column not in the view
        self.description = [(c, None, None, None, None, None, True) for c in columns]

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self._rows)


class RecordedConnection:
    """What `oracledb.connect` returns: the release the fixture was recorded on, and the recorded cursor."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.version = state["fixture"]["connection_version"]
        self._cursor = RecordedCursor(state)
        self.closed = False
        self.call_timeout = 0

    def cursor(self) -> RecordedCursor:
        return self._cursor

    def close(self) -> None:
        self.closed = True


def recorded_server(monkeypatch: Any, fixture: dict[str, Any]) -> dict[str, Any]:
    """Make `oracledb.connect` answer from `fixture` (a copy); returns the state the connections share.

    `state["fixture"]` may be replaced (another release) or edited (`state["views"]`) before a fetch;
    `state["conn"]` is the last connection made, `state["kwargs"]` what it was made with.
    """
    import oracledb

    state: dict[str, Any] = {"fixture": copy.deepcopy(fixture), "fail_on": {}, "kwargs": None}
    state["views"] = state["fixture"]["views"]

    def connect(**kwargs: Any) -> RecordedConnection:
        state["kwargs"] = kwargs
        state["conn"] = RecordedConnection(state)
        return state["conn"]

    monkeypatch.setattr(oracledb, "connect", connect)
    return state


def rows_of(fixture: dict[str, Any]) -> OracleRows:
    """What `read_rows` returns for the fixture's server: every statement of its release, answered."""
    release = release_of(fixture["connection_version"])
    rows = OracleRows(release=release)
    for read in statements(release):
        columns, found = answer(fixture, read.sql)
        setattr(rows, read.field, [dict(zip(columns, row, strict=True)) for row in found])
    return rows


# --- view-shaped rows for small, made-up catalogs ------------------------------------------


def user_row(name: str, status: str = "OPEN", **columns: Any) -> dict[str, Any]:
    """A DBA_USERS row with every column the adapter reads (a password user, created long ago)."""
    row: dict[str, Any] = {
        "USERNAME": name,
        "USER_ID": 100,
        "ACCOUNT_STATUS": status,
        "LOCK_DATE": None,
        "EXPIRY_DATE": datetime(2027, 1, 1),
        "DEFAULT_TABLESPACE": "USERS",
        "TEMPORARY_TABLESPACE": "TEMP",
        "CREATED": datetime(2024, 1, 1),
        "PROFILE": "DEFAULT",
        "EXTERNAL_NAME": None,
        "AUTHENTICATION_TYPE": "PASSWORD",
        "PROXY_ONLY_CONNECT": "N",
        "COMMON": "NO",
        "LAST_LOGIN": datetime(2026, 11, 20, 7, 0),
        "ORACLE_MAINTAINED": "N",
    }
    row.update(columns)
    return row


def role_row(name: str, maintained: bool = False) -> dict[str, Any]:
    return {
        "ROLE": name,
        "PASSWORD_REQUIRED": "NO",
        "AUTHENTICATION_TYPE": "NONE",
        "COMMON": "NO",
        "ORACLE_MAINTAINED": "Y" if maintained else "N",
    }


def sys_priv(grantee: str, privilege: str, admin: bool = False) -> dict[str, Any]:
    return {"GRANTEE": grantee, "PRIVILEGE": privilege, "ADMIN_OPTION": "YES" if admin else "NO"}


def role_priv(grantee: str, role: str, admin: bool = False, default: bool = True) -> dict[str, Any]:
    return {
        "GRANTEE": grantee,
        "GRANTED_ROLE": role,
        "ADMIN_OPTION": "YES" if admin else "NO",
        "DEFAULT_ROLE": "YES" if default else "NO",
    }


def clock(now: datetime) -> list[dict[str, Any]]:
    return [{"SYSDATE": now}]


# --- connected to CDB$ROOT -----------------------------------------------------------------


def from_root(fixture: dict[str, Any], *, container_data: bool = True, salespdb_open: bool = False) -> dict[str, Any]:
    """`fixture` (the 19c file) as a connection to CDB$ROOT answers it (a copy; README.md, "CDB$ROOT").

    V$CONTAINERS lists the root, the seed and both PDBs; the CDB_ views hold the root's rows (CON_ID 1)
    and ORCLPDB1's (CON_ID 3), and SALESPDB's (CON_ID 4) while it is open. Without `container_data`
    the monitoring account is a common user whose CONTAINER_DATA is not set: the CDB_ views return the
    root's rows only, as Oracle filters them.
    """
    out = copy.deepcopy(fixture)
    variants = out["variants"]
    containers = "V$CONTAINERS from CDB$ROOT, SALESPDB open" if salespdb_open else "V$CONTAINERS from CDB$ROOT"
    out["views"]["V$CONTAINERS"] = copy.deepcopy(variants[containers])
    cdb = copy.deepcopy(variants["CDB_ views from CDB$ROOT"])
    if salespdb_open:
        for view, rows in variants["CDB_ rows of SALESPDB while open"].items():
            cdb[view]["rows"] += copy.deepcopy(rows)
    if not container_data:
        for view in cdb.values():
            at = view["columns"].index("CON_ID")
            view["rows"] = [row for row in view["rows"] if row[at] == 1]
    out["views"].update(cdb)
    return out

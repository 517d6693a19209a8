"""Recorded SQL Server catalog rows (tests/fixtures/sqlserver), decoded to the types the driver returns.

JSON has no bytes or datetimes: the fixtures write a varbinary cell (a SID) as ``{"$bytes": "<hex>"}``
and a datetime cell as ``{"$datetime": "<ISO 8601>"}``; `decode` turns them back into `bytes` and a naive
`datetime`, as mssql-python hands them over. Bit columns are JSON booleans, ints are ints.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from accountsync.adapters.sqlserver import SQLServerRows

FIXTURES = Path(__file__).parent / "fixtures" / "sqlserver"


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return bytes.fromhex(value["$bytes"])
        if set(value) == {"$datetime"}:
            return datetime.fromisoformat(value["$datetime"])
        return {k: decode(v) for k, v in value.items()}
    return value


def recorded(name: str = "catalog_2022.json") -> dict[str, Any]:
    """Every view's rows, decoded (key `modelled_on` says what they model)."""
    return decode(json.loads((FIXTURES / name).read_text("utf-8")))


def recorded_rows(name: str = "catalog_2022.json", **replace: list[dict[str, Any]]) -> SQLServerRows:
    data = {k: v for k, v in recorded(name).items() if k != "modelled_on"}
    data.update(replace)
    return SQLServerRows(**data)

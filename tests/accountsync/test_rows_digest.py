"""The catalog digest: equal rows, options and code give equal digests; any difference gives another."""

from __future__ import annotations

import dataclasses

from accountsync.adapters import mysql, postgresql
from accountsync.adapters.base import ConnectionTarget, rows_digest, unchanged_catalog


def target(**options) -> ConnectionTarget:
    return ConnectionTarget(
        name="i", db_type="mysql", host="127.0.0.1", port=3306, username="u", password="pw", options=options
    )


ROWS = {"users": [{"User": "app", "Host": "%", "Priv": '{"access": 1}'}], "db": []}


def test_same_rows_same_digest_any_difference_another():
    base = rows_digest(mysql.__file__, target(), ROWS)
    assert base == rows_digest(mysql.__file__, target(), {"users": [dict(ROWS["users"][0])], "db": []})
    changed = {"users": [{**ROWS["users"][0], "Priv": '{"access": 3}'}], "db": []}
    assert rows_digest(mysql.__file__, target(), changed) != base
    assert rows_digest(mysql.__file__, target(databases=["app"]), ROWS) != base  # options decide what is read
    assert rows_digest(postgresql.__file__, target(), ROWS) != base  # other reading code, other digest


def test_unchanged_needs_a_known_digest():
    digest = rows_digest(mysql.__file__, target(), ROWS)
    assert not unchanged_catalog(target(), digest)  # first sync: nothing known
    known = dataclasses.replace(target(), known_catalog_digest=digest)
    assert unchanged_catalog(known, digest) and not unchanged_catalog(known, "0" * 64)

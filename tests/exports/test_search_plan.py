"""The account search reads the accounts table through an index in every mode (EXPLAIN on the app database).

Runs on whichever database the test run uses (SQLite by default, PostgreSQL
with DATABASE_URL=postgres://...). PostgreSQL is told to avoid sequential
scans so the plan shows whether an index *can* serve the query on a table
this small; bench/account_search.py shows it choosing one at 100,000 rows.
"""

from __future__ import annotations

import re

import pytest
from django.db import connection, transaction

from accountsync.selectors import account_search

pytestmark = pytest.mark.django_db

QUERIES = [
    ("app_rw", "exact", "acct_username"),
    ("app_*", "auto", "acct_username"),
    ("app_rw@%", "auto", "acct_"),  # (username, host) or (host, username): both are exact on both columns
    ("host=%", "auto", "acct_host_username_idx"),
    ("host=10.0.*", "auto", "acct_host_username_idx"),
]


@pytest.mark.parametrize(("q", "mode", "index"), QUERIES)
def test_each_search_mode_uses_an_account_index(q, mode, index, fleet):
    qs = account_search(q=q, mode=mode)
    assert qs.exists()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL enable_seqscan = off")
        plan = qs.explain()
    if connection.vendor == "sqlite":
        assert not re.search(r"SCAN accountsync_instanceaccount(?! USING)", plan), plan
        used = re.search(r"SEARCH accountsync_instanceaccount USING (?:COVERING )?INDEX (\w+)", plan)
    elif connection.vendor == "postgresql":
        assert "Seq Scan on accountsync_instanceaccount" not in plan, plan
        used = re.search(r"Index (?:Only )?Scan (?:using|on) (\w+)", plan)
    else:
        pytest.skip(f"no plan check for {connection.vendor}")
    assert used, plan
    assert used.group(1).startswith(index), plan

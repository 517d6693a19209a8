"""Live: hostile account names created on MariaDB, synced for real, exported through the API, parsed back.

The server is shared with tests running in parallel, so exports are filtered
to this test's unique prefix (the account list's ``search`` filter) and the
sync is forced (other tests' users vanish concurrently).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json

import MySQLdb
import pytest

from sync.services import sync_accounts
from tests.api.conftest import SECRET
from tests.livedb import MARIADB

pytestmark = [pytest.mark.live, pytest.mark.django_db]


def parse_csv(response) -> list[dict[str, str]]:
    body = b"".join(response.streaming_content).decode("utf-8")
    assert body.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(body[1:], newline="")))


def body_of(response) -> str:
    return b"".join(response.streaming_content).decode("utf-8")


def test_hostile_names_from_a_real_sync_are_neutralised_and_no_secret_leaks(
    mariadb_admin, make_instance, make_credential, unique_prefix, api_client, charlie
):
    p = unique_prefix
    names = [f'=HYPERLINK("http://x/{p}")', f"+cmd{p}", f"-1{p}", f"@SUM(1){p}", f"plain{p}"]
    password = f"Pw-{p}-export"
    cur = mariadb_admin.cursor()
    cur.execute("SELECT PASSWORD(%s)", (password,))
    password_hash = cur.fetchone()[0]
    # the instance's monitoring credential is root without password; a second credential carries SECRET
    inst = make_instance(
        "mysql", port=MARIADB["port"], credential=make_credential(name="root", username="root", password="")
    )
    make_credential(name="other", password=SECRET)
    try:
        for name in names:
            cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (name, password))
            cur.execute("GRANT SELECT ON mysql.db TO %s@'%%'", (name,))
        result = sync_accounts(instance=inst, sync_type="manual_single", force=True)
        assert result["success"], result["message"]

        client = api_client(charlie)
        response = client.get("/api/v1/accounts/export/", {"instance": inst.pk, "search": p, "format": "csv"})
        assert response.status_code == 200, response.content
        assert response["Content-Type"].startswith("text/csv")
        rows = parse_csv(response)
        assert sorted(r["username"] for r in rows) == sorted(("'" + n if n[0] in "=+-@" else n) for n in names)
        assert {r["host"] for r in rows} == {"%"}
        for row in rows:
            for column, value in row.items():
                assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), (column, value)
        # the quote is the only change: stripping it gives the server's names back
        assert sorted(r["username"].removeprefix("'") for r in rows) == sorted(names)

        response = client.get("/api/v1/accounts/export/", {"instance": inst.pk, "search": p, "format": "json"})
        data = json.loads(body_of(response))
        assert sorted(r["username"] for r in data) == sorted(names)
        assert all(r["privilege_count"] == 1 and "WILDCARD_HOST" in r["capabilities"] for r in data)

        perms = parse_csv(client.get("/api/v1/permissions/export/", {"instance": inst.pk, "search": p}))
        privileges = {(r["account"], r["scope"], r["privilege"]) for r in perms if r["row_type"] == "privilege"}
        assert len(privileges) == len(names)
        assert {r[2] for r in privileges} == {"SELECT"}
        assert any(r["account"].startswith("'") for r in perms)  # identities start with a quote anyway

        texts = [
            body_of(client.get(f"/api/v1/{path}/export/", {"instance": inst.pk, "format": fmt}))
            for path in ("accounts", "permissions", "change-logs", "findings")
            for fmt in ("csv", "json", "ndjson")
        ]
        assert sum(f'"username": "{names[1]}"' in t for t in texts) == 2, "JSON and NDJSON carry the raw name"
        for text in texts:
            assert password not in text
            assert password_hash not in text and password_hash[1:] not in text
            assert SECRET not in text
    finally:
        for name in names:
            with contextlib.suppress(MySQLdb.Error):
                cur.execute("DROP USER %s@'%%'", (name,))

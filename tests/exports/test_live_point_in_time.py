"""Live: GRANT, REVOKE, GRANT again on MariaDB, a real sync after each, then the API's point-in-time answers.

The moments between the syncs are recorded, so each question ("what could it
do at T", "what changed between T1 and T2") has one right answer. Other tests
use the server at the same time; assertions look only at this test's account.
"""

from __future__ import annotations

import contextlib
import time

import MySQLdb
import pytest
from django.utils import timezone

from accountsync.models import InstanceAccount
from sync.services import sync_accounts
from tests.livedb import MARIADB

pytestmark = [pytest.mark.live, pytest.mark.django_db]


def synced(instance) -> None:
    result = sync_accounts(instance=instance, sync_type="manual_single", force=True)
    assert result["success"], result["message"]


def moment():
    time.sleep(0.02)
    at = timezone.now()
    time.sleep(0.02)
    return at


def test_grant_revoke_regrant_answers(
    mariadb_admin, make_instance, make_credential, unique_prefix, api_client, charlie
):
    p = unique_prefix
    user, db = f"'{p}_app'@'%'", f"{p}_db"
    inst = make_instance(
        "mysql", port=MARIADB["port"], credential=make_credential(name="root", username="root", password="")
    )
    cur = mariadb_admin.cursor()
    client = api_client(charlie)
    try:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE USER {user} IDENTIFIED BY 'Pw-{p}-1'")
        cur.execute(f"GRANT INSERT ON {db}.* TO {user}")
        cur.execute(f"GRANT SELECT ON {db}.* TO {user}")
        t0 = moment()
        synced(inst)
        t1 = moment()
        cur.execute(f"REVOKE SELECT ON {db}.* FROM {user}")
        synced(inst)
        t2 = moment()
        cur.execute(f"GRANT SELECT ON {db}.* TO {user}")
        synced(inst)
        t3 = moment()

        account = InstanceAccount.objects.get(instance=inst, username=f"{p}_app")

        def could_do(at) -> list[str] | None:
            response = client.get(f"/api/v1/accounts/{account.pk}/at/", {"time": at.isoformat()})
            if response.status_code == 404:
                assert response.json()["code"] == "account_not_seen_yet"
                return None
            assert response.status_code == 200, response.json()
            return sorted(
                p["privilege"] for p in response.json()["snapshot"]["privileges"] if p["scope"] == f"database:{db}"
            )

        assert [could_do(t) for t in (t0, t1, t2, t3)] == [None, ["INSERT", "SELECT"], ["INSERT"], ["INSERT", "SELECT"]]

        def changed(start, end) -> list[tuple[str, list[str]]]:
            # every page: the first sync also logs every other account on the shared server
            ours, page = [], 1
            while page:
                response = client.get(
                    f"/api/v1/instances/{inst.pk}/changes/",
                    {"from": start.isoformat(), "to": end.isoformat(), "page_size": 200, "page": page},
                )
                assert response.status_code == 200, response.json()
                ours += [r for r in response.json()["results"] if r["account"] == account.pk]
                page = page + 1 if response.json()["next"] else 0
            scope = f"database:{db}"
            return [
                (r["change_type"], sorted(f"{o['op']} {o.get('privilege')}" for o in r["diff"] if o["scope"] == scope))
                for r in ours
            ]

        revoke, grant = ("privileges_changed", ["revoke SELECT"]), ("privileges_changed", ["grant SELECT"])
        assert changed(t0, t1) == [("added", ["grant INSERT", "grant SELECT"])]
        assert changed(t1, t2) == [revoke]
        assert changed(t2, t3) == [grant]
        assert changed(t0, t3)[1:] == [revoke, grant]
        backwards = client.get(f"/api/v1/instances/{inst.pk}/changes/", {"from": t3.isoformat(), "to": t1.isoformat()})
        assert (backwards.status_code, backwards.json()["code"]) == (400, "invalid_range")
    finally:
        with contextlib.suppress(MySQLdb.Error):
            cur.execute(f"DROP USER {user}")
        with contextlib.suppress(MySQLdb.Error):
            cur.execute(f"DROP DATABASE {db}")

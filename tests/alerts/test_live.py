"""Live MariaDB: real GRANTs -> real sync (sync.services.sync_accounts) -> one webhook POST per escalation.

The server is shared with other tests that create and drop their own users at the same
time, so syncs are forced (their drops must not trip the mass-removal guard) and the
assertions look at this test's uniquely named accounts; any other POST must be about
someone else's account, never about ours.
"""

from __future__ import annotations

from typing import Any

import pytest

from alerts.models import AlertChannel, AlertDelivery
from sync.services import sync_accounts
from tests.livedb import MARIADB, POSTGRES

pytestmark = [pytest.mark.live, pytest.mark.django_db]


def run_sync(instance: Any, capture: Any) -> dict[str, Any]:
    with capture(execute=True):
        result = sync_accounts(instance=instance, sync_type="manual_single", force=True)
    assert result["success"], result["message"]
    return result


def test_mariadb_grants_alert_once_each(
    mariadb_admin, make_instance, make_credential, unique_prefix, receiver, q_sync, django_capture_on_commit_callbacks
):
    p = unique_prefix
    inst = make_instance(
        "mysql",
        port=MARIADB["port"],
        name=f"{p}-maria",
        environment="staging",
        credential=make_credential(name="root", username="root", password=""),
    )
    AlertChannel.objects.create(name="live hook", kind="webhook", webhook_url=receiver.url, db_types=["mysql"])
    cur = mariadb_admin.cursor()
    admin_user, reader = f"'{p}_adm'@'localhost'", f"'{p}_rd'@'localhost'"
    pw = f"Pw-{p}-1"

    def ours() -> list[dict[str, Any]]:
        return [b for b in receiver.bodies() if p in b["account"]["identity"]]

    try:
        cur.execute(f"CREATE DATABASE {p}_db")
        for user in (admin_user, reader):
            cur.execute(f"CREATE USER {user} IDENTIFIED BY '{pw}'")
        cur.execute(f"GRANT SELECT ON {p}_db.* TO {admin_user}")
        run_sync(inst, django_capture_on_commit_callbacks)  # baseline: the instance's first sync
        assert ours() == []

        cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO {admin_user} WITH GRANT OPTION")
        cur.execute(f"GRANT SELECT ON {p}_db.* TO {reader}")  # a plain grant: not an escalation
        run_sync(inst, django_capture_on_commit_callbacks)
        assert len(ours()) == 1
        body = ours()[0]
        assert body["account"]["identity"] == admin_user
        assert (body["kind"], body["severity"]) == ("capability_gained", "critical")
        assert body["escalation"]["capabilities"] == ["GRANT_ADMIN", "SUPERUSER"]
        assert body["instance"] == {"id": inst.pk, "name": f"{p}-maria", "db_type": "mysql", "environment": "staging"}
        assert "ALL PRIVILEGES on global WITH GRANT OPTION" in body["change"]["summary"]
        assert body["account_url"].endswith(f"/instanceaccount/{body['account']['id']}/change/")
        assert pw not in str(receiver.bodies())
        others = [b for b in receiver.bodies() if p not in b["account"]["identity"]]
        assert all(b["instance"]["id"] == inst.pk for b in others)  # concurrent tests' users, if any

        cur.execute(f"GRANT SUPER ON *.* TO {reader}")
        run_sync(inst, django_capture_on_commit_callbacks)
        assert [(b["account"]["identity"], b["escalation"]["capabilities"]) for b in ours()] == [
            (admin_user, ["GRANT_ADMIN", "SUPERUSER"]),
            (reader, ["SUPERUSER"]),
        ]  # the first escalation was not sent again
        assert set(AlertDelivery.objects.filter(account_identity__contains=p).values_list("status", flat=True)) == {
            "sent"
        }
    finally:
        for user in (admin_user, reader):
            cur.execute(f"DROP USER IF EXISTS {user}")
        cur.execute(f"DROP DATABASE IF EXISTS {p}_db")


def test_postgresql_alter_role_superuser_alerts(
    postgres_admin, make_instance, make_credential, unique_prefix, receiver, q_sync, django_capture_on_commit_callbacks
):
    p = unique_prefix
    inst = make_instance(
        "postgresql",
        port=POSTGRES["port"],
        name=f"{p}-pg",
        database_name="postgres",
        options={"databases": ["postgres"]},
        credential=make_credential(name="pg", username="postgres", password=""),
    )
    AlertChannel.objects.create(name="critical only", kind="webhook", webhook_url=receiver.url, min_severity="critical")
    run = postgres_admin.execute
    role, plain = f"{p}_ops", f"{p}_plain"
    try:
        run(f"CREATE ROLE {role} LOGIN PASSWORD 'Pw-{p}-1'")
        run(f"CREATE ROLE {plain} LOGIN PASSWORD 'Pw-{p}-1'")
        run_sync(inst, django_capture_on_commit_callbacks)  # baseline
        run(f"ALTER ROLE {role} SUPERUSER")
        run(f"GRANT pg_read_all_data TO {plain}")  # a plain privilege: not an escalation
        run_sync(inst, django_capture_on_commit_callbacks)
        ours = [b for b in receiver.bodies() if p in b["account"]["identity"]]
        assert [(b["account"]["identity"], b["severity"], b["escalation"]["capabilities"]) for b in ours] == [
            (role, "critical", ["SUPERUSER"])
        ]
        assert ours[0]["instance"]["db_type"] == "postgresql" and f"Pw-{p}-1" not in str(receiver.bodies())
    finally:
        for name in (role, plain):
            run(f"DROP ROLE IF EXISTS {name}")

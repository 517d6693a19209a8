"""An Oracle instance synced end to end over the recorded 19c rows: what is stored, listed and reported.

Why end to end: the adapter's output has to survive the apply (PUBLIC as a pseudo-role account,
Oracle's default PUBLIC grants kept out of every snapshot), be filterable in the accounts admin
and the API (Oracle-maintained accounts), and reach the findings (PUBLIC_GRANTS, a proxy into a
DBA, a dormant privileged account). Only `oracledb.connect` is replaced, by the recorded server.
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accountsync.facts import record_server_facts
from accountsync.models import AccountChangeLog, AccountPermission, CoverageGapEpisode, InstanceAccount
from findings.models import Finding
from sync.services import sync_accounts
from tests.accountsync.oracle_rows import from_root, load, recorded_server

MAINTAINED = {"CONNECT", "DBA", "DBSNMP", "SELECT_CATALOG_ROLE", "SYS", "SYSTEM", "XS$NULL"}


@pytest.fixture
def synced(db, monkeypatch, make_instance):
    recorded_server(monkeypatch, load("catalog_19c.json"))
    instance = make_instance("oracle", port=1521, database_name="ORCLPDB1", name="ora-prod")
    result = sync_accounts(instance=instance, sync_type="manual_single")
    assert result["success"], result["message"]
    return instance, result


def test_sync_stores_public_defaults_once_and_the_rest_as_the_public_account(synced) -> None:
    instance, result = synced
    assert result["details"]["container"] == "ORCLPDB1"
    public = record_server_facts(result["details"])["public_grants"]
    assert public["oracle_defaults"] == 3 and len(public["privileges"]) == 5
    snapshots = {
        p.account.identity: p.snapshot
        for p in AccountPermission.objects.filter(instance=instance, valid_to__isnull=True).select_related("account")
    }
    assert {p["privilege"] + " " + p["scope"] for p in snapshots["PUBLIC"]["privileges"]} == {
        "SELECT object:APP_OWNER.PRICES",
        "READ object:SYS.ETL_DIR",
    }
    for snap in snapshots.values():
        assert not any(p["scope"] == "object:SYS.DBMS_LOB" for p in snap["privileges"])
    open_findings = Finding.objects.filter(instance=instance, is_open=True)
    findings = set(open_findings.values_list("account__identity", "rule_code"))
    assert ("PUBLIC", "PUBLIC_GRANTS") in findings
    assert ("APP_SRV", "SUPERUSER") in findings  # a proxy into JR_DBA, a DBA
    assert ("DEV_DEPLOY", "DORMANT_PRIVILEGED") in findings  # no login since 2025-12-01
    assert ("STALE_OPEN", "PASSWORD_EXPIRED") in findings  # ACCOUNT_STATUS still says OPEN


def test_oracle_maintained_accounts_are_marked_and_filterable(synced, admin_user) -> None:
    instance, _result = synced
    accounts = InstanceAccount.objects.filter(instance=instance)
    assert {a.identity for a in accounts if a.attributes.get("oracle_maintained")} == MAINTAINED
    assert accounts.get(identity="SYS").attributes["last_login"] == "2026-11-22"

    client = Client()
    client.force_login(admin_user)
    url = reverse("admin:accountsync_instanceaccount_changelist")
    maintained = client.get(url, {"oracle_maintained": "1", "instance__id__exact": instance.pk})
    assert maintained.status_code == 200
    assert {a.identity for a in maintained.context["cl"].queryset} == MAINTAINED
    others = client.get(url, {"oracle_maintained": "0", "instance__id__exact": instance.pk})
    shown = {a.identity for a in others.context["cl"].queryset}
    assert shown and not shown & MAINTAINED and "PUBLIC" in shown

    token, _ = Token.objects.get_or_create(user=admin_user)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    body = api.get("/api/v1/accounts/", {"instance": instance.pk, "oracle_maintained": "true", "page_size": 100})
    assert body.status_code == 200, body.content
    assert {a["identity"] for a in body.json()["results"]} == MAINTAINED
    body = api.get("/api/v1/accounts/", {"instance": instance.pk, "oracle_maintained": "false", "page_size": 100})
    listed = {a["identity"] for a in body.json()["results"]}
    assert listed == shown  # every other account, those without the attribute (PUBLIC) included


def test_a_sync_of_the_root_container_completes_with_a_gap_per_pdb(db, monkeypatch, make_instance) -> None:
    recorded_server(monkeypatch, from_root(load("catalog_19c.json"), container_data=False))
    instance = make_instance("oracle", port=1521, database_name="ORCLCDB", name="ora-root")
    result = sync_accounts(instance=instance, sync_type="manual_single")
    assert result["success"], result["message"]
    assert result["details"]["container"] == "CDB$ROOT"
    gaps = {g["scope"]: g for g in result["details"]["coverage"]["gaps"]}
    assert sorted(gaps) == ["container:ORCLPDB1", "container:SALESPDB"]
    assert "register PDB SALESPDB as its own instance" in gaps["container:SALESPDB"]["fix"]
    assert "completed with gaps" in result["message"]


def _picture(instance) -> dict[str, object]:
    return {
        "active": set(
            InstanceAccount.objects.filter(instance=instance, is_active=True).values_list("identity", flat=True)
        ),
        "snapshots": set(
            AccountPermission.objects.filter(instance=instance, valid_to__isnull=True).values_list("id", "digest")
        ),
        "log": AccountChangeLog.objects.filter(instance=instance).count(),
        "findings": set(
            Finding.objects.filter(instance=instance, is_open=True).values_list("account__identity", "rule_code")
        ),
    }


def test_the_root_reads_each_pdb_and_keeps_a_closed_one_as_last_known(db, monkeypatch, make_instance) -> None:
    """Sync 1 reads SALESPDB (open), sync 2 finds it MOUNTED (nothing changes), sync 3 reads it again."""
    fixture = load("catalog_19c.json")
    state = recorded_server(monkeypatch, from_root(fixture, salespdb_open=True))
    instance = make_instance("oracle", port=1521, database_name="ORCLCDB", name="ora-cdb")
    first = sync_accounts(instance=instance, sync_type="manual_single")
    assert first["success"], first["message"]
    assert first["details"]["pdbs_read"] == ["ORCLPDB1", "SALESPDB"] and first["details"]["coverage"]["gaps"] == []
    before = _picture(instance)
    assert {"C##AUDITOR", "ORCLPDB1::C##AUDITOR", "SALESPDB::C##AUDITOR", "SALESPDB::SALES_APP"} <= before["active"]
    assert ("SALESPDB::SALES_DBA", "SUPERUSER") in before["findings"]  # DBA granted locally in SALESPDB
    sales_dba = InstanceAccount.objects.get(instance=instance, identity="SALESPDB::SALES_DBA")
    assert sales_dba.attributes["container"] == "SALESPDB" and sales_dba.is_superuser

    # sync 2: SALESPDB was closed (MOUNTED): the CDB_ views show nothing of it
    state["fixture"] = from_root(fixture)
    state["views"] = state["fixture"]["views"]
    second = sync_accounts(instance=instance, sync_type="manual_single")
    assert second["success"], second["message"]
    assert _picture(instance) == before  # no deactivation, no new snapshot, no change entry, no finding resolved
    gaps = {g["scope"]: g for g in second["details"]["coverage"]["gaps"]}
    assert list(gaps) == ["container:SALESPDB"] and "MOUNTED" in gaps["container:SALESPDB"]["reason"]
    carried = {i for i in before["active"] if i.startswith("SALESPDB::")}
    assert second["details"]["inventory"]["carried"] == len(carried) and len(carried) >= 5

    # sync 3: open again, and meanwhile SALES_DBA lost DBA (granted locally there)
    state["fixture"] = from_root(fixture, salespdb_open=True)
    views = state["fixture"]["views"]
    rp = views["CDB_ROLE_PRIVS"]
    rp["rows"] = [r for r in rp["rows"] if not (r[0] == "SALES_DBA" and r[-1] == 4)]
    state["views"] = views
    third = sync_accounts(instance=instance, sync_type="manual_single")
    assert third["success"], third["message"]
    assert third["details"]["coverage"]["closed"] == ["container:SALESPDB"]
    assert not CoverageGapEpisode.objects.filter(instance=instance, closed_at__isnull=True).exists()
    entries = AccountChangeLog.objects.filter(instance=instance).order_by("id")[before["log"] :]
    assert [(e.account.identity, e.change_type) for e in entries] == [("SALESPDB::SALES_DBA", "privileges_changed")]
    assert ("SALESPDB::SALES_DBA", "SUPERUSER") not in _picture(instance)["findings"]

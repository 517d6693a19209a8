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

from accountsync.models import AccountPermission, InstanceAccount
from findings.models import Finding
from sync.services import sync_accounts
from tests.accountsync.oracle_rows import load, recorded_server

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
    public = result["details"]["public_grants"]
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
    fixture = load("catalog_19c.json")
    fixture["views"]["V$CONTAINERS"] = fixture["variants"]["V$CONTAINERS from CDB$ROOT"]
    recorded_server(monkeypatch, fixture)
    instance = make_instance("oracle", port=1521, database_name="ORCLCDB", name="ora-root")
    result = sync_accounts(instance=instance, sync_type="manual_single")
    assert result["success"], result["message"]
    assert result["details"]["container"] == "CDB$ROOT"
    gaps = {g["scope"]: g for g in result["details"]["coverage"]["gaps"]}
    assert sorted(gaps) == ["container:ORCLPDB1", "container:SALESPDB"]
    assert "register PDB SALESPDB as its own instance" in gaps["container:SALESPDB"]["fix"]
    assert "completed with gaps" in result["message"]

"""A campaign on a live MariaDB, from creation to evidence export, by two reviewers who cannot see each other's items.

Real accounts: the test creates uniquely named users and a role on the local MariaDB, syncs the server
through the real engine (``sync_accounts``), starts a campaign over that instance (every active user on
it, including whatever else lives on the server), and has dave and erin decide through the API with
their own tokens. A GRANT made after the start must not change what the items show; closing makes the
campaign read-only; the evidence CSV holds every item. Everything created on the server is dropped.
"""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest

from accountsync.models import InstanceAccount
from reviews.models import ReviewItem
from sync.services import sync_accounts
from tests.livedb import MARIADB

pytestmark = [pytest.mark.live, pytest.mark.django_db]


def synced(instance) -> None:
    instance.refresh_from_db()
    result = sync_accounts(instance=instance, sync_type="manual_single", force=True)
    assert result["success"], result["message"]


@pytest.fixture
def server(mariadb_admin, unique_prefix, make_instance, make_credential):
    p = unique_prefix
    cur = mariadb_admin.cursor()
    made: list[str] = []

    def run(statement: str) -> None:
        cur.execute(statement)

    try:
        run(f"CREATE DATABASE `{p}_sales`")
        run(f"CREATE ROLE `{p}_rw`")
        made.append(f"ROLE `{p}_rw`")
        run(f"GRANT SELECT, INSERT ON `{p}_sales`.* TO `{p}_rw`")
        for name in ("ann", "bo", "cy", "di"):
            run(f"CREATE USER `{p}_{name}`@'%' IDENTIFIED BY 'Pw-{p}-x1'")
            made.append(f"USER `{p}_{name}`@'%'")
        run(f"GRANT `{p}_rw` TO `{p}_ann`@'%'")
        run(f"GRANT SELECT ON `{p}_sales`.* TO `{p}_bo`@'%' WITH GRANT OPTION")
        run(f"GRANT PROCESS ON *.* TO `{p}_cy`@'%'")
        instance = make_instance(
            "mysql",
            name=f"live-{p}",
            port=MARIADB["port"],
            credential=make_credential(name=f"root-{p}", username="root", password=""),
        )

        def grants(user: str) -> str:
            cur.execute(f"SHOW GRANTS FOR `{p}_{user}`@'%'")
            return "\n".join(row[0] for row in cur.fetchall())

        yield {"prefix": p, "instance": instance, "run": run, "grants": grants}
    finally:
        for what in reversed(made):
            kind, _, name = what.partition(" ")
            cur.execute(f"DROP {kind} IF EXISTS {name}")
        cur.execute(f"DROP DATABASE IF EXISTS `{p}_sales`")


def ident(p: str, name: str) -> str:
    return f"'{p}_{name}'@'%'"


def test_campaign_from_creation_to_evidence_on_mariadb(server, alice, dave, erin, api_of):
    p, instance = server["prefix"], server["instance"]
    synced(instance)
    ours = {ident(p, n) for n in ("ann", "bo", "cy", "di")}
    assert ours <= set(InstanceAccount.objects.filter(instance=instance).values_list("identity", flat=True))

    created = api_of(alice).post(
        "/api/v1/review-campaigns/",
        {
            "name": f"Live review {p}",
            "instances": [instance.name],
            "reviewers": ["dave", "erin"],
            "due_date": (date.today() + timedelta(days=10)).isoformat(),
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    cid = created.json()["id"]
    items = {i.identity: i for i in ReviewItem.objects.filter(campaign_id=cid)}
    assert ours <= set(items)
    ann = items[ident(p, "ann")]
    assert {(g["scope"], g["privilege"], tuple(g["via"])) for g in ann.access} == {
        (f"database:{p}_sales", "SELECT", (f"'{p}_rw'",)),
        (f"database:{p}_sales", "INSERT", (f"'{p}_rw'",)),
    }
    bo = items[ident(p, "bo")]
    assert [(g["scope"], g["privilege"], g["grantable"]) for g in bo.access] == [
        (f"database:{p}_sales", "SELECT", True)
    ]
    assert items[ident(p, "di")].access == []

    # each reviewer, with their own token, sees exactly their own items: disjoint, together all of them
    seen = {}
    for reviewer in (dave, erin):
        client = api_of(reviewer)
        rows, url = [], f"/api/v1/review-campaigns/{cid}/items/?page_size=200"
        while url:
            page = client.get(url).json()
            rows += page["results"]
            url = page["next"]
        seen[reviewer.username] = {r["identity"] for r in rows}
        assert {r["reviewer_username"] for r in rows} == {reviewer.username}
        other = next(i for i in items.values() if i.reviewer_id != reviewer.pk)
        assert client.get(f"/api/v1/review-items/{other.pk}/").status_code == 404
    assert not seen["dave"] & seen["erin"]
    assert seen["dave"] | seen["erin"] == set(items)
    assert seen["dave"] and seen["erin"]

    # a grant after the start changes the account, not the item under review
    server["run"](f"GRANT UPDATE ON `{p}_sales`.* TO `{p}_bo`@'%'")
    synced(instance)
    bo.refresh_from_db()
    assert [g["privilege"] for g in bo.access] == ["SELECT"]

    def decide(item, body):
        reviewer = dave if item.reviewer_id == dave.pk else erin
        response = api_of(reviewer).post(f"/api/v1/review-items/{item.pk}/decide/", body, format="json")
        assert response.status_code == 200, response.json()
        return response.json()

    revoked = decide(ann, {"decision": "revoke", "comment": "moved to another team"})
    assert revoked["revoke_roles"] == [f"'{p}_rw'"] and revoked["revoke_privileges"] == []
    assert revoked["script"]  # the generated revoke script (or the note that the generator is not there yet)
    changed = decide(
        bo,
        {
            "decision": "change",
            "comment": "no grant option",
            "revoke": [f"database:{p}_sales|SELECT"],
            "target": "SELECT only",
        },
    )
    assert changed["revoke_privileges"] == [[f"database:{p}_sales", "SELECT"]]
    decide(items[ident(p, "cy")], {"decision": "keep", "comment": "monitoring"})
    # nothing was executed on the server: ann still holds the role, bo still has SELECT with GRANT OPTION
    assert f"`{p}_rw`" in server["grants"]("ann")
    assert "WITH GRANT OPTION" in server["grants"]("bo")

    closed = api_of(alice).post(f"/api/v1/review-campaigns/{cid}/close/")
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    late = api_of(dave if items[ident(p, "di")].reviewer_id == dave.pk else erin).post(
        f"/api/v1/review-items/{items[ident(p, 'di')].pk}/decide/", {"decision": "keep"}, format="json"
    )
    assert late.status_code == 409

    evidence = api_of(alice).get(f"/api/v1/review-campaigns/{cid}/evidence/")
    assert evidence.status_code == 200
    body = b"".join(evidence.streaming_content).decode("utf-8").lstrip("\ufeff")
    rows = {r["account"]: r for r in csv.DictReader(io.StringIO(body))}
    assert set(rows) == {i if not i.startswith(("=", "+", "-", "@")) else "'" + i for i in items}
    assert rows[ident(p, "ann")]["decision"] == "revoke"
    assert rows[ident(p, "bo")]["decision"] == "change" and rows[ident(p, "bo")]["target"] == "SELECT only"
    assert rows[ident(p, "cy")]["decision"] == "keep"
    assert rows[ident(p, "di")]["decision"] == "pending"
    assert f"database:{p}_sales · SELECT (grantable) · via direct" == rows[ident(p, "bo")]["access"]
    assert {rows[ident(p, n)]["decided_by"] for n in ("ann", "bo", "cy")} <= {"dave", "erin"}

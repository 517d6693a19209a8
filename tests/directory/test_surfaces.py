"""Where the person shows: the account page, the directory admin, the API, the accounts export.

Accounts are stored by a real apply of a catalog; people are stored as a good directory read leaves them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.test import Client

from accountsync.adapters.base import AccountRecord, Catalog
from accountsync.models import InstanceAccount
from accountsync.services import account_sync_apply
from directory.models import AccountPersonLink, DirectoryRead, Person
from directory.services import RULE_ORPHANED, instance_relink
from findings.models import Finding

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def role_groups(db):
    from sync.roles import ensure_role_groups

    ensure_role_groups()


def person(uid: str, status: str = "active", **kw) -> Person:
    return Person.objects.create(
        guid=f"guid-{uid}",
        dn=f"uid={uid},ou=people,dc=corp",
        uid=uid,
        status=status,
        status_changed_at=NOW,
        first_seen_at=NOW,
        last_seen_at=NOW,
        **kw,
    )


@pytest.fixture
def linked(make_instance):
    """MySQL accounts ann, ben (disabled person) and svc_payroll (nobody), linked after a good read."""
    inst = make_instance("mysql", name="dir-surfaces")
    catalog = Catalog(
        accounts=[
            AccountRecord(identity=f"'{n}'@'%'", username=n, host="%", kind="user")
            for n in ("ann", "ben", "svc_payroll")
        ]
    ).finalize()
    assert account_sync_apply(instance=inst, catalog=catalog).success
    DirectoryRead.objects.create(started_at=NOW, finished_at=NOW, outcome="ok", people=3)
    boss = person("boss", name="Bo Boss")
    person("ann", name="Ann Archer", department="Finance", manager=boss, mail="ann@corp.example")
    person("ben", "disabled", name="Ben Baker")
    instance_relink(instance=inst, now=NOW)
    return inst


def client_as(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_account_page_shows_the_person_and_the_status_line(linked, charlie):
    ann = InstanceAccount.objects.get(instance=linked, username="ann")
    DirectoryRead.objects.create(
        started_at=datetime(2026, 12, 1, 13, 0, tzinfo=UTC),
        finished_at=datetime(2026, 12, 1, 13, 0, tzinfo=UTC),
        outcome="failed",
        error_kind="unreachable",
        error="Can't contact LDAP server",
    )
    html = client_as(charlie).get(f"/admin/accountsync/instanceaccount/{ann.pk}/change/").content.decode()
    section = html[html.index('id="wf-account-person"') :]
    section = section[: section.index("</fieldset>")]
    for text in ("Ann Archer", "Finance", "Bo Boss", "Active", "ann@corp.example", "Account name = directory username"):
        assert text in section, text
    assert "Directory last read OK at" in section and "Last attempt failed at" in section
    assert "unreachable: Can&#x27;t contact LDAP server" in section
    assert html.index('id="wf-account-person"') < html.index('id="wf-account-findings"')

    nobody = InstanceAccount.objects.get(instance=linked, username="svc_payroll")
    html = client_as(charlie).get(f"/admin/accountsync/instanceaccount/{nobody.pk}/change/").content.decode()
    assert "No person is linked to this account" in html


def test_directory_admin_pages_render_for_a_viewer(linked, charlie):
    client = client_as(charlie)
    ann = Person.objects.get(uid="ann")
    for url in (
        "/admin/directory/person/",
        f"/admin/directory/person/{ann.pk}/change/",
        "/admin/directory/directorygroup/",
        "/admin/directory/accountpersonlink/",
        "/admin/directory/accountgrouplink/",
        "/admin/directory/accountmapping/",
        "/admin/directory/directoryread/",
    ):
        assert client.get(url).status_code == 200, url
    page = client.get(f"/admin/directory/person/{ann.pk}/change/").content.decode()
    assert "&#x27;ann&#x27;@&#x27;%&#x27;" in page or "'ann'@'%'" in page  # the person's accounts
    status = client.get("/admin/directory/directoryread/").content.decode()
    assert 'id="wf-directory-status"' in status and "Directory last read OK at" in status
    assert client.get("/admin/directory/accountmapping/add/").status_code == 403  # viewers do not map


def test_a_mapping_added_in_the_admin_links_relinks_and_is_in_the_model_history(linked, alice):
    from auditlog.models import LogEntry

    ben = Person.objects.get(uid="ben")
    response = client_as(alice).post(
        "/admin/directory/accountmapping/add/",
        {"pattern": "SVC_PAY*", "account": "", "instance": "", "person": ben.pk, "priority": 10, "note": "payroll"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    link = AccountPersonLink.objects.get(account__instance=linked, account__username="svc_payroll")
    assert (link.person, link.rule, link.matched) == (ben, "mapping", "SVC_PAY*")
    # ben is disabled: svc_payroll is now orphaned access too
    orphaned = Finding.objects.filter(instance=linked, rule_code=RULE_ORPHANED, is_open=True)
    assert set(orphaned.values_list("account__username", flat=True)) == {"ben", "svc_payroll"}
    entry = LogEntry.objects.get(content_type__model="accountmapping", action=LogEntry.Action.CREATE)
    assert entry.actor == alice and "pattern" in entry.changes_dict


def test_the_api_person_people_and_status(linked, charlie, api_client):
    client = api_client(charlie)
    ann = InstanceAccount.objects.get(instance=linked, username="ann")
    body = client.get(f"/api/v1/accounts/{ann.pk}/person/").json()
    assert body["person"]["name"] == "Ann Archer" and body["person"]["manager"]["uid"] == "boss"
    assert body["rule"] == "username" and body["group"] is None
    assert body["directory"]["last_ok_at"] and body["directory"]["text"].startswith("Directory last read OK")
    missing = client.get("/api/v1/accounts/999999/person/")
    assert missing.status_code == 404 and missing["Content-Type"].startswith("application/json")

    people = client.get("/api/v1/people/", {"status": "disabled"}).json()
    assert [p["uid"] for p in people["results"]] == ["ben"]
    assert [a["identity"] for a in people["results"][0]["accounts"]] == ["'ben'@'%'"]
    assert client.get("/api/v1/directory-status/").json()["people"] == 3
    assert api_client(None).get("/api/v1/people/").status_code == 401


def test_the_accounts_export_has_the_person_columns(linked, charlie, api_client):
    response = api_client(charlie).get("/api/v1/accounts/export/", {"format": "json", "instance": linked.pk})
    rows = {r["username"]: r for r in json.loads(b"".join(response.streaming_content))}
    assert (rows["ann"]["person_uid"], rows["ann"]["person_manager"], rows["ann"]["person_status"]) == (
        "ann",
        "boss",
        "active",
    )
    assert rows["ben"]["person_status"] == "disabled"
    assert rows["svc_payroll"]["person_uid"] is None


def test_with_the_cross_check_off_the_account_page_says_so_not_never_read(make_instance, charlie, monkeypatch):
    from directory.selectors import status_text

    monkeypatch.delenv("WHALEFALL_DIRECTORY_URI", raising=False)
    assert "cross-check is off" in status_text()
    monkeypatch.setenv("WHALEFALL_DIRECTORY_URI", "ldaps://127.0.0.1:1")  # switched on, never read yet
    assert status_text() == "The directory has never been read successfully."
    monkeypatch.setenv("WHALEFALL_DIRECTORY_URI", "http://nope")  # wrong: counts as on, the read says why
    assert "never been read" in status_text()

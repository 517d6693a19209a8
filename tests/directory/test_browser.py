"""The directory pages at 1366 px in a real chromium: nothing clipped or scrolling sideways.

Long names, a long department, a Windows group login with many members and a long failure reason
are what break a layout; the check is the layout test's (tests/browser/conftest.py ``overflow``).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accountsync.adapters.base import AccountRecord, Catalog
from accountsync.models import InstanceAccount
from accountsync.services import account_sync_apply
from directory.models import AccountMapping, DirectoryGroup, DirectoryRead, Person
from directory.services import instance_relink
from instances.models import Credential, Instance
from tests.admin.conftest import role_groups  # noqa: F401  (autouse)
from tests.browser.conftest import admin_login, overflow, page  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

LONG = "payments-settlement-eu-west-1-primary-cluster"


def directory_fleet() -> dict[str, int]:
    now = timezone.now()
    cred = Credential(name="mon", username="monitor")
    cred.set_password("x")
    cred.save()
    inst = Instance.objects.create(
        name=f"{LONG}-mssql", db_type="sqlserver", host="127.0.0.1", port=1433, credential=cred
    )
    members = [f"member{i:02d}" for i in range(30)]
    accounts = [
        AccountRecord(
            identity="CORP\\" + f"{LONG}-owner",
            username="CORP\\" + f"{LONG}-owner",
            kind="login",
            attributes={"type": "U"},
        ),
        AccountRecord(identity="CORP\\dba-team", username="CORP\\dba-team", kind="login", attributes={"type": "G"}),
    ]
    assert account_sync_apply(instance=inst, catalog=Catalog(accounts=accounts).finalize()).success
    DirectoryRead.objects.create(
        started_at=now - timedelta(hours=2), finished_at=now - timedelta(hours=2), outcome="ok", people=31
    )
    DirectoryRead.objects.create(
        started_at=now,
        finished_at=now,
        outcome="failed",
        error_kind="tls",
        error="TLS handshake failed (certificate not trusted or not issued for this name): "
        + "Can't contact LDAP server "
        + "x" * 180,
    )

    def person(uid: str, **kw) -> Person:
        return Person.objects.create(
            guid=uid,
            dn=f"uid={uid},ou=people,ou={LONG},dc=corp,dc=example",
            uid=uid,
            status_changed_at=now,
            first_seen_at=now,
            last_seen_at=now,
            **kw,
        )

    boss = person("boss", name="Bo " + "Boss-" * 8)
    owner = person(
        f"{LONG}-owner",
        name="Owner " + LONG,
        department=f"{LONG} operations and settlement",
        manager=boss,
        mail=f"{LONG}-owner@corp.example",
    )
    group = DirectoryGroup.objects.create(
        guid="g", dn=f"cn=dba-team,ou=groups,ou={LONG}", name="dba-team", first_seen_at=now, last_seen_at=now
    )
    for i, uid in enumerate(members):
        group.members.add(
            person(uid, name=f"Member {uid} of {LONG}", department=LONG, status="disabled" if i % 7 == 0 else "active")
        )
    AccountMapping.objects.create(pattern=f"svc_{LONG}_*", instance=inst, person=owner, note=f"batch jobs of {LONG}")
    instance_relink(instance=inst)
    return {
        "owner_account": InstanceAccount.objects.get(username__endswith="-owner").pk,
        "group_account": InstanceAccount.objects.get(username="CORP\\dba-team").pk,
        "owner": owner.pk,
    }


def test_directory_pages_fit_at_1366(live_server, admin_login):  # noqa: F811
    ids = directory_fleet()
    tab = admin_login()
    urls = [
        f"/admin/accountsync/instanceaccount/{ids['owner_account']}/change/",
        f"/admin/accountsync/instanceaccount/{ids['group_account']}/change/",
        "/admin/directory/person/",
        f"/admin/directory/person/{ids['owner']}/change/",
        "/admin/directory/directoryread/",
        "/admin/directory/accountpersonlink/",
        "/admin/directory/directorygroup/",
        "/admin/directory/accountgrouplink/",
        "/admin/directory/accountmapping/",
    ]
    for url in urls:
        tab.goto(live_server.url + url)
        assert overflow(tab) == [], url
    tab.goto(live_server.url + urls[1])
    assert tab.locator("#wf-account-person .wf-group-members tbody tr").count() == 30
    assert tab.locator("#wf-account-person").get_by_text("lets in 30 people").count() == 1

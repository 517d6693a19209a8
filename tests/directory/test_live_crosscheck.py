"""The cross-check live: slapd people, real MariaDB and PostgreSQL accounts, real WhaleFall syncs.

Accounts are created with real CREATE USER / CREATE ROLE named after directory users (unique per run)
and dropped after; the assertions look only at this test's accounts, since the servers and the
session's directory are shared with other tests.
"""

from __future__ import annotations

import pytest

from accountsync.models import InstanceAccount
from directory.models import AccountPersonLink, Person
from directory.selectors import account_managers, directory_status
from directory.services import RULE_ORPHANED, directory_sync
from findings.models import Finding
from sync.services import sync_accounts
from tests.livedb import MARIADB, POSTGRES

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=False)]


@pytest.fixture
def mariadb_instance(make_instance, make_credential):
    return make_instance(
        "mysql",
        port=MARIADB["port"],
        name="dir-mariadb",
        credential=make_credential(name="root", username="root", password=""),
    )


@pytest.fixture
def postgres_instance(make_instance, make_credential):
    return make_instance(
        "postgresql",
        port=POSTGRES["port"],
        name="dir-postgres",
        database_name="postgres",
        credential=make_credential(name="pg", username="postgres", password=""),
    )


@pytest.fixture
def db_accounts(mariadb_admin, postgres_admin, unique_prefix):
    """Create database accounts by name on both servers; every one is dropped after the test."""
    made: list[str] = []

    def create(*names: str) -> None:
        for name in names:
            with mariadb_admin.cursor() as cur:
                cur.execute(f"CREATE USER '{name}'@'%' IDENTIFIED BY 'Db-Pa55-{name}'")
            postgres_admin.execute(f"CREATE ROLE \"{name}\" LOGIN PASSWORD 'Db-Pa55-{name}'")
            made.append(name)

    yield create
    for name in made:
        with mariadb_admin.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{name}'@'%'")
        postgres_admin.execute(f'DROP ROLE IF EXISTS "{name}"')


def open_orphans(instance, prefix: str) -> dict[str, str]:
    rows = Finding.objects.filter(
        instance=instance, rule_code=RULE_ORPHANED, is_open=True, account__username__startswith=prefix
    )
    return {f.account.username: f.detail["status"] for f in rows.select_related("account")}


def link_of(instance, username: str) -> tuple[str, str]:
    link = AccountPersonLink.objects.select_related("person").get(
        account__instance=instance, account__username=username
    )
    return link.rule, link.person.uid


def test_crosscheck_over_mariadb_and_postgresql(
    directory_env, db_accounts, mariadb_admin, mariadb_instance, postgres_instance, unique_prefix
):
    ldap, p = directory_env, unique_prefix
    boss, ann, ben, cal, dee = (f"{p}{n}" for n in ("boss", "ann", "ben", "cal", "dee"))
    ldap.add_person(boss, cn="Bo Boss", department="Finance")
    ldap.add_person(ann, cn="Ann Archer", department="Finance", manager=boss)
    ldap.add_person(ben, cn="Ben Baker")
    ldap.add_person(cal, cn="Cal Carter")
    ldap.add_person(dee, cn="Dee Dora", mail=f"{p}dora@whalefall.test")  # linked by the mail local part
    db_accounts(ann, ben, cal, f"{p}dora", f"{p}nobody")

    first = directory_sync(via="cli")
    assert first.outcome == "ok", first.error
    for inst in (mariadb_instance, postgres_instance):
        assert sync_accounts(instance=inst, sync_type="manual_single")["success"]
        assert link_of(inst, ann) == ("username", ann)
        assert link_of(inst, f"{p}dora") == ("mail", dee)
        assert not AccountPersonLink.objects.filter(account__instance=inst, account__username=f"{p}nobody").exists()
        assert open_orphans(inst, p) == {}
    person = Person.objects.get(uid=ann)
    assert (person.name, person.department, person.manager.uid, person.status) == (
        "Ann Archer",
        "Finance",
        boss,
        "active",
    )
    ann_accounts = list(InstanceAccount.objects.filter(username=ann).values_list("pk", flat=True))
    assert account_managers(account_ids=ann_accounts) == dict.fromkeys(ann_accounts, boss)

    ldap.disable(ben)
    ldap.delete(cal)
    assert directory_sync(via="cli").outcome == "ok"
    assert Person.objects.get(uid=ben).status == "disabled"
    assert Person.objects.get(uid=cal).status == "deleted"
    for inst in (mariadb_instance, postgres_instance):
        assert open_orphans(inst, p) == {ben: "disabled", cal: "deleted"}
        # the next account sync re-evaluates from the stored people: the same findings, not new ones
        before = set(Finding.objects.filter(instance=inst, rule_code=RULE_ORPHANED).values_list("pk", flat=True))
        assert sync_accounts(instance=inst, sync_type="manual_single")["success"]
        after = set(Finding.objects.filter(instance=inst, rule_code=RULE_ORPHANED).values_list("pk", flat=True))
        assert after == before and open_orphans(inst, p) == {ben: "disabled", cal: "deleted"}

    # the database side is cleaned up: ben's MariaDB account is dropped; its finding resolves there only
    with mariadb_admin.cursor() as cur:
        cur.execute(f"DROP USER '{ben}'@'%'")
    assert sync_accounts(instance=mariadb_instance, sync_type="manual_single")["success"]
    assert open_orphans(mariadb_instance, p) == {cal: "deleted"}
    assert open_orphans(postgres_instance, p) == {ben: "disabled", cal: "deleted"}


def test_a_directory_outage_keeps_flags_and_findings(
    directory_env, db_accounts, postgres_instance, unique_prefix, monkeypatch
):
    ldap, p = directory_env, unique_prefix
    ann, ben = f"{p}ann", f"{p}ben"
    ldap.add_person(ann)
    ldap.add_person(ben)
    db_accounts(ann, ben)
    ldap.disable(ben)
    assert directory_sync().outcome == "ok"
    assert sync_accounts(instance=postgres_instance, sync_type="manual_single")["success"]
    assert open_orphans(postgres_instance, p) == {ben: "disabled"}
    flags = dict(Person.objects.filter(uid__startswith=p).values_list("uid", "status"))
    good = directory_status().last_ok_at

    with ldap.outage():
        failed = directory_sync()
        assert (failed.outcome, failed.error_kind) == ("failed", "unreachable")
        # an account sync while the directory is down re-evaluates from the last known flags
        assert sync_accounts(instance=postgres_instance, sync_type="manual_single")["success"]
    assert dict(Person.objects.filter(uid__startswith=p).values_list("uid", "status")) == flags
    assert open_orphans(postgres_instance, p) == {ben: "disabled"}
    status = directory_status()
    assert status.last_ok_at == good and status.last_failed_at is not None and status.error_kind == "unreachable"

    # back up, but the reader's password is wrong: refused bind, classified, and still nothing changes
    ldap.delete(ann)
    monkeypatch.setenv("WHALEFALL_DIRECTORY_BIND_PASSWORD", "not-the-password")
    refused = directory_sync()
    assert (refused.outcome, refused.error_kind) == ("failed", "bind")
    assert "not-the-password" not in refused.error
    assert Person.objects.get(uid=ann).status == "active"  # deleted in the directory, but not read: not gone

    # a filter that matches nobody is a misconfiguration, not everyone leaving
    monkeypatch.setenv("WHALEFALL_DIRECTORY_BIND_PASSWORD", ldap.reader_password)
    monkeypatch.setenv("WHALEFALL_DIRECTORY_USER_FILTER", "(uid=nobody-has-this-uid)")
    empty = directory_sync()
    assert (empty.outcome, empty.error_kind) == ("failed", "partial")
    assert dict(Person.objects.filter(uid__startswith=p).values_list("uid", "status")) == flags

    monkeypatch.delenv("WHALEFALL_DIRECTORY_USER_FILTER")
    monkeypatch.setenv("WHALEFALL_DIRECTORY_USER_FILTER", "(objectClass=inetOrgPerson)")
    assert directory_sync().outcome == "ok"
    assert Person.objects.get(uid=ann).status == "deleted"
    assert open_orphans(postgres_instance, p) == {ann: "deleted", ben: "disabled"}
    assert not directory_status().failing

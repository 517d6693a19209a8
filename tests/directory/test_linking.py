"""The linking rules on plain names (every family), and SQL Server's recorded Windows logins end to end."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from directory.conf import DirectoryConf
from directory.linking import Candidate, Index, Mapping, decide, windows_name

CONF = DirectoryConf(uri="ldap://x", user_bases=("dc=x",), windows_domains=("CORP",))


def people(*rows: tuple[int, str, str, str]) -> list[Candidate]:
    return [Candidate(*row) for row in rows]


INDEX = Index.build(
    people(
        (1, "alice", "alice.smith@corp.example", "active"),
        (2, "bob", "bob@corp.example", "disabled"),
        (3, "ops", "operations@corp.example", "active"),
        (4, "carol", "shared@corp.example", "active"),
        (5, "dave", "shared@other.example", "active"),
        (6, "erin", "erin@corp.example", "deleted"),
        (7, "erin", "erin.new@corp.example", "active"),  # the uid was given to a new hire
        (8, "frank", "frank@corp.example", "deleted"),
    ),
    groups=[(10, "dba team"), (11, "old group")],
)


def link(username: str, *, kind: str = "user", db_type: str = "mysql", index: Index = INDEX, conf=CONF, **attrs):
    d = decide(
        account_id=100,
        instance_id=1,
        db_type=db_type,
        username=username,
        kind=kind,
        attributes=attrs,
        index=index,
        conf=conf,
    )
    return None if d is None else (d.rule, d.person_id, d.group_id)


@pytest.mark.parametrize(
    ("db_type", "username"),
    [("mysql", "alice"), ("postgresql", "alice"), ("oracle", "ALICE"), ("sqlserver", "Alice")],
)
def test_account_name_equal_to_the_directory_username_in_every_family(db_type, username):
    assert link(username, db_type=db_type, kind="login" if db_type == "sqlserver" else "user") == ("username", 1, None)


def test_mail_local_part_links_when_the_username_rule_does_not():
    assert link("alice.smith") == ("mail", 1, None)
    assert link("operations", db_type="postgresql") == ("mail", 3, None)


def test_a_name_shared_by_two_live_people_links_to_nobody():
    assert link("shared") is None


def test_a_reused_uid_belongs_to_the_live_person_and_a_deleted_one_still_links_alone():
    assert link("erin") == ("username", 7, None)
    assert link("frank") == ("username", 8, None)  # the leaver's account is exactly what must be found


def test_roles_are_not_people_and_unknown_names_stay_unlinked():
    assert link("alice", kind="role") is None
    assert link("svc_payroll") is None


def test_windows_logins_link_by_sam_in_configured_domains_only():
    assert windows_name("corp\\Alice") == ("CORP", "Alice")
    assert link("CORP\\alice", kind="login", db_type="sqlserver", type="U") == ("windows", 1, None)
    assert link("OTHER\\alice", kind="login", db_type="sqlserver", type="U") is None
    anydomain = DirectoryConf(uri="ldap://x", user_bases=("dc=x",))
    assert link("OTHER\\alice", kind="login", db_type="sqlserver", conf=anydomain, type="U") == ("windows", 1, None)
    for builtin in ("NT AUTHORITY\\SYSTEM", "NT SERVICE\\alice", "BUILTIN\\Administrators"):
        assert link(builtin, kind="login", db_type="sqlserver", conf=anydomain, type="U") is None


def test_a_windows_group_login_links_to_the_group_not_a_person():
    assert link("CORP\\dba team", kind="login", db_type="sqlserver", type="G") == ("windows", None, 10)
    assert link("CORP\\nobody", kind="login", db_type="sqlserver", type="G") is None


def test_the_windows_rule_never_falls_through_to_a_local_name():
    only_username = DirectoryConf(uri="ldap://x", user_bases=("dc=x",), link_rules=("username", "mail"))
    assert link("CORP\\alice", kind="login", db_type="sqlserver", conf=only_username, type="U") is None


def test_explicit_mappings_win_in_rule_order_and_patterns_are_case_insensitive():
    index = Index.build(
        people((1, "alice", "alice@corp.example", "active"), (2, "bob", "bob@corp.example", "active")),
        mappings=[
            Mapping(person_id=2, account_id=100),
            Mapping(person_id=1, pattern="SVC_PAY*"),
            Mapping(person_id=2, pattern="svc_*", instance_id=99),
        ],
    )
    assert link("alice", index=index) == ("mapping", 2, None)  # the exact account mapping first
    d = decide(
        account_id=5,
        instance_id=1,
        db_type="oracle",
        username="svc_payroll",
        kind="role",
        attributes={},
        index=index,
        conf=CONF,
    )
    assert (d.rule, d.person_id, d.matched) == ("mapping", 1, "SVC_PAY*")
    d = decide(
        account_id=5,
        instance_id=1,
        db_type="mysql",
        username="svc_other",
        kind="user",
        attributes={},
        index=index,
        conf=CONF,
    )
    assert d is None  # that pattern is only for instance 99
    late = DirectoryConf(uri="ldap://x", user_bases=("dc=x",), link_rules=("username", "mapping"))
    assert link("alice", index=index, conf=late) == ("username", 1, None)


def test_the_disabled_flag_ad_bit_and_a_configurable_attribute():
    ad = DirectoryConf()
    assert ad.is_disabled(["514"]) and not ad.is_disabled(["512"]) and not ad.is_disabled([])
    present = DirectoryConf(disabled_attr="pwdAccountLockedTime", disabled_value="*")
    assert present.is_disabled(["000001010000Z"]) and not present.is_disabled([])
    valued = DirectoryConf(disabled_attr="employeeType", disabled_value="Leaver")
    assert valued.is_disabled(["leaver"]) and not valued.is_disabled(["employee"])


# --- recorded SQL Server rows, stored by a real apply ---------------------------------------------


@pytest.mark.django_db
def test_recorded_windows_logins_link_and_a_group_login_lets_its_members_in(make_instance, monkeypatch):
    from accountsync.adapters import sqlserver
    from accountsync.models import InstanceAccount
    from accountsync.services import account_sync_apply
    from directory.models import AccountGroupLink, AccountPersonLink, DirectoryGroup, DirectoryRead, Person
    from directory.selectors import account_managers, account_people
    from directory.services import RULE_GROUP_MEMBER, RULE_ORPHANED, instance_relink
    from findings.models import Finding
    from tests.sqlserver_recorded import recorded, recorded_rows

    monkeypatch.setenv("WHALEFALL_DIRECTORY_WINDOWS_DOMAINS", "CORP")
    logins = recorded()["logins"]
    for row in logins:
        if row["name"] == "CORP\\old group":
            row["is_disabled"] = False  # an enabled group login, so its members can log in
    catalog = sqlserver.build_catalog(recorded_rows(logins=logins))
    inst = make_instance(db_type="sqlserver", port=1433, name="mssql-recorded")
    assert account_sync_apply(instance=inst, catalog=catalog).success

    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    DirectoryRead.objects.create(started_at=now, finished_at=now, outcome="ok")

    def person(uid: str, status: str = "active", manager=None) -> Person:
        return Person.objects.create(
            guid=uid,
            dn=f"uid={uid},ou=people",
            uid=uid,
            name=uid.title(),
            status=status,
            manager=manager,
            status_changed_at=now,
            first_seen_at=now,
            last_seen_at=now,
        )

    boss = person("boss")
    ops = person("ops", manager=boss)
    leaver, stayer = person("leaver", "disabled"), person("stayer")
    group = DirectoryGroup.objects.create(
        guid="g1", dn="cn=old group", name="old group", first_seen_at=now, last_seen_at=now
    )
    nested = DirectoryGroup.objects.create(
        guid="g2", dn="cn=nested", name="nested", first_seen_at=now, last_seen_at=now
    )
    group.members.add(stayer)
    group.subgroups.add(nested)
    nested.members.add(leaver)

    summary = instance_relink(instance=inst, now=now)
    ops_login = InstanceAccount.objects.get(instance=inst, identity="CORP\\ops")
    group_login = InstanceAccount.objects.get(instance=inst, identity="CORP\\old group")
    assert AccountPersonLink.objects.get(account=ops_login).person == ops
    assert AccountGroupLink.objects.get(account=group_login).group == group
    linked = set(AccountPersonLink.objects.filter(account__instance=inst).values_list("account__username", flat=True))
    assert not any(name.startswith(("NT SERVICE", "NT AUTHORITY")) for name in linked)

    shown = account_people(account_ids=[group_login.pk])[group_login.pk]["group"]
    assert {(m["uid"], m["status"]) for m in shown["members"]} == {("leaver", "disabled"), ("stayer", "active")}
    assert account_managers(account_ids=[ops_login.pk, group_login.pk]) == {ops_login.pk: "boss"}

    found = Finding.objects.get(instance=inst, rule_code=RULE_GROUP_MEMBER, is_open=True)
    assert found.account == group_login and found.detail["disabled_members"]["examples"] == ["leaver"]
    assert summary["findings"]["opened"] == 1
    assert not Finding.objects.filter(rule_code=RULE_ORPHANED).exists()

    Person.objects.filter(pk=ops.pk).update(status="deleted")
    instance_relink(instance=inst, now=now)
    orphan = Finding.objects.get(instance=inst, rule_code=RULE_ORPHANED, is_open=True)
    assert orphan.account == ops_login and orphan.detail["status"] == "deleted"

"""Campaign services on real snapshots: freeze, assign, decide, close, retention and the audit trail."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from auditlog.models import LogEntry
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accountsync.adapters.base import AccountRecord, Privilege
from accountsync.effective_read import account_effective_access
from accountsync.models import InstanceAccount
from audit.models import AuditEvent
from classification.models import Classification, ClassificationAssignment
from directory.models import AccountPersonLink, Person
from reviews.models import Assignment, Campaign, CampaignStatus, Decision, ReviewItem, ReviewRetained
from reviews.services import campaign_close, campaign_create, item_decide, revocable, revoke_choices

from .conftest import apply, role, user

pytestmark = pytest.mark.django_db

DUE = date.today() + timedelta(days=14)


def make_campaign(reviewers, **kw):
    kw.setdefault("name", "Q4 production review")
    kw.setdefault("due_date", DUE)
    return campaign_create(reviewers=reviewers, **kw)


def item_of(campaign, username):
    return ReviewItem.objects.get(campaign=campaign, account__username=username)


def test_start_freezes_effective_access_with_the_role_path(fleet, alice, dave, erin):
    campaign = make_campaign([dave, erin], actor=alice, instances=[fleet["prod"]])
    assert campaign.started_at is not None and campaign.status == CampaignStatus.OPEN
    # users only (the role app_rw is not an item), every active user of the chosen instance
    assert sorted(campaign.items.values_list("identity", flat=True)) == sorted(
        ["'ann'@'%'", "'bo'@'%'", "'cy'@'%'", "'=HYPERLINK(\"http://x\")'@'%'"]
    )
    ann = item_of(campaign, "ann")
    live = account_effective_access(account=InstanceAccount.objects.get(instance=fleet["prod"], username="ann"))
    assert ann.access == [g.as_dict() for g in live]
    assert {(g["scope"], g["privilege"], tuple(g["via"])) for g in ann.access} == {
        ("database:sales", "SELECT", ()),  # also reached through app_rw: the direct grant is the one shown
        ("database:sales", "INSERT", ("'app_rw'",)),
    }
    assert ann.access_at == campaign.started_at and ann.instance_name == "prod-db"


def test_frozen_access_does_not_follow_later_grants(fleet, alice, dave):
    campaign = make_campaign([dave], actor=alice, instances=[fleet["prod"]])
    before = item_of(campaign, "bo").access
    apply(  # bo gains SUPER on the server; the next sync stores it
        fleet["prod"],
        role("app_rw", privileges=[Privilege("database:sales", "INSERT"), Privilege("database:sales", "SELECT")]),
        user("ann", privileges=[Privilege("database:sales", "SELECT")], roles=["'app_rw'"]),
        user("bo", privileges=[Privilege("global", "PROCESS"), Privilege("global", "SUPER")]),
        user("cy"),
    )
    assert item_of(campaign, "bo").access == before
    assert ("global", "SUPER") not in {(g["scope"], g["privilege"]) for g in before}


def test_round_robin_splits_items_between_reviewers(fleet, alice, dave, erin):
    campaign = make_campaign([erin, dave], actor=alice, instances=[fleet["prod"]])
    counts = dict(
        (name, ReviewItem.objects.filter(campaign=campaign, reviewer_username=name).count())
        for name in ("dave", "erin")
    )
    assert counts == {"dave": 2, "erin": 2}


def test_environment_narrows_to_matching_instances(fleet, alice, dave):
    campaign = make_campaign([dave], actor=alice, environment="staging")
    assert list(campaign.items.values_list("identity", "instance_name")) == [("'dee'@'%'", "stage-db")]


def test_include_roles_adds_the_roles(fleet, alice, dave):
    campaign = make_campaign([dave], actor=alice, instances=[fleet["prod"]], include_roles=True)
    assert campaign.items.filter(kind="role", identity="'app_rw'").exists()


def test_instance_owner_assignment_with_fallback_round_robin(fleet, alice, dave, erin):
    campaign = make_campaign(
        [dave, erin], actor=alice, assignment=Assignment.INSTANCE_OWNER, owners={fleet["stage"].pk: erin}
    )
    assert set(campaign.items.filter(instance_name="stage-db").values_list("reviewer_username", flat=True)) == {"erin"}
    assert campaign.items.filter(instance_name="prod-db").count() == 4


def person(uid: str, manager=None):
    now = timezone.now()
    return Person.objects.create(
        guid=f"guid-{uid}",
        dn=f"uid={uid},ou=people",
        uid=uid,
        name=uid.title(),
        manager=manager,
        status_changed_at=now,
        first_seen_at=now,
        last_seen_at=now,
    )


def test_manager_routing_uses_the_directory_and_the_fallback(fleet, alice, dave, erin):
    """ann's owner reports to erin (her directory uid is her WhaleFall username); the others fall back to dave."""
    ann = InstanceAccount.objects.get(instance=fleet["prod"], username="ann")
    bo = InstanceAccount.objects.get(instance=fleet["prod"], username="bo")
    AccountPersonLink.objects.create(
        account=ann, person=person("annie", manager=person("erin")), rule="name", linked_at=timezone.now()
    )
    AccountPersonLink.objects.create(
        account=bo, person=person("bob", manager=person("nobody")), rule="name", linked_at=timezone.now()
    )
    campaign = make_campaign(
        [dave], actor=alice, instances=[fleet["prod"]], assignment=Assignment.MANAGER, fallback_reviewer=dave
    )
    assert item_of(campaign, "ann").reviewer == erin
    # bo's manager has no WhaleFall user: the fallback reviewer gets him, as everyone without a manager
    assert set(campaign.items.exclude(account=ann).values_list("reviewer_username", flat=True)) == {"dave"}
    assert set(campaign.reviewers.values_list("username", flat=True)) == {"dave", "erin"}


def test_classification_selection_keeps_only_its_accounts(fleet, alice, dave):
    bo = InstanceAccount.objects.get(instance=fleet["prod"], username="bo")
    dee = InstanceAccount.objects.get(instance=fleet["stage"], username="dee")
    chosen = Classification.objects.create(code="reviews-test", name="Can grant (test)")
    for account in (bo, dee):
        ClassificationAssignment.objects.create(
            account=account,
            classification=chosen,
            instance=account.instance,
            source="manual",
            assigned_at=timezone.now(),
        )
    campaign = make_campaign([dave], actor=alice, classification=chosen, instances=[fleet["prod"]])
    assert list(campaign.items.values_list("identity", flat=True)) == ["'bo'@'%'"]
    campaign.refresh_from_db()
    assert campaign.classification_name == "Can grant (test)"
    everywhere = make_campaign([dave], actor=alice, classification=chosen, name="all instances")
    assert sorted(everywhere.items.values_list("identity", flat=True)) == ["'bo'@'%'", "'dee'@'%'"]


def test_an_empty_selection_is_refused(fleet, alice, dave):
    with pytest.raises(ValidationError) as caught:
        make_campaign([dave], actor=alice, environment="development")
    assert caught.value.code == "empty_selection"
    assert not Campaign.objects.exists()


def test_revocable_names_direct_grants_and_the_roles_that_carry_the_rest(fleet, alice, dave):
    ann = item_of(make_campaign([dave], actor=alice, instances=[fleet["prod"]]), "ann")
    assert revocable(ann.access) == ([("database:sales", "SELECT")], ["'app_rw'"])
    assert revoke_choices(ann.access) == ["database:sales|SELECT", "role:'app_rw'"]


@pytest.fixture
def recorded_scripts(monkeypatch):
    """grantscripts.services.revoke_script is another engineer's (being written): record the calls at that boundary."""
    import grantscripts.services

    calls = []

    def revoke_script(*, account, privileges=(), roles=()):
        calls.append((account.identity, list(privileges), list(roles)))
        return f"REVOKE for {account.identity}: {list(privileges)} {list(roles)};"

    monkeypatch.setattr(grantscripts.services, "revoke_script", revoke_script)
    return calls


def test_decisions_keep_revoke_change(fleet, alice, dave, recorded_scripts):
    campaign = make_campaign([dave], actor=alice, instances=[fleet["prod"]])
    keep = item_decide(item=item_of(campaign, "cy"), actor=dave, decision=Decision.KEEP, comment="needed")
    assert (keep.decision, keep.script, keep.decided_by_username) == ("keep", "", "dave")
    revoke = item_decide(item=item_of(campaign, "ann"), actor=dave, decision=Decision.REVOKE, comment="left the team")
    assert recorded_scripts[-1] == ("'ann'@'%'", [("database:sales", "SELECT")], ["'app_rw'"])
    assert revoke.script.startswith("REVOKE for 'ann'@'%'")
    assert revoke.revoke_privileges == [["database:sales", "SELECT"]] and revoke.revoke_roles == ["'app_rw'"]
    change = item_decide(
        item=item_of(campaign, "bo"),
        actor=dave,
        decision=Decision.CHANGE,
        comment="no grant option",
        revoke=["database:hr|SELECT"],
        target="SELECT on hr without GRANT OPTION",
    )
    assert recorded_scripts[-1] == ("'bo'@'%'", [("database:hr", "SELECT")], [])
    assert change.target == "SELECT on hr without GRANT OPTION" and change.decided_at is not None


def test_change_and_revoke_are_validated(fleet, alice, dave, recorded_scripts):
    item = item_of(make_campaign([dave], actor=alice, instances=[fleet["prod"]]), "bo")
    for kwargs, field in [
        ({"decision": "change", "comment": "x", "revoke": ["global|SUPER"]}, "revoke"),  # not in the frozen access
        ({"decision": "change", "comment": "x", "revoke": []}, "revoke"),
        ({"decision": "revoke", "comment": "  "}, "comment"),
        ({"decision": "pending", "comment": "x"}, "decision"),
    ]:
        with pytest.raises(ValidationError) as caught:
            item_decide(item=item, actor=dave, **kwargs)
        assert field in caught.value.message_dict, kwargs
    item.refresh_from_db()
    assert item.decision == Decision.PENDING and not recorded_scripts


def test_only_the_assigned_reviewer_decides(fleet, alice, dave, erin):
    campaign = make_campaign([dave, erin], actor=alice, instances=[fleet["prod"]])
    daves = ReviewItem.objects.filter(campaign=campaign, reviewer=dave).first()
    for other in (erin, alice):  # not even a WhaleFall admin signs for someone else
        with pytest.raises(PermissionError):
            item_decide(item=daves, actor=other, decision=Decision.KEEP)
    daves.refresh_from_db()
    assert daves.decision == Decision.PENDING


def test_the_script_placeholder_while_grantscripts_is_unfinished(fleet, alice, dave, monkeypatch):
    import grantscripts.services

    def unfinished(**kwargs):
        raise NotImplementedError

    monkeypatch.setattr(grantscripts.services, "revoke_script", unfinished)
    item = item_decide(
        item=item_of(make_campaign([dave], actor=alice, instances=[fleet["prod"]]), "bo"),
        actor=dave,
        decision="revoke",
        comment="gone",
    )
    assert item.script.startswith("-- ") and "grantscripts" in item.script


def test_closing_retains_the_campaign_read_only(fleet, alice, dave, recorded_scripts):
    campaign = make_campaign([dave], actor=alice, instances=[fleet["prod"]])
    item_decide(item=item_of(campaign, "cy"), actor=dave, decision="keep")
    campaign_close(campaign=campaign, actor=alice)
    campaign.refresh_from_db()
    assert (campaign.status, campaign.closed_by_username) == ("closed", "alice") and campaign.closed_at
    item = item_of(campaign, "bo")
    item.comment = "edited after close"
    campaign.name = "renamed"
    attempts = [
        lambda: item_decide(item=item, actor=dave, decision="keep"),
        item.save,
        item.delete,
        lambda: ReviewItem.objects.filter(campaign=campaign).delete(),  # queryset deletes send pre_delete too
        lambda: Campaign.objects.filter(pk=campaign.pk).delete(),  # and so does the cascade to the items
        campaign.save,
        campaign.delete,
        lambda: campaign_close(campaign=campaign, actor=alice),
    ]
    for attempt in attempts:
        # each in its own savepoint, as each admin or API request has its own transaction
        with pytest.raises(ReviewRetained), transaction.atomic():
            attempt()
    assert ReviewItem.objects.filter(campaign=campaign).count() == 4
    assert item_of(campaign, "cy").decision == "keep"


def test_an_open_campaign_can_be_deleted_with_its_items(fleet, alice, dave):
    campaign = make_campaign([dave], actor=alice, instances=[fleet["prod"]])
    campaign.delete()
    assert not ReviewItem.objects.exists()


def test_lifecycle_is_in_the_audit_trail(fleet, alice, dave, recorded_scripts):
    campaign = make_campaign([dave], actor=alice, instances=[fleet["prod"]])
    item = item_decide(item=item_of(campaign, "bo"), actor=dave, decision="revoke", comment="why")
    item_decide(item=item, actor=dave, decision="keep", comment="on second thought")
    campaign_close(campaign=campaign, actor=alice)
    events = list(AuditEvent.objects.filter(object_type__startswith="reviews.").order_by("at", "id"))
    assert [(e.kind, e.actor_username) for e in events] == [
        ("review_campaign_created", "alice"),
        ("review_decided", "dave"),
        ("review_decided", "dave"),
        ("review_campaign_closed", "alice"),
    ]
    created, first, second, closed = events
    assert created.details["items"] == 4 and created.details["reviewers"] == ["dave"]
    assert (first.details["decision"], first.details["previous"]) == ("revoke", "pending")
    assert (second.details["decision"], second.details["previous"]) == ("keep", "revoke")
    assert second.object_id == str(item.pk) and second.details["account"] == "'bo'@'%'"
    assert closed.details["decisions"] == {"pending": 3, "keep": 1, "revoke": 0, "change": 0}
    # model history (django-auditlog) of the item: both decisions, with the changed fields
    history = LogEntry.objects.get_for_object(item).filter(action=LogEntry.Action.UPDATE).order_by("timestamp")
    assert [h.changes_dict["decision"][1] for h in history] == ["revoke", "keep"]


def test_overdue(fleet, alice, dave):
    campaign = make_campaign([dave], actor=alice, instances=[fleet["prod"]], due_date=timezone.localdate())
    assert not campaign.is_overdue
    campaign.due_date = timezone.localdate() - timedelta(days=1)
    assert campaign.is_overdue


def test_sql_server_logins_are_reviewed_and_roles_are_not(make_instance, alice, dave):
    mssql = make_instance("sqlserver", name="mssql-1", port=1433)
    apply(
        mssql,
        AccountRecord(
            identity="app_login",
            username="app_login",
            kind="login",
            privileges=[Privilege("server", "VIEW SERVER STATE")],
        ),
        AccountRecord(identity="sales::db_owner", username="db_owner", kind="role"),
    )
    campaign = make_campaign([dave], actor=alice, instances=[mssql])
    assert list(campaign.items.values_list("identity", "kind")) == [("app_login", "login")]
    assert [(g["scope"], g["privilege"]) for g in campaign.items.get().access] == [("server", "VIEW SERVER STATE")]

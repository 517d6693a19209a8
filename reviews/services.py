"""Writing access reviews: start a campaign (freeze and assign), decide an item, close a campaign.

Why the access is frozen at the start and not read at decision time: an auditor signs on "the
reviewer saw X and decided Y"; if the item showed the live access, a grant made mid-campaign
would change what an old decision seems to have approved. Every write is recorded in the audit
trail (``audit_record``; the models' field changes also reach django-auditlog's history).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from itertools import cycle
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accountsync.effective_read import instance_effective_access
from accountsync.models import AccountKind, InstanceAccount
from audit.services import audit_record
from classification.selectors import classification_account_ids
from directory.selectors import account_managers
from instances.models import Instance
from reviews.models import (
    Assignment,
    Campaign,
    CampaignStatus,
    Decision,
    InstanceOwner,
    ReviewItem,
    ReviewRetained,
)

AUDIT_CREATED = "review_campaign_created"
AUDIT_DECIDED = "review_decided"
AUDIT_CLOSED = "review_campaign_closed"
AUDIT_EXPORTED = "review_evidence_export"

ROLE_SCOPE_PREFIX = "role:"


# -- the features this one reads ----------------------------------------------------------------


def classification_account_ids_hook(*, classification_id: int, instance_ids: Sequence[int] | None) -> set[int]:
    """The accounts of a classification (classification.selectors), the one place a campaign asks for them."""
    return set(classification_account_ids(classification_id=classification_id, instance_ids=instance_ids))


def account_managers_hook(*, account_ids: Sequence[int]) -> dict[int, str]:
    """Account id -> its owner's manager's WhaleFall username (directory.selectors); absent: not known."""
    return dict(account_managers(account_ids=list(account_ids)))


# -- start ------------------------------------------------------------------------------------


def selected_instances(*, instance_ids: Sequence[int] = (), environment: str = "") -> list[Instance]:
    """The instances chosen (else every active one), narrowed by the environment."""
    qs = Instance.objects.filter(pk__in=list(instance_ids)) if instance_ids else Instance.objects.filter(is_active=True)
    if environment:
        qs = qs.filter(environment=environment)
    return list(qs.order_by("name"))


def selected_accounts(
    *, instances: Sequence[Instance], include_roles: bool = False, classification_id: int | None = None
) -> list[InstanceAccount]:
    """The active accounts a campaign over ``instances`` reviews (no roles, unless they are included)."""
    qs = InstanceAccount.objects.filter(instance__in=list(instances), is_active=True)
    if not include_roles:  # users and logins (SQL Server); roles only when asked for
        qs = qs.exclude(kind=AccountKind.ROLE)
    if classification_id is not None:
        ids = classification_account_ids_hook(
            classification_id=classification_id, instance_ids=[i.pk for i in instances]
        )
        qs = qs.filter(pk__in=ids)
    return list(qs.select_related("instance").order_by("instance__name", "identity"))


def _assign(campaign: Campaign, accounts: list[InstanceAccount], reviewers: list[Any]) -> dict[int, Any]:
    """Account id -> reviewer, by the campaign's assignment; the fallback (else round-robin) fills gaps."""
    users = {u.get_username(): u for u in reviewers}
    rotation = cycle(reviewers) if reviewers else None
    fallback = campaign.fallback_reviewer
    chosen: dict[int, Any] = {}
    if campaign.assignment == Assignment.MANAGER:
        managers = account_managers_hook(account_ids=[a.pk for a in accounts])
        names = set(managers.values()) - set(users)
        users.update({u.get_username(): u for u in get_user_model().objects.filter(username__in=names)})
        for a in accounts:
            chosen[a.pk] = users.get(managers.get(a.pk, ""))
    elif campaign.assignment == Assignment.INSTANCE_OWNER:
        owners = {o.instance_id: o.reviewer for o in InstanceOwner.objects.filter(campaign=campaign)}
        for a in accounts:
            chosen[a.pk] = owners.get(a.instance_id)
    for a in accounts:
        if chosen.get(a.pk) is None:
            if fallback is not None:
                chosen[a.pk] = fallback
            elif rotation is not None:
                chosen[a.pk] = next(rotation)
            else:
                raise ValidationError(_("The campaign needs at least one reviewer."), code="no_reviewer")
    return chosen


def campaign_start(*, campaign: Campaign, actor: Any = None, now: datetime | None = None) -> int:
    """Freeze every selected account's effective access into items and assign them; returns the count.

    Called once, right after the campaign and its selection are saved. One snapshot read per
    instance (``instance_effective_access``), so a campaign over a large fleet costs a query
    per instance, not per account.
    """
    if campaign.started_at is not None:
        raise ValidationError(_("This campaign was already started."), code="already_started")
    now = now or timezone.now()
    instances = selected_instances(
        instance_ids=list(campaign.instances.values_list("pk", flat=True)), environment=campaign.environment
    )
    accounts = selected_accounts(
        instances=instances, include_roles=campaign.include_roles, classification_id=campaign.classification_id
    )
    if campaign.classification_id is not None:
        campaign.classification_name = campaign.classification.name
    reviewers = list(campaign.reviewers.order_by("username"))
    if not accounts:
        raise ValidationError(_("The selection holds no active account to review."), code="empty_selection")
    assigned = _assign(campaign, accounts, reviewers)
    by_instance: dict[int, list[InstanceAccount]] = {}
    for a in accounts:
        by_instance.setdefault(a.instance_id, []).append(a)
    items = []
    for instance in instances:
        mine = by_instance.get(instance.pk)
        if not mine:
            continue
        access = instance_effective_access(
            instance_id=instance.pk, db_type=instance.db_type, at=None, identities=[a.identity for a in mine]
        )
        for a in mine:
            reviewer = assigned[a.pk]
            items.append(
                ReviewItem(
                    campaign=campaign,
                    account=a,
                    instance=instance,
                    instance_name=instance.name,
                    db_type=instance.db_type,
                    identity=a.identity,
                    kind=a.kind,
                    access=[g.as_dict() for g in access.get(a.identity, [])],
                    access_at=now,
                    reviewer=reviewer,
                    reviewer_username=reviewer.get_username(),
                )
            )
    with transaction.atomic():
        ReviewItem.objects.bulk_create(items, batch_size=500)
        Campaign.objects.filter(pk=campaign.pk).update(started_at=now, classification_name=campaign.classification_name)
        campaign.started_at = now
        for user in {i.reviewer for i in items} - set(reviewers):  # manager / owner / fallback reviewers
            campaign.reviewers.add(user)
    audit_record(
        AUDIT_CREATED,
        actor=actor,
        obj=campaign,
        details={
            "items": len(items),
            "instances": [i.name for i in instances][:50],
            "environment": campaign.environment,
            "classification": campaign.classification_name,
            "assignment": campaign.assignment,
            "reviewers": sorted({i.reviewer_username for i in items}),
            "due_date": campaign.due_date,
        },
    )
    return len(items)


def campaign_create(
    *,
    name: str,
    due_date: date,
    reviewers: Iterable[Any],
    actor: Any = None,
    instances: Iterable[Instance] = (),
    environment: str = "",
    classification: Any = None,
    include_roles: bool = False,
    assignment: str = Assignment.ROUND_ROBIN,
    fallback_reviewer: Any = None,
    owners: dict[int, Any] | None = None,
    description: str = "",
    now: datetime | None = None,
) -> Campaign:
    """Create and start a campaign in one transaction (the API and tests; the admin saves then starts)."""
    with transaction.atomic():
        campaign = Campaign(
            name=name,
            description=description,
            due_date=due_date,
            environment=environment,
            classification=classification,
            include_roles=include_roles,
            assignment=assignment,
            fallback_reviewer=fallback_reviewer,
            created_by=actor if getattr(actor, "pk", None) else None,
            created_by_username=actor.get_username() if getattr(actor, "pk", None) else "",
        )
        campaign.full_clean()
        campaign.save()
        campaign.instances.set(list(instances))
        campaign.reviewers.set(list(reviewers))
        for instance_id, reviewer in (owners or {}).items():
            InstanceOwner.objects.create(campaign=campaign, instance_id=instance_id, reviewer=reviewer)
        campaign_start(campaign=campaign, actor=actor, now=now)
    return campaign


# -- decide -----------------------------------------------------------------------------------


def revocable(access: list[dict[str, Any]]) -> tuple[list[tuple[str, str]], list[str]]:
    """What a revoke can name from the frozen access: the direct grants, and the roles granted directly.

    A privilege reached through a role is revoked by revoking the role from the account (the
    first role of its path), never by a REVOKE of the privilege itself, which would do nothing.
    """
    privileges: list[tuple[str, str]] = []
    roles: list[str] = []
    for grant in access:
        via = grant.get("via") or []
        if via:
            if via[0] not in roles:
                roles.append(via[0])
        elif grant.get("effect", "GRANT") == "GRANT":
            pair = (grant["scope"], grant["privilege"])
            if pair not in privileges:
                privileges.append(pair)
    return privileges, roles


def revoke_choices(access: list[dict[str, Any]]) -> list[str]:
    """The change form's choices: ``scope|privilege`` per direct grant, ``role:<name>`` per direct role."""
    privileges, roles = revocable(access)
    return [f"{scope}|{privilege}" for scope, privilege in privileges] + [ROLE_SCOPE_PREFIX + r for r in roles]


def decision_plan(
    *, access: list[dict[str, Any]], decision: str, comment: str, revoke: Sequence[str] = ()
) -> tuple[list[tuple[str, str]], list[str]]:
    """What a decision revokes, ``(privileges, roles)``; a ValidationError names the bad field.

    Revoke takes everything revocable; change takes the chosen part of the frozen access, which
    must be non-empty and come from it. Revoke and change need a comment saying why.
    """
    if decision not in (Decision.KEEP, Decision.REVOKE, Decision.CHANGE):
        raise ValidationError({"decision": _("Choose keep, revoke or change.")}, code="invalid_decision")
    privileges: list[tuple[str, str]] = []
    roles: list[str] = []
    if decision == Decision.REVOKE:
        privileges, roles = revocable(access)
    elif decision == Decision.CHANGE:
        allowed = set(revoke_choices(access))
        unknown = [c for c in revoke if c not in allowed]
        if unknown:
            raise ValidationError(
                {"revoke": _("Not in the access under review: %(items)s") % {"items": ", ".join(unknown[:5])}},
                code="unknown_privilege",
            )
        if not revoke:
            raise ValidationError({"revoke": _("Choose what to revoke for a change.")}, code="nothing_chosen")
        for choice in dict.fromkeys(revoke):
            if choice.startswith(ROLE_SCOPE_PREFIX):
                roles.append(choice[len(ROLE_SCOPE_PREFIX) :])
            else:
                scope, _sep, privilege = choice.rpartition("|")
                privileges.append((scope, privilege))
    if decision != Decision.KEEP and not (comment or "").strip():
        raise ValidationError({"comment": _("Say why, for a revoke or a change.")}, code="comment_required")
    return privileges, roles


def _script(item: ReviewItem, privileges: list[tuple[str, str]], roles: list[str]) -> str:
    from grantscripts.services import revoke_script

    if item.account is None:
        return ""
    try:
        return revoke_script(account=item.account, privileges=privileges, roles=roles)
    except NotImplementedError:
        return "-- " + _("The revoke script generator (grantscripts) is not available yet.")


def item_decide(
    *,
    item: ReviewItem,
    actor: Any,
    decision: str,
    comment: str = "",
    revoke: Sequence[str] = (),
    target: str = "",
    now: datetime | None = None,
) -> ReviewItem:
    """Record a reviewer's decision on their own item; revoke and change decisions get the revoke script.

    Only the assigned reviewer may decide (an admin sees every item but cannot sign for someone
    else), only while the campaign is open; a decision may be changed until the campaign closes,
    each time audited with the previous one.
    """
    with transaction.atomic():
        item = ReviewItem.objects.select_for_update(of=("self",)).select_related("campaign", "account").get(pk=item.pk)
        if item.campaign.status != CampaignStatus.OPEN:
            raise ReviewRetained(_("The campaign is closed: its items are retained read-only."))
        if item.reviewer_id is None or item.reviewer_id != getattr(actor, "pk", None):
            raise PermissionError(_("Only the item's reviewer may decide it."))
        comment = (comment or "").strip()
        privileges, roles = decision_plan(access=item.access, decision=decision, comment=comment, revoke=revoke)
        previous = item.decision
        item.decision = decision
        item.comment = comment
        item.revoke_privileges = [list(p) for p in privileges]
        item.revoke_roles = roles
        item.target = (target or "").strip() if decision == Decision.CHANGE else ""
        item.script = _script(item, privileges, roles) if decision != Decision.KEEP else ""
        item.decided_by = actor
        item.decided_by_username = actor.get_username()
        item.decided_at = now or timezone.now()
        item.save()
    audit_record(
        AUDIT_DECIDED,
        actor=actor,
        obj=item,
        details={
            "campaign_id": item.campaign_id,
            "decision": decision,
            "previous": previous,
            "instance": item.instance_name,
            "account": item.identity,
            "revoke_privileges": item.revoke_privileges,
            "revoke_roles": roles,
        },
    )
    return item


# -- close ------------------------------------------------------------------------------------


def campaign_close(*, campaign: Campaign, actor: Any, now: datetime | None = None) -> Campaign:
    """Close an open campaign: from then on it and its items are retained read-only.

    Pending items stay pending in the evidence (undecided is a finding an auditor must see), so
    closing does not require every item to be decided. The flip is a conditional UPDATE, so two
    people closing at once close it once.
    """
    now = now or timezone.now()
    username = actor.get_username() if getattr(actor, "pk", None) else ""
    changed = Campaign.objects.filter(pk=campaign.pk, status=CampaignStatus.OPEN).update(
        status=CampaignStatus.CLOSED,
        closed_at=now,
        closed_by=actor if getattr(actor, "pk", None) else None,
        closed_by_username=username,
    )
    if not changed:
        raise ReviewRetained(_("The campaign is already closed."))
    campaign.refresh_from_db()
    counts = dict.fromkeys(Decision.values, 0)
    for decision in ReviewItem.objects.filter(campaign=campaign).values_list("decision", flat=True):
        counts[decision] += 1
    audit_record(AUDIT_CLOSED, actor=actor, obj=campaign, details={"decisions": counts})
    return campaign


def evidence_exported(
    *, campaign: Campaign, actor: Any, fmt: str, rows: int, complete: bool, request: Any = None
) -> None:
    """Record an evidence download (CSV when its stream ends, HTML when rendered).

    The request is passed on because a stream ends after its request was handled: the audit
    trail must still say it came through the API or the admin, and from which address.
    """
    audit_record(
        AUDIT_EXPORTED,
        actor=actor,
        request=request,
        obj=campaign,
        details={"format": fmt, "rows": rows, "complete": complete, "status": campaign.status},
    )

"""Reading access reviews: who sees what, progress, and the evidence rows.

Why visibility is decided here and nowhere else: the admin and the API must agree that a
reviewer sees their own items and nothing else, not even a colleague's items in the same
campaign. Only holders of ``reviews.oversee_reviews`` (WhaleFall admins) see every item.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, QuerySet

from reviews.models import OVERSEE_REVIEWS, Campaign, Decision, ReviewItem


def oversees(user: Any) -> bool:
    return bool(user and user.is_authenticated and user.has_perm(OVERSEE_REVIEWS))


def visible_items(user: Any) -> QuerySet[ReviewItem]:
    """Every item for an overseer, else only the items assigned to ``user``."""
    qs = ReviewItem.objects.select_related("campaign")
    if oversees(user):
        return qs
    if not (user and user.is_authenticated):
        return qs.none()
    return qs.filter(reviewer=user)


def visible_campaigns(user: Any) -> QuerySet[Campaign]:
    """Every campaign for an overseer, else those where ``user`` has at least one item."""
    if oversees(user):
        return Campaign.objects.all()
    if not (user and user.is_authenticated):
        return Campaign.objects.none()
    return Campaign.objects.filter(pk__in=ReviewItem.objects.filter(reviewer=user).values("campaign_id"))


@dataclass(frozen=True)
class Progress:
    reviewer: str
    total: int
    decided: int
    keep: int
    revoke: int
    change: int

    @property
    def pending(self) -> int:
        return self.total - self.decided

    @property
    def percent(self) -> int:
        return round(100 * self.decided / self.total) if self.total else 100


def _progress_row(reviewer: str, row: dict[str, int]) -> Progress:
    return Progress(
        reviewer=reviewer,
        total=row["total"],
        decided=row["total"] - row["pending"],
        keep=row["keep"],
        revoke=row["revoke"],
        change=row["change"],
    )


_COUNTS = {
    "total": Count("id"),
    "pending": Count("id", filter=Q(decision=Decision.PENDING)),
    "keep": Count("id", filter=Q(decision=Decision.KEEP)),
    "revoke": Count("id", filter=Q(decision=Decision.REVOKE)),
    "change": Count("id", filter=Q(decision=Decision.CHANGE)),
}


def campaign_progress(
    *, campaign: Campaign, items: QuerySet[ReviewItem] | None = None
) -> tuple[list[Progress], Progress]:
    """Progress per reviewer (by the copied username) and overall, in one grouped query plus one total."""
    qs = items if items is not None else ReviewItem.objects.filter(campaign=campaign)
    return campaigns_progress(campaign_ids=[campaign.pk], items=qs).get(campaign.pk, ([], _overall([])))


def campaigns_progress(
    *, campaign_ids: list[int], items: QuerySet[ReviewItem]
) -> dict[int, tuple[list[Progress], Progress]]:
    """`campaign_progress` of several campaigns in one grouped query (a list page, not one query per row)."""
    rows = (
        items.filter(campaign_id__in=campaign_ids)
        .order_by()
        .values("campaign_id", "reviewer_username")
        .annotate(**_COUNTS)
        .order_by("campaign_id", "reviewer_username")
    )
    per: dict[int, list[Progress]] = {pk: [] for pk in campaign_ids}
    for row in rows:
        per[row["campaign_id"]].append(_progress_row(row["reviewer_username"], row))
    return {pk: (progress, _overall(progress)) for pk, progress in per.items()}


def _overall(per: list[Progress]) -> Progress:
    return Progress(
        reviewer="",
        total=sum(p.total for p in per),
        decided=sum(p.decided for p in per),
        keep=sum(p.keep for p in per),
        revoke=sum(p.revoke for p in per),
        change=sum(p.change for p in per),
    )


EVIDENCE_COLUMNS = (
    "campaign",
    "campaign_status",
    "instance",
    "db_type",
    "account",
    "kind",
    "access_at",
    "access",
    "reviewer",
    "decision",
    "comment",
    "revoke_privileges",
    "revoke_roles",
    "target",
    "script",
    "decided_by",
    "decided_at",
)


def access_lines(access: list[dict[str, Any]]) -> list[str]:
    """``scope · privilege [grantable] · via direct | a → b``: one line per frozen grant."""
    lines = []
    for g in access:
        via = g.get("via") or []
        how = "direct" if not via else " → ".join(via)
        privilege = g["privilege"] if g.get("effect", "GRANT") == "GRANT" else f"{g['effect']} {g['privilege']}"
        grantable = " (grantable)" if g.get("grantable") else ""
        inactive = "" if g.get("active", True) else " (SET ROLE)"
        lines.append(f"{g['scope']} · {privilege}{grantable} · via {how}{inactive}")
    return lines


def evidence_items(campaign: Campaign) -> QuerySet[ReviewItem]:
    return ReviewItem.objects.filter(campaign=campaign).order_by("instance_name", "identity", "id")


def evidence_rows(campaign: Campaign) -> Iterator[dict[str, Any]]:
    """Every item of the campaign as one evidence row, read in chunks (the CSV streams them)."""
    for item in evidence_items(campaign).iterator(chunk_size=500):
        yield {
            "campaign": campaign.name,
            "campaign_status": campaign.status,
            "instance": item.instance_name,
            "db_type": item.db_type,
            "account": item.identity,
            "kind": item.kind,
            "access_at": item.access_at,
            "access": "\n".join(access_lines(item.access)),
            "reviewer": item.reviewer_username,
            "decision": item.decision,
            "comment": item.comment,
            "revoke_privileges": ["|".join(p) for p in item.revoke_privileges],
            "revoke_roles": list(item.revoke_roles),
            "target": item.target,
            "script": item.script,
            "decided_by": item.decided_by_username,
            "decided_at": item.decided_at,
        }

"""Reads of classifications: who is in which category (baselines, reviews, exports, the API call these)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from django.db.models import QuerySet

from classification.models import (
    Classification,
    ClassificationAssignment,
    ClassificationDailyCount,
    ClassificationRuleVersion,
)


def classification_account_ids(*, classification_id: int, instance_ids: Iterable[int] | None = None) -> set[int]:
    """The active accounts currently in the classification (by rule or by hand), optionally on some instances.

    Assignments are kept for active accounts only (a deactivated account loses its
    classification at the next evaluation); the `is_active` filter also covers the moment between
    a sync deactivating an account and the hook re-evaluating.
    """
    rows = ClassificationAssignment.objects.filter(classification_id=classification_id, account__is_active=True)
    if instance_ids is not None:
        rows = rows.filter(instance_id__in=list(instance_ids))
    return set(rows.values_list("account_id", flat=True))


def account_classifications(*, account_ids: Iterable[int]) -> dict[int, list[Classification]]:
    """Each given account's current classifications, highest risk first; accounts with none are absent."""
    ids = list(account_ids)
    found: dict[int, list[Classification]] = {}
    if not ids:
        return found
    rows = (
        ClassificationAssignment.objects.filter(account_id__in=ids, account__is_active=True)
        .select_related("classification")
        .order_by("-classification__risk_level", "classification__code")
    )
    for row in rows:
        found.setdefault(row.account_id, []).append(row.classification)
    return found


def classification_members(*, code: str) -> QuerySet[ClassificationAssignment] | None:
    """The account ids in the classification with `code`, as a subquery (list filters); None for an unknown code."""
    found = Classification.objects.filter(code=code).values_list("pk", flat=True).first()
    if found is None:
        return None
    return ClassificationAssignment.objects.filter(classification_id=found).values("account_id")


def classification_by_code(*, code: str) -> Classification | None:
    return Classification.objects.filter(code=code).first()


def rule_versions(*, rule_id: int) -> QuerySet[ClassificationRuleVersion]:
    """A rule's history, newest first."""
    return ClassificationRuleVersion.objects.filter(rule_id=rule_id).select_related("created_by").order_by("-version")


def daily_counts(*, days: list[date]) -> tuple[list[Classification], dict[date, dict[str, int]]]:
    """The classifications and, per day of `days`, each one's stored count by code (missing days: none stored)."""
    categories = list(Classification.objects.order_by("-risk_level", "code"))
    found: dict[date, dict[str, int]] = {day: {} for day in days}
    if days:
        rows = ClassificationDailyCount.objects.filter(day__gte=min(days), day__lte=max(days)).values_list(
            "day", "classification__code", "count"
        )
        for day, code, count in rows:
            if day in found:
                found[day][code] = count
    return categories, found

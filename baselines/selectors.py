"""Reads of baselines: versions, entries, and the open drift a baseline is the reference of (admin, API)."""

from __future__ import annotations

from django.db.models import QuerySet

from baselines.models import Baseline, BaselineEntry, BaselineVersion
from findings.models import Finding

RULE_CODE = "DRIFT"


def baseline_list() -> QuerySet[Baseline]:
    return Baseline.objects.select_related("account", "account__instance", "instance", "classification").order_by(
        "-updated_at", "-id"
    )


def baseline_versions(*, baseline: Baseline) -> QuerySet[BaselineVersion]:
    """Newest first."""
    return BaselineVersion.objects.filter(baseline=baseline).order_by("-version")


def version_entries(*, version: BaselineVersion) -> QuerySet[BaselineEntry]:
    return (
        BaselineEntry.objects.filter(version=version)
        .select_related("account", "instance")
        .order_by("instance_id", "account__identity")
    )


def baseline_open_drift(*, baseline: Baseline) -> QuerySet[Finding]:
    """The open DRIFT findings whose reference is this baseline (its ``detail.baseline.id``)."""
    return (
        Finding.objects.filter(rule_code=RULE_CODE, is_open=True, detail__baseline__id=baseline.pk)
        .select_related("account", "instance")
        .order_by("instance_id", "account__identity")
    )

"""Read queries over findings, including point-in-time answers.

Why they are cheap: a finding row is one episode with its own interval
[first_seen_at, resolved_at), so "what was open at T" and "what appeared or
went away between T1 and T2" are range filters on the row itself, never a
replay of syncs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet

from accountsync.models import InstanceAccount
from findings.models import Finding
from instances.models import Instance


def finding_list(
    *,
    instance: Instance | None = None,
    account: InstanceAccount | None = None,
    is_open: bool | None = True,
    severity: str | None = None,
    rule_code: str | None = None,
    db_type: str | None = None,
) -> QuerySet[Finding]:
    """Findings (open ones by default), newest first, with instance and account joined."""
    qs = Finding.objects.select_related("instance", "account")
    if instance is not None:
        qs = qs.filter(instance=instance)
    if account is not None:
        qs = qs.filter(account=account)
    if is_open is not None:
        qs = qs.filter(is_open=is_open)
    if severity:
        qs = qs.filter(severity=severity)
    if rule_code:
        qs = qs.filter(rule_code=rule_code)
    if db_type:
        qs = qs.filter(instance__db_type=db_type)
    return qs.order_by("-first_seen_at", "-id")


def finding_list_at(
    *, at: datetime, instance: Instance | None = None, account: InstanceAccount | None = None
) -> QuerySet[Finding]:
    """The findings that were open at `at`: opened at or before it and not resolved by then."""
    qs = finding_list(instance=instance, account=account, is_open=None).filter(first_seen_at__lte=at)
    return qs.filter(Q(resolved_at__isnull=True) | Q(resolved_at__gt=at))


@dataclass
class FindingChanges:
    opened: QuerySet[Finding]
    resolved: QuerySet[Finding]


def finding_changes_between(*, instance: Instance, start: datetime, end: datetime) -> FindingChanges:
    """What appeared and what went away on `instance` in (start, end]."""
    base = finding_list(instance=instance, is_open=None)
    return FindingChanges(
        opened=base.filter(first_seen_at__gt=start, first_seen_at__lte=end),
        resolved=base.filter(resolved_at__gt=start, resolved_at__lte=end).order_by("-resolved_at", "-id"),
    )

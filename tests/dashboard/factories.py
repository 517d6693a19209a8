"""Rows for the dashboard tests, made through the ORM with explicit timestamps.

Why plain functions rather than the sync engine: the dashboard only reads
history, and its tests need exact days (time-zone edges included) that a real
sync, stamped with "now", cannot produce.
"""

from __future__ import annotations

import itertools
from datetime import datetime

from django.utils import timezone

from accountsync.models import AccountChangeLog, InstanceAccount
from findings.models import Finding
from instances.models import Instance
from sync.models import SyncInstanceRecord, SyncSession

_serial = itertools.count(1)


def session(started_at: datetime | None = None) -> SyncSession:
    return SyncSession.objects.create(
        sync_type="manual_batch", status="completed", started_at=started_at or timezone.now()
    )


def records(
    instance: Instance | None,
    started_at: datetime,
    *,
    completed: int = 0,
    failed: int = 0,
    other: dict[str, int] | None = None,
) -> None:
    """`completed` + `failed` (+ other status: n) instance records started at `started_at`, in one new session.

    Records without an instance (a deleted one: the FK is SET_NULL) let a test
    make thousands without thousands of instances.
    """
    parent = session(started_at)
    statuses = ["completed"] * completed + ["failed"] * failed
    for status, n in (other or {}).items():
        statuses += [status] * n
    SyncInstanceRecord.objects.bulk_create(
        [
            SyncInstanceRecord(
                session=parent,
                instance=instance if i == 0 else None,
                instance_name=instance.name if instance else "gone",
                status=status,
                started_at=started_at,
            )
            for i, status in enumerate(statuses)
        ]
    )


def account(instance: Instance, name: str | None = None) -> InstanceAccount:
    name = name or f"user{next(_serial)}"
    now = timezone.now()
    return InstanceAccount.objects.create(
        instance=instance, identity=f"'{name}'@'%'", username=name, host="%", first_seen_at=now, last_seen_at=now
    )


def changes(instance: Instance, detected_at: datetime, change_type: str = "privileges_changed", n: int = 1) -> None:
    """`n` change log entries of one type detected at `detected_at`, on one account."""
    acct = account(instance)
    AccountChangeLog.objects.bulk_create(
        [
            AccountChangeLog(
                instance=instance,
                account=acct,
                change_type=change_type,
                detected_at=detected_at,
                summary=f"{change_type} {i}",
            )
            for i in range(n)
        ]
    )


def findings(instance: Instance, rule_code: str, severity: str, n: int = 1, *, is_open: bool = True) -> None:
    """`n` findings of one rule, each on its own account (one open finding per account and rule)."""
    now = timezone.now()
    accounts = InstanceAccount.objects.bulk_create(
        [
            InstanceAccount(
                instance=instance,
                identity=f"'f{next(_serial)}'@'%'",
                username="f",
                host="%",
                first_seen_at=now,
                last_seen_at=now,
            )
            for _ in range(n)
        ]
    )
    Finding.objects.bulk_create(
        [
            Finding(
                instance=instance,
                account=a,
                rule_code=rule_code,
                severity=severity,
                first_seen_at=now,
                is_open=is_open,
                resolved_at=None if is_open else now,
            )
            for a in accounts
        ]
    )

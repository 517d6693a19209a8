"""Read queries for the admin and the API (HackSoft style: selectors read, services write).

Each returns a lazy queryset or one row so views can paginate and add
filters; joins are declared here so list pages stay at a fixed query count.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q, QuerySet

from accountsync.models import AccountChangeLog, AccountPermission, InstanceAccount
from instances.models import Instance


def account_list(*, instance: Instance | None = None, active: bool | None = True) -> QuerySet[InstanceAccount]:
    """Accounts of one instance (or all), active ones by default."""
    qs = InstanceAccount.objects.select_related("instance")
    if instance is not None:
        qs = qs.filter(instance=instance)
    if active is not None:
        qs = qs.filter(is_active=active)
    return qs.order_by("instance__name", "identity")


def account_current_permission(*, account: InstanceAccount) -> AccountPermission | None:
    """The open snapshot, or None for a removed account (its snapshot was closed)."""
    return AccountPermission.objects.filter(account=account, valid_to__isnull=True).first()


def account_permission_at(*, account: InstanceAccount, at: datetime) -> AccountPermission | None:
    """What the account could do at `at`: the row whose validity interval contains it."""
    return (
        AccountPermission.objects.filter(account=account, valid_from__lte=at)
        .filter(Q(valid_to__isnull=True) | Q(valid_to__gt=at))
        .order_by("-valid_from")
        .first()
    )


def account_permission_history(*, account: InstanceAccount) -> QuerySet[AccountPermission]:
    return AccountPermission.objects.filter(account=account).order_by("-valid_from", "-id")


def change_log_list(
    *,
    instance: Instance | None = None,
    account: InstanceAccount | None = None,
    change_type: str | None = None,
    since: datetime | None = None,
) -> QuerySet[AccountChangeLog]:
    """Change log newest first; filters match the (instance|account|change_type, detected_at) indexes."""
    qs = AccountChangeLog.objects.select_related("instance", "account")
    if instance is not None:
        qs = qs.filter(instance=instance)
    if account is not None:
        qs = qs.filter(account=account)
    if change_type:
        qs = qs.filter(change_type=change_type)
    if since is not None:
        qs = qs.filter(detected_at__gte=since)
    return qs.order_by("-detected_at", "-id")


def account_last_seen(*, account: InstanceAccount) -> datetime | None:
    """When the account was last seen on the server.

    Unchanged accounts are not written on each sync, so an active account's
    last sighting is its instance's last successful sync.
    """
    if account.is_active and account.instance.last_sync_status == "completed" and account.instance.last_sync_at:
        return max(account.last_seen_at, account.instance.last_sync_at)
    return account.last_seen_at


def account_capability_filter(
    queryset: QuerySet[InstanceAccount], *, capability: str, present: bool = True
) -> QuerySet[InstanceAccount]:
    """Accounts whose current snapshot lists `capability` (or, with present=False, does not).

    Capabilities (GRANT_ADMIN, WILDCARD_HOST, ...) exist only in the snapshot
    JSON, roles held included. PostgreSQL and MySQL test JSON containment;
    SQLite has no JSON contains, so there the array's text is matched with the
    quotes around the name, which cannot match a longer capability name.
    """
    from django.db import connection
    from django.db.models import Exists, OuterRef

    current = AccountPermission.objects.filter(account=OuterRef("pk"), valid_to__isnull=True)
    if connection.features.supports_json_field_contains:
        current = current.filter(snapshot__capabilities__contains=[capability])
    else:
        current = current.filter(snapshot__capabilities__icontains=f'"{capability}"')
    return queryset.filter(Exists(current)) if present else queryset.exclude(Exists(current))

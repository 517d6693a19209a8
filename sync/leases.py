"""Per-instance leases: two syncs of one instance never run at once.

Why a lease row with an expiry instead of a database lock: a worker can die
(SIGKILL, OOM, lost host) while holding it. A row lock would pin a
connection for the whole remote fetch, and an advisory lock does not exist on
SQLite; an expiring row works on every backend and frees itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class InstanceLease(models.Model):
    """Who is syncing an instance right now, and until when the claim holds."""

    instance = models.OneToOneField(
        "instances.Instance", on_delete=models.CASCADE, primary_key=True, related_name="sync_lease"
    )
    holder = models.CharField(_("holder"), max_length=64)
    session_id = models.UUIDField(_("session id"), null=True, blank=True)
    acquired_at = models.DateTimeField(_("acquired at"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires at"), db_index=True)

    class Meta:
        app_label = "sync"
        db_table = "sync_instance_leases"
        verbose_name = _("instance lease")
        verbose_name_plural = _("instance leases")

    def __str__(self) -> str:
        return f"{self.instance_id} held by {self.holder} until {self.expires_at:%Y-%m-%d %H:%M:%S}"


@dataclass(frozen=True)
class LeaseResult:
    acquired: bool
    holder: str = ""
    session_id: str | None = None


def lease_ttl() -> timedelta:
    """A lease outlives the longest task (django-q2's timeout) so a live sync never loses it."""
    return timedelta(seconds=getattr(settings, "WHALEFALL_LEASE_SECONDS", settings.Q_CLUSTER["timeout"] + 60))


def lease_acquire(*, instance_id: int, holder: str, session_id: str | None = None) -> LeaseResult:
    """Take the instance's lease if it is free, expired or already ours (one conditional UPDATE or INSERT)."""
    now = timezone.now()
    expires = now + lease_ttl()
    taken = InstanceLease.objects.filter(Q(expires_at__lt=now) | Q(holder=holder), instance_id=instance_id).update(
        holder=holder, session_id=session_id, acquired_at=now, expires_at=expires
    )
    if taken:
        return LeaseResult(True, holder, session_id)
    try:
        with transaction.atomic():
            InstanceLease.objects.create(
                instance_id=instance_id, holder=holder, session_id=session_id, acquired_at=now, expires_at=expires
            )
        return LeaseResult(True, holder, session_id)
    except IntegrityError:
        current = InstanceLease.objects.filter(instance_id=instance_id).values("holder", "session_id").first()
        if current is None:  # released between our two statements: try once more
            return lease_acquire(instance_id=instance_id, holder=holder, session_id=session_id)
        sid = str(current["session_id"]) if current["session_id"] else None
        return LeaseResult(False, current["holder"], sid)


def lease_release(*, instance_id: int, holder: str) -> bool:
    """Give the lease back; only its holder can."""
    return InstanceLease.objects.filter(instance_id=instance_id, holder=holder).delete()[0] > 0


def lease_release_for_session(*, session_id: str) -> int:
    """Free every lease a (reaped or cancelled) session still holds."""
    return InstanceLease.objects.filter(session_id=session_id).delete()[0]

"""Per-instance leases: two syncs of one instance never run at once.

Why a lease row with an expiry instead of a database lock: a worker can die
(SIGKILL, OOM, lost host) while holding it. A row lock would pin a
connection for the whole remote fetch, and an advisory lock does not exist on
SQLite; an expiring row works on every backend and frees itself.

Why short and renewed instead of long: a lease outliving its holder blocks the
instance for its whole TTL (a dead API process used to block it for 16 minutes).
A background heartbeat (``sync.heartbeat``) renews it every few seconds while the
sync runs, during every phase; a holder that dies loses it within one TTL. A lease
is taken over only once expired, and the taker's holder replaces ours, so the apply
fences on the holder (``lease_fence``) inside its own transaction: an apply that lost
its lease writes nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, models, transaction
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
    """How long a claim holds without renewal: a few heartbeats, so one slow beat never loses it."""
    return timedelta(seconds=settings.WHALEFALL_LEASE_SECONDS)


def lease_acquire(*, instance_id: int, holder: str, session_id: str | None = None) -> LeaseResult:
    """Take the instance's lease if it is free, expired or already ours (one INSERT, else one conditional UPDATE).

    A released lease is deleted, so the usual case is no row: the INSERT comes first and is
    the only statement. Only a row that exists (held, or left expired by a dead holder) costs
    the UPDATE that takes it over when it has expired or is already ours.
    """
    now = timezone.now()
    expires = now + lease_ttl()
    try:
        # a savepoint only inside a caller's transaction: in autocommit a refused INSERT harms nothing
        with transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext():
            InstanceLease.objects.create(
                instance_id=instance_id, holder=holder, session_id=session_id, acquired_at=now, expires_at=expires
            )
        return LeaseResult(True, holder, session_id)
    except IntegrityError:
        pass
    taken = InstanceLease.objects.filter(Q(expires_at__lt=now) | Q(holder=holder), instance_id=instance_id).update(
        holder=holder, session_id=session_id, acquired_at=now, expires_at=expires
    )
    if taken:
        return LeaseResult(True, holder, session_id)
    current = InstanceLease.objects.filter(instance_id=instance_id).values("holder", "session_id").first()
    if current is None:  # released between our two statements: try once more
        return lease_acquire(instance_id=instance_id, holder=holder, session_id=session_id)
    sid = str(current["session_id"]) if current["session_id"] else None
    return LeaseResult(False, current["holder"], sid)


def lease_renew(*, instance_id: int, holder: str) -> bool:
    """Push our lease's expiry forward; False means it is no longer ours (expired and taken over)."""
    now = timezone.now()
    return (
        InstanceLease.objects.filter(instance_id=instance_id, holder=holder).update(expires_at=now + lease_ttl()) == 1
    )


def lease_renew_many(*, leases: Iterable[tuple[int, str]]) -> set[str]:
    """Renew several leases in one UPDATE (a batch's heartbeat); returns the holders still holding theirs.

    ``leases`` are (instance id, holder) pairs. A holder names one sync of one instance
    (``record:<pk>``, ``single:<uuid>``), so matching instance and holder sets is exact.
    Only when fewer rows matched than asked is a second query spent on finding which.
    """
    pairs = set(leases)
    if not pairs:
        return set()
    holders = {holder for _, holder in pairs}
    ours = InstanceLease.objects.filter(instance_id__in={instance_id for instance_id, _ in pairs}, holder__in=holders)
    if ours.update(expires_at=timezone.now() + lease_ttl()) == len(pairs):
        return holders
    return set(ours.values_list("holder", flat=True))


def lease_fence(*, instance_id: int, holder: str) -> bool:
    """Inside the apply's transaction: lock our lease row and prove it is still ours.

    The renewing UPDATE matches only while the row is ours, and it write-locks that row
    until the apply commits (PostgreSQL, MySQL; SQLite's IMMEDIATE transaction holds the
    database's write lock), so a takeover waits for our commit instead of fetching
    alongside it: one statement, where a ``SELECT … FOR UPDATE`` first would lock the same row.
    """
    if transaction.get_autocommit():
        raise RuntimeError("lease_fence must run inside the transaction it protects")
    return lease_renew(instance_id=instance_id, holder=holder)


def lease_release(*, instance_id: int, holder: str) -> bool:
    """Give the lease back; only its holder can.

    One DELETE: nothing refers to a lease row and no signal listens to it, so the ORM's
    collector (a transaction and a cascade walk around the statement) has nothing to do.
    """
    rows = InstanceLease.objects.filter(instance_id=instance_id, holder=holder)
    return rows._raw_delete(rows.db) > 0


def lease_release_for_session(*, session_id: str) -> int:
    """Free every lease a (reaped or cancelled) session still holds."""
    return InstanceLease.objects.filter(session_id=session_id).delete()[0]

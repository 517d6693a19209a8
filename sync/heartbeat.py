"""A background heartbeat that keeps running syncs' leases and records alive in every phase.

Why a thread: the longest waits of a sync are inside one driver call (a remote fetch of
minutes) or one local apply; a beat between phases alone lets a live sync look dead to
the reaper and lets its lease expire under it. The thread has its own database
connection (Django's are per thread), beats every ``WHALEFALL_HEARTBEAT_SECONDS`` and
never decides anything: a beat that fails is logged and retried at the next tick. What
it sees (lease lost, record no longer running) is reported through each member's
``lost``; whether the sync may write is decided by the fence inside the apply's transaction.

Why one thread for many syncs (``HeartbeatGroup``): a worker task runs a batch of records
at once (``sync.services.sync_batch_execute``); one thread per record would cost a thread
and a database connection each. The group beats every member in two UPDATEs whatever
their number, from the moment a member joins until it leaves. ``Heartbeat`` is a group of
one, for a sync that runs alone.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

from django.conf import settings
from django.db import connections
from django.utils import timezone

from sync.leases import lease_renew_many
from sync.models import SyncInstanceRecord, SyncRecordStatusChoices

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Beating:
    """One sync kept alive by a group: its lease (instance, holder) and its record, if it has one."""

    instance_id: int
    holder: str
    record_id: int | None = None
    lost: str = ""  # "lease" or "record" once a beat found it no longer ours


class HeartbeatGroup:
    """``with HeartbeatGroup() as beats:`` then ``with beats.member(instance_id=…, holder=…, record_id=…):``."""

    def __init__(self, *, interval: float | None = None, name: str = "batch") -> None:
        self.interval = interval if interval is not None else settings.WHALEFALL_HEARTBEAT_SECONDS
        self.name = name
        self.beats = 0
        self._members: set[Beating] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"wf-heartbeat-{name}", daemon=True)

    def __enter__(self) -> HeartbeatGroup:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        # a beat blocked on a busy database finishes on its own; the sync does not wait for it
        self._thread.join(timeout=max(1.0, self.interval))

    def join(self, *, instance_id: int, holder: str, record_id: int | None = None) -> Beating:
        member = Beating(instance_id=instance_id, holder=holder, record_id=record_id)
        with self._lock:
            self._members.add(member)
        return member

    def leave(self, member: Beating) -> None:
        with self._lock:
            self._members.discard(member)

    @contextlib.contextmanager
    def member(self, *, instance_id: int, holder: str, record_id: int | None = None) -> Iterator[Beating]:
        """Beat this sync from now until the block ends (also on an exception)."""
        joined = self.join(instance_id=instance_id, holder=holder, record_id=record_id)
        try:
            yield joined
        finally:
            self.leave(joined)

    @property
    def members(self) -> list[Beating]:
        with self._lock:
            return list(self._members)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self.beat()
        finally:
            connections.close_all()  # this thread's connections only

    def beat(self) -> None:
        """Renew every member's lease and record heartbeat once (two UPDATEs); never raises."""
        members = self.members
        if not members:
            return
        try:
            held = lease_renew_many(leases=[(m.instance_id, m.holder) for m in members])
            record_ids = {m.record_id for m in members if m.record_id is not None}
            alive = record_ids
            if record_ids:
                running = SyncInstanceRecord.objects.filter(pk__in=record_ids, status=SyncRecordStatusChoices.RUNNING)
                if running.update(heartbeat_at=timezone.now()) < len(record_ids):
                    alive = set(running.values_list("pk", flat=True))
            for m in members:
                if m.holder not in held:
                    m.lost = m.lost or "lease"
                elif m.record_id is not None and m.record_id not in alive:
                    m.lost = m.lost or "record"
            self.beats += 1
        except Exception:
            logger.warning(
                "heartbeat of %s (%d sync(s)) failed; retrying at the next beat",
                self.name,
                len(members),
                exc_info=True,
                extra={
                    "wf": {
                        "module": "sync",
                        "operation": "heartbeat",
                        "instance_id": members[0].instance_id if len(members) == 1 else None,
                        "phase": "heartbeat",
                    }
                },
            )
            connections["default"].close()  # a broken connection is replaced at the next beat


class Heartbeat(HeartbeatGroup):
    """``with Heartbeat(instance_id=…, holder=…, record_id=…):`` around one leased sync (a group of one)."""

    def __init__(
        self, *, instance_id: int, holder: str, record_id: int | None = None, interval: float | None = None
    ) -> None:
        super().__init__(interval=interval, name=holder)
        self.instance_id = instance_id
        self.holder = holder
        self.record_id = record_id
        self._self = self.join(instance_id=instance_id, holder=holder, record_id=record_id)

    @property
    def lost(self) -> str:
        return self._self.lost

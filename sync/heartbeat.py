"""A background heartbeat that keeps a running sync's lease and record alive in every phase.

Why a thread: the longest waits of a sync are inside one driver call (a remote fetch of
minutes) or one local apply; a beat between phases alone lets a live sync look dead to
the reaper and lets its lease expire under it. The thread has its own database
connection (Django's are per thread), beats every ``WHALEFALL_HEARTBEAT_SECONDS`` and
never decides anything: a beat that fails is logged and retried at the next tick. What
it sees (lease lost, record no longer running) is reported through ``lost``; whether the
sync may write is decided by the fence inside the apply's transaction.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from django.conf import settings
from django.db import connections
from django.utils import timezone

from sync.leases import lease_renew
from sync.models import SyncInstanceRecord, SyncRecordStatusChoices

logger = logging.getLogger(__name__)


class Heartbeat:
    """``with Heartbeat(instance_id=…, holder=…, record_id=…):`` around a leased sync."""

    def __init__(
        self, *, instance_id: int, holder: str, record_id: int | None = None, interval: float | None = None
    ) -> None:
        self.instance_id = instance_id
        self.holder = holder
        self.record_id = record_id
        self.interval = interval if interval is not None else settings.WHALEFALL_HEARTBEAT_SECONDS
        self.beats = 0
        self.lost = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"wf-heartbeat-{holder}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        # a beat blocked on a busy database finishes on its own; the sync does not wait for it
        self._thread.join(timeout=max(1.0, self.interval))

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self.beat()
        finally:
            connections.close_all()  # this thread's connections only

    def beat(self) -> None:
        """Renew the lease and the record's heartbeat once; never raises."""
        try:
            if not lease_renew(instance_id=self.instance_id, holder=self.holder):
                self.lost = self.lost or "lease"
            if self.record_id is not None:
                alive = SyncInstanceRecord.objects.filter(
                    pk=self.record_id, status=SyncRecordStatusChoices.RUNNING
                ).update(heartbeat_at=timezone.now())
                if not alive:
                    self.lost = self.lost or "record"
            self.beats += 1
        except Exception:
            logger.warning(
                "heartbeat of %s failed; retrying at the next beat",
                self.holder,
                exc_info=True,
                extra={
                    "wf": {
                        "module": "sync",
                        "operation": "heartbeat",
                        "instance_id": self.instance_id,
                        "phase": "heartbeat",
                    }
                },
            )
            connections["default"].close()  # a broken connection is replaced at the next beat

"""Sync sessions and per-instance records (docs/architecture.md, "Data model").

Every status change is a single conditional UPDATE (``filter(pk=..., status__in=FROM)``)
whose row count tells the caller whether *it* made the change. Two workers racing on
one record or one session therefore cannot both win, and nobody ever reads a status,
decides, and writes it back. Illegal transitions are refused by returning ``False``
rather than raising: losing a race is a normal outcome for a worker, not an error.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop

from accountsync.adapters.base import message_english, message_register, message_render
from accountsync.coverage import result_gaps, unreadable_count


class SyncTypeChoices(models.TextChoices):
    MANUAL_SINGLE = "manual_single", _("Manual (single instance)")
    MANUAL_BATCH = "manual_batch", _("Manual (batch)")
    MANUAL_TASK = "manual_task", _("Manual task")
    SCHEDULED_TASK = "scheduled_task", _("Scheduled task")


SESSION_SYNC_TYPES = frozenset(
    {SyncTypeChoices.MANUAL_BATCH, SyncTypeChoices.MANUAL_TASK, SyncTypeChoices.SCHEDULED_TASK}
)


class SyncCategoryChoices(models.TextChoices):
    ACCOUNT = "account", _("Accounts")


# the one permission behind starting, cancelling and retrying syncs (admin and API)
RUN_SYNC = "sync.run_sync"


class SyncSessionStatusChoices(models.TextChoices):
    RUNNING = "running", _("Running")
    COMPLETED = "completed", _("Completed")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")


class SyncRecordStatusChoices(models.TextChoices):
    PENDING = "pending", _("Pending")
    RUNNING = "running", _("Running")
    COMPLETED = "completed", _("Completed")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")


# The sync layer's own failure messages (accountsync.adapters.base.MESSAGES holds the adapters' and the
# engine's): each is stored with its code and parameters, rendered in the reader's language by the admin.
INSTANCE_DELETED = message_register(
    "sync_instance_deleted",
    gettext_noop("Instance %(instance)s was deleted before session %(session)s reached it; nothing to sync."),
)
INSTANCE_BUSY = message_register(
    "sync_instance_busy",
    gettext_noop(
        "Instance %(instance)s is already being synced by session %(session)s; try again when it has finished."
    ),
)
INSTANCE_BUSY_SINGLE = message_register(
    "sync_instance_busy_single",
    gettext_noop(
        "Instance %(instance)s is already being synced by a manual single-instance sync; try again when it has "
        "finished."
    ),
)
SYNC_FAILED = message_register("sync_failed", gettext_noop("Sync of instance %(instance)s failed."))
BROKER_REFUSED = message_register(
    "sync_broker_refused",
    gettext_noop(
        "the task queue (broker) refused the task: %(reason)s. Nothing ran for this instance; check that the "
        "broker (Q_BROKER_URL) is reachable, then use Retry failed."
    ),
)
WORKER_LOST = message_register(
    "sync_worker_lost",
    gettext_noop(
        "worker lost: no heartbeat from the sync of %(instance)s for %(silent)ss (limit %(limit)ss); the worker "
        "was killed or crashed. Retry failed to sync it again."
    ),
)
TASK_LOST = message_register(
    "sync_task_lost",
    gettext_noop(
        "its task was queued %(times)s times and never started: the broker lost it or no worker cluster is "
        "running (manage.py qcluster). Retry failed to sync it."
    ),
)
PROCESS_STOPPED = message_register(
    "sync_process_stopped",
    gettext_noop("the process running this session stopped before reaching this instance. Retry failed to sync it."),
)


def coded(code: str, **params: str) -> dict[str, Any]:
    """The English text, code and parameters of a sync message, as ``mark_failed``/``fail_pending`` take them."""
    return {"error_message": message_english(code, params), "error_code": code, "error_params": params}


RECORD_TERMINAL = frozenset(
    {SyncRecordStatusChoices.COMPLETED, SyncRecordStatusChoices.FAILED, SyncRecordStatusChoices.CANCELLED}
)


class SyncSession(models.Model):
    """One batch/task run over several instances; its counts are derived from its records."""

    session_id = models.UUIDField(_("session id"), default=uuid.uuid4, unique=True, editable=False)
    sync_type = models.CharField(_("sync type"), max_length=20, choices=SyncTypeChoices.choices)
    sync_category = models.CharField(
        _("sync category"), max_length=20, choices=SyncCategoryChoices.choices, default=SyncCategoryChoices.ACCOUNT
    )
    status = models.CharField(
        _("status"), max_length=20, choices=SyncSessionStatusChoices.choices, default=SyncSessionStatusChoices.RUNNING
    )
    started_at = models.DateTimeField(_("started at"), default=timezone.now)
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)
    total_instances = models.PositiveIntegerField(_("total instances"), default=0)
    successful_instances = models.PositiveIntegerField(_("successful instances"), default=0)
    failed_instances = models.PositiveIntegerField(_("failed instances"), default=0)
    # completed instances whose sync could not read everything: the session "completed with gaps"
    gapped_instances = models.PositiveIntegerField(_("instances with coverage gaps"), default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="sync_sessions",
        verbose_name=_("created by"),
    )
    retry_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="retries", verbose_name=_("retry of")
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "sync_sessions"
        ordering = ["-started_at"]
        verbose_name = _("sync session")
        verbose_name_plural = _("sync records")
        permissions = [("run_sync", "Can start, cancel and retry syncs")]
        indexes = [
            models.Index(fields=["status", "started_at"], name="sync_sess_status_started"),
            models.Index(fields=["sync_type", "started_at"], name="sync_sess_type_started"),
            models.Index(fields=["started_at"], name="sync_sess_started"),
        ]

    def __str__(self) -> str:
        return f"{self.get_sync_type_display()} {self.session_id} ({self.status})"

    def _transition(self, to: str, **extra: Any) -> bool:
        now = timezone.now()
        done = (
            SyncSession.objects.filter(pk=self.pk, status=SyncSessionStatusChoices.RUNNING).update(
                status=to, completed_at=now, updated_at=now, **extra
            )
            == 1
        )
        if done:
            self.status, self.completed_at = to, now
            for key, value in extra.items():
                setattr(self, key, value)
        return done

    def mark_cancelled(self) -> bool:
        """running -> cancelled; False if the session had already ended."""
        return self._transition(SyncSessionStatusChoices.CANCELLED)

    def finalize(self) -> bool:
        """End the session once every record is terminal; True only for the call that ended it.

        The counts come from one aggregate query over the records, and the status change is
        one conditional UPDATE, so concurrent finishers race safely: exactly one wins. A
        cancelled session is never touched (it is no longer ``running``).
        """
        agg = self.records.aggregate(
            total=Count("pk"),
            open=Count("pk", filter=~Q(status__in=RECORD_TERMINAL)),
            ok=Count("pk", filter=Q(status=SyncRecordStatusChoices.COMPLETED)),
            failed=Count("pk", filter=Q(status=SyncRecordStatusChoices.FAILED)),
            gapped=Count("pk", filter=Q(status=SyncRecordStatusChoices.COMPLETED, coverage_gaps__gt=0)),
        )
        if agg["open"]:
            return False
        to = SyncSessionStatusChoices.FAILED if agg["failed"] else SyncSessionStatusChoices.COMPLETED
        return self._transition(
            to,
            total_instances=agg["total"],
            successful_instances=agg["ok"],
            failed_instances=agg["failed"],
            gapped_instances=agg["gapped"],
        )

    @property
    def with_gaps(self) -> bool:
        """Completed, but at least one instance could not be read entirely (shown as "completed with gaps")."""
        return self.status == SyncSessionStatusChoices.COMPLETED and self.gapped_instances > 0


class SyncInstanceRecord(models.Model):
    """One instance's part of a session.

    The instance FK is SET_NULL and the name is copied, so a session's history stays
    readable after the instance is renamed or deleted.
    """

    session = models.ForeignKey(
        SyncSession, on_delete=models.CASCADE, related_name="records", verbose_name=_("session")
    )
    instance = models.ForeignKey(
        "instances.Instance",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="sync_records",
        verbose_name=_("instance"),
    )
    instance_name = models.CharField(_("instance name"), max_length=128)
    sync_category = models.CharField(
        _("sync category"), max_length=20, choices=SyncCategoryChoices.choices, default=SyncCategoryChoices.ACCOUNT
    )
    status = models.CharField(
        _("status"), max_length=20, choices=SyncRecordStatusChoices.choices, default=SyncRecordStatusChoices.PENDING
    )
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)
    items_synced = models.PositiveIntegerField(_("accounts synced"), default=0)
    items_created = models.PositiveIntegerField(_("accounts added"), default=0)
    items_updated = models.PositiveIntegerField(_("accounts modified"), default=0)
    items_deleted = models.PositiveIntegerField(_("accounts removed"), default=0)
    # scopes the completed sync could not read (details["coverage"] lists them, and those left out by the options)
    coverage_gaps = models.PositiveIntegerField(_("coverage gaps"), default=0)
    error_kind = models.CharField(_("error kind"), max_length=32, blank=True)
    error_message = models.TextField(_("error message"), blank=True)
    # the message's code and parameters (accountsync.adapters.base.MESSAGES): shown in the reader's language;
    # empty for rows from before codes, which keep showing their English error_message
    error_code = models.CharField(_("error code"), max_length=64, blank=True, default="")
    error_params = models.JSONField(_("error parameters"), default=dict, blank=True)
    details = models.JSONField(_("details"), default=dict, blank=True)
    heartbeat_at = models.DateTimeField(_("heartbeat"), null=True, blank=True)
    attempt = models.PositiveIntegerField(_("attempt"), default=0)
    # when its task was last handed to the broker, and how often: the reaper re-queues a
    # pending record whose task never started (a broker or cluster lost it)
    queued_at = models.DateTimeField(_("queued at"), null=True, blank=True)
    queue_attempts = models.PositiveIntegerField(_("times queued"), default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "sync_instance_records"
        ordering = ["session_id", "pk"]
        verbose_name = _("sync instance record")
        verbose_name_plural = _("sync instance records")
        constraints = [models.UniqueConstraint(fields=["session", "instance"], name="sync_record_unique_instance")]
        indexes = [
            models.Index(fields=["status", "heartbeat_at"], name="sync_rec_status_heartbeat"),
            models.Index(fields=["instance", "id"], name="sync_rec_instance_latest"),
            models.Index(fields=["started_at"], name="sync_rec_started"),  # the dashboard's syncs per day
        ]

    def __str__(self) -> str:
        return f"{self.instance_name} ({self.status})"

    @property
    def with_gaps(self) -> bool:
        return self.status == SyncRecordStatusChoices.COMPLETED and self.coverage_gaps > 0

    @property
    def error_display(self) -> str:
        """The error in the active language (the stored English text when it has no known code)."""
        if not self.error_message:
            return ""
        params = self.error_params if isinstance(self.error_params, dict) else {}
        prefix = params.get("instance_prefix", "")
        return message_render(self.error_code, params, self.error_message, prefix=prefix)

    def _transition(self, frm: set[str], to: str, *, where: tuple[Any, ...] = (), **fields: Any) -> bool:
        """One conditional UPDATE; ``where`` adds conditions (``Exists`` on other tables, never a join).

        Why no join: an UPDATE whose filter joins another table is run by Django on MySQL as a
        SELECT of the ids, then an UPDATE of those ids without the conditions, which is a race.
        """
        fields["updated_at"] = timezone.now()
        done = SyncInstanceRecord.objects.filter(*where, pk=self.pk, status__in=frm).update(status=to, **fields) == 1
        if done:
            self.status = to
            for key, value in fields.items():
                setattr(self, key, value)
            if to == SyncRecordStatusChoices.FAILED:
                from sync.hooks import record_failed_announce

                record_id = self.pk
                transaction.on_commit(lambda: record_failed_announce(record_id), robust=True)
        return done

    def mark_running(self, *, while_session_runs: bool = False) -> bool:
        """pending -> running; the attempt counter lets a reaper tell retries apart.

        ``while_session_runs`` makes the same UPDATE also require a running session, so a True
        is at once the start and the first heartbeat's cancel check (``heartbeat``): the worker
        then skips that beat. False tells nothing more than before (not pending, or the session
        ended): the caller asks again without it and lets the heartbeat find the cancel.
        """
        now = timezone.now()
        return self._transition(
            {SyncRecordStatusChoices.PENDING},
            SyncRecordStatusChoices.RUNNING,
            where=(record_session_running(),) if while_session_runs else (),
            started_at=now,
            heartbeat_at=now,
            attempt=self.attempt + 1,
        )

    def mark_completed(
        self, *, synced: int, created: int, updated: int, deleted: int, details: dict, where: tuple[Any, ...] = ()
    ) -> bool:
        """running -> completed with the sync's counts (and its coverage gaps, from the details).

        ``where``: more conditions for the same UPDATE (``Exists`` on other tables), so that a
        completion can carry its own fence (``sync.services.LeaseFence.commit_unchanged``).
        """
        gaps = unreadable_count(result_gaps(details))
        return self._transition(
            {SyncRecordStatusChoices.RUNNING},
            SyncRecordStatusChoices.COMPLETED,
            where=where,
            completed_at=timezone.now(),
            items_synced=synced,
            items_created=created,
            items_updated=updated,
            items_deleted=deleted,
            coverage_gaps=gaps,
            details=details,
            error_kind="",
            error_message="",
            error_code="",
            error_params={},
        )

    def mark_failed(
        self,
        *,
        error_kind: str,
        error_message: str,
        details: dict | None = None,
        error_code: str = "",
        error_params: dict[str, str] | None = None,
    ) -> bool:
        """running -> failed with a classified error (and its message code, for display in the reader's language)."""
        return self._transition(
            {SyncRecordStatusChoices.RUNNING},
            SyncRecordStatusChoices.FAILED,
            completed_at=timezone.now(),
            error_kind=error_kind,
            error_message=error_message,
            error_code=error_code,
            error_params=error_params or {},
            details=details or {},
        )

    def fail_pending(
        self, *, error_kind: str, error_message: str, error_code: str = "", error_params: dict[str, str] | None = None
    ) -> bool:
        """pending -> failed: its task never ran (not queued, or lost by the broker)."""
        return self._transition(
            {SyncRecordStatusChoices.PENDING},
            SyncRecordStatusChoices.FAILED,
            completed_at=timezone.now(),
            error_kind=error_kind,
            error_message=error_message,
            error_code=error_code,
            error_params=error_params or {},
        )

    def fence(self) -> bool:
        """Inside the apply's transaction: lock this record and prove it still runs in a running session.

        The row lock (``SELECT … FOR UPDATE`` on PostgreSQL; the IMMEDIATE transaction on
        SQLite) makes a reaper or canceller wait for the apply's commit; they then find the
        record completed and leave it alone, so data and history cannot disagree.
        The session is checked by a subquery, not a join: the lock then takes the record's row
        alone on every backend without ``FOR UPDATE OF`` (which MySQL/MariaDB lack), and a
        subquery's rows are not locked by the outer ``FOR UPDATE``.
        """
        return bool(
            list(
                SyncInstanceRecord.objects.select_for_update()
                .filter(record_session_running(), pk=self.pk, status=SyncRecordStatusChoices.RUNNING)
                .values_list("pk", flat=True)
            )
        )

    def heartbeat(self) -> bool:
        """Beat between phases; False means the record is no longer ours to run.

        One UPDATE is both the heartbeat the reaper reads and the cancel check: it only
        matches while the record runs and its session is still running.
        """
        now = timezone.now()
        done = (
            SyncInstanceRecord.objects.filter(
                pk=self.pk,
                status=SyncRecordStatusChoices.RUNNING,
                session__status=SyncSessionStatusChoices.RUNNING,
            ).update(heartbeat_at=now)
            == 1
        )
        if done:
            self.heartbeat_at = now
        return done


def record_session_running() -> models.Exists:
    """The record's session is running: a subquery, not a join (see ``SyncInstanceRecord._transition``)."""
    return models.Exists(
        SyncSession.objects.filter(pk=models.OuterRef("session_id"), status=SyncSessionStatusChoices.RUNNING)
    )


from sync.leases import InstanceLease  # noqa: E402, F401  (registered with the sync app)

"""Sync sessions ("sync records") and their per-instance records in the admin.

The session page is the batch-details view: counts, per-instance table with
classified errors, Cancel and Retry failed. While a session runs the page polls
a small JSON view (``<id>/progress/``) every two seconds and redraws itself, so
a user watches the workers without reloading. Starting, cancelling and retrying
need ``sync.run_sync``; every write goes through ``sync.services``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Case, Count, F, IntegerField, OuterRef, Q, QuerySet, Subquery, When
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from accountsync.adapters.base import ErrorKind, gap_text
from accountsync.facts import REFERENCE_KEY as FACTS_REFERENCE_KEY
from accountsync.facts import SERVER_FACT_KEYS
from accountsync.models import InstanceAccount
from adminkit.kit import ReadOnlyAdmin, badge, date_range_filter
from sync.models import (
    RECORD_TERMINAL,
    RUN_SYNC,
    SyncInstanceRecord,
    SyncRecordStatusChoices,
    SyncSession,
    SyncSessionStatusChoices,
    SyncTypeChoices,
)
from sync.services import (
    SyncBrokerError,
    SyncRequestError,
    sync_session_cancel,
    sync_session_retry_failed,
    sync_session_start,
)

POLL_INTERVAL_MS = 2000
# sessions whose stored counts are not final: running ones, and cancelled ones (never finalized)
LIVE_COUNTS = (SyncSessionStatusChoices.RUNNING, SyncSessionStatusChoices.CANCELLED)


def can_run_sync(request: HttpRequest) -> bool:
    """Starting, cancelling and retrying syncs all need the one ``sync.run_sync`` permission."""
    return request.user.has_perm(RUN_SYNC)


def refuse_without_run_sync(request: HttpRequest) -> bool:
    """Add the "not allowed" admin message and return True when the user may not run syncs."""
    if can_run_sync(request):
        return False
    messages.error(request, gettext("You do not have permission to start, cancel or retry syncs; nothing was started."))
    return True


def broker_unavailable(request: HttpRequest, exc: SyncBrokerError) -> HttpResponseRedirect:
    """The admin's answer when the broker refused a new session's tasks: an error message, then that session.

    The service has already failed the records it could not queue (error kind ``broker``),
    so the session page lists them and its Retry failed button works once the broker is back.
    """
    messages.error(
        request,
        ngettext(
            "The task broker is unreachable: %(n)d instance of sync session %(id)s could not be queued and is "
            "marked failed. Check that the broker is running (Q_BROKER_URL), then use Retry failed.",
            "The task broker is unreachable: %(n)d instances of sync session %(id)s could not be queued and are "
            "marked failed. Check that the broker is running (Q_BROKER_URL), then use Retry failed.",
            exc.not_queued,
        )
        % {"n": exc.not_queued, "id": str(exc.session_id)[:8]},
    )
    return HttpResponseRedirect(reverse("admin:sync_syncsession_change", args=[str(exc.session_id)]))


def format_duration(seconds: float | None) -> str:
    """`1h 02m`, `3m 07s`, `12.4s`: short enough for a list column."""
    if seconds is None:
        return "-"
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def span_seconds(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds from start to end, or to now while still open; None if it never started."""
    if start is None:
        return None
    return ((end or timezone.now()) - start).total_seconds()


def format_time(value: datetime | None) -> str:
    return formats.date_format(timezone.localtime(value), "DATETIME_FORMAT") if value else "-"


def progress_bar(total: int, ok: int, failed: int, *, wide: bool = False) -> str:
    """Green share for succeeded records, red for failed, grey for what is left."""
    total = max(total, 0)
    ok_pct = round(100 * ok / total, 1) if total else 0
    failed_pct = round(100 * failed / total, 1) if total else 0
    return format_html(
        '<span class="wf-progress{}" role="progressbar" aria-valuemin="0" aria-valuemax="{}" aria-valuenow="{}">'
        '<span class="wf-progress-ok" style="width:{}%"></span>'
        '<span class="wf-progress-failed" style="left:{}%;width:{}%"></span></span>'
        '<span class="wf-progress-label">{}/{}</span>',
        " wf-progress-wide" if wide else "",
        total,
        ok + failed,
        ok_pct,
        ok_pct,
        failed_pct,
        ok + failed,
        total,
    )


# a completed sync that could not read everything: a warning, not a success and not a failure
GAPS_STATUS = "gaps"
GAPS_LABEL = _("Completed with gaps")
GAP_KINDS = {"unreadable": _("unreadable"), "out_of_scope": _("out of scope")}


# the classified error kinds (accountsync.adapters.base.ErrorKind, the engine's guard and conflict, the sync
# layer's cancelled and broker) as people read them
ERROR_KIND_LABELS = {
    ErrorKind.CONNECTION: _("Connection"),
    ErrorKind.TIMEOUT: _("Timeout"),
    ErrorKind.PERMISSION: _("Permission"),
    ErrorKind.CONFIGURATION: _("Configuration"),
    ErrorKind.INTERNAL: _("Internal error"),
    "guard": _("Mass-removal guard"),
    "conflict": _("Conflict"),
    "cancelled": _("Cancelled"),
    "broker": _("Task broker unreachable"),
}
GUARD = "guard"


def error_kind_label(kind: str) -> str:
    """The translated label of an error kind (the raw code for one this table does not know)."""
    return str(ERROR_KIND_LABELS.get(kind, kind))


def session_status_display(status: str, label: Any, *, total: int, succeeded: int) -> str:
    """A session's status in words, with numbers when not every instance succeeded: "Failed — 2 of 6 succeeded"."""
    if status in (SyncSessionStatusChoices.FAILED, SyncSessionStatusChoices.CANCELLED):
        return gettext("%(status)s — %(ok)d of %(total)d succeeded") % {
            "status": label,
            "ok": succeeded,
            "total": total,
        }
    return str(label)


def record_status(record: SyncInstanceRecord) -> dict[str, str]:
    """A record's status for display: "Completed with gaps" when its sync could not read everything."""
    if record.with_gaps:
        return {"status": GAPS_STATUS, "status_display": str(GAPS_LABEL)}
    return {"status": record.status, "status_display": str(record.get_status_display())}


class CoverageFilter(admin.SimpleListFilter):
    """Completed syncs that read everything, and those that completed with coverage gaps."""

    title = _("coverage")
    parameter_name = "coverage"
    field = "coverage_gaps"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("gaps", gettext("Completed with gaps")), ("complete", gettext("Completed, everything read"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        completed = Q(status=SyncRecordStatusChoices.COMPLETED)
        if self.value() == "gaps":
            return queryset.filter(completed, **{f"{self.field}__gt": 0})
        if self.value() == "complete":
            return queryset.filter(completed, **{self.field: 0})
        return queryset


class SessionCoverageFilter(CoverageFilter):
    field = "gapped_instances"


def session_lookup(object_id: str) -> SyncSession | None:
    """A session by primary key or by its UUID (the id the CLI and API print)."""
    raw = str(object_id).strip()
    if raw.isdigit():
        return SyncSession.objects.select_related("created_by", "retry_of").filter(pk=int(raw)).first()
    try:
        sid = uuid.UUID(raw)
    except ValueError:
        return None
    return SyncSession.objects.select_related("created_by", "retry_of").filter(session_id=sid).first()


def session_progress(session: SyncSession) -> dict[str, Any]:
    """Everything the batch-details page shows, as JSON-ready values (two queries).

    Counts come from the records themselves, so a running or cancelled session
    (whose stored counts are only written when it is finalized) reads true numbers.
    """
    records = list(session.records.order_by("pk"))
    by_status: dict[str, int] = {}
    for record in records:
        by_status[record.status] = by_status.get(record.status, 0) + 1
    total = len(records)
    ok = by_status.get(SyncRecordStatusChoices.COMPLETED, 0)
    failed = by_status.get(SyncRecordStatusChoices.FAILED, 0)
    cancelled = by_status.get(SyncRecordStatusChoices.CANCELLED, 0)
    rows = [
        {
            "id": r.pk,
            "instance": r.instance_name,
            "instance_url": reverse("admin:instances_instance_change", args=[r.instance_id]) if r.instance_id else "",
            **record_status(r),
            "started_at": format_time(r.started_at),
            "completed_at": format_time(r.completed_at),
            "duration": format_duration(span_seconds(r.started_at, r.completed_at)) if r.started_at else "-",
            "synced": r.items_synced,
            "added": r.items_created,
            "modified": r.items_updated,
            "removed": r.items_deleted,
            "error_kind": r.error_kind,
            "error_kind_display": error_kind_label(r.error_kind) if r.error_kind else "",
            # in the reader's language (the stored English for rows from before message codes)
            "error_message": r.error_display,
            "accept_removals_url": reverse("admin:sync_syncsession_accept_removals", args=[session.pk, r.pk])
            if r.error_kind == GUARD and r.status == SyncRecordStatusChoices.FAILED and r.instance_id
            else "",
            "gaps": [
                {
                    "scope": g.get("scope", ""),
                    "kind": g.get("kind", ""),
                    "kind_display": str(GAP_KINDS.get(g.get("kind", ""), g.get("kind", ""))),
                    "reason": gap_text(g.get("reason", "")),
                    "fix": gap_text(g.get("fix", "")),
                }
                for g in ((r.details or {}).get("coverage") or {}).get("gaps") or []
            ]
            if r.status == SyncRecordStatusChoices.COMPLETED
            else [],
        }
        for r in records
    ]
    gapped = sum(1 for r in records if r.with_gaps)
    ended_with_gaps = session.status == SyncSessionStatusChoices.COMPLETED and gapped > 0
    return {
        "session_id": str(session.session_id),
        "status": GAPS_STATUS if ended_with_gaps else session.status,
        "status_display": str(GAPS_LABEL)
        if ended_with_gaps
        else session_status_display(session.status, session.get_status_display(), total=total, succeeded=ok),
        "with_gaps": gapped,
        "running": session.status == SyncSessionStatusChoices.RUNNING,
        "duration": format_duration(span_seconds(session.started_at, session.completed_at)),
        "completed_at": format_time(session.completed_at),
        "total": total,
        "done": ok + failed + cancelled,
        "succeeded": ok,
        "failed": failed,
        "cancelled": cancelled,
        "pending": by_status.get(SyncRecordStatusChoices.PENDING, 0),
        "running_records": by_status.get(SyncRecordStatusChoices.RUNNING, 0),
        "accounts": sum(r.items_synced for r in records),
        "records": rows,
    }


def _live_count(status_filter: Q) -> Subquery:
    return Subquery(
        SyncInstanceRecord.objects.filter(status_filter, session=OuterRef("pk"))
        .order_by()
        .values("session")
        .annotate(n=Count("pk"))
        .values("n"),
        output_field=IntegerField(),
    )


@admin.register(SyncSession)
class SyncSessionAdmin(ReadOnlyAdmin):
    list_display = [
        "short_id",
        "sync_type",
        "status_badge",
        "started",
        "duration",
        "instances",
        "progress",
        "created_by",
    ]
    list_display_links = ["short_id"]
    list_filter = [
        "sync_type",
        "status",
        SessionCoverageFilter,
        date_range_filter("started_at", "started", _("started")),
    ]
    list_select_related = ["created_by"]
    list_per_page = 20
    ordering = ["-started_at", "-id"]
    search_fields = ["session_id"]
    search_help_text = _("A session id, or its first characters as shown in the list.")

    def get_queryset(self, request: HttpRequest) -> QuerySet[SyncSession]:
        live = Q(status__in=LIVE_COUNTS)
        return (
            super()
            .get_queryset(request)
            .annotate(
                live_ok=Case(
                    When(live, then=_live_count(Q(status=SyncRecordStatusChoices.COMPLETED))),
                    default=F("successful_instances"),
                    output_field=IntegerField(),
                ),
                live_failed=Case(
                    When(live, then=_live_count(Q(status=SyncRecordStatusChoices.FAILED))),
                    default=F("failed_instances"),
                    output_field=IntegerField(),
                ),
                live_done=Case(
                    When(live, then=_live_count(Q(status__in=RECORD_TERMINAL))),
                    default=F("total_instances"),
                    output_field=IntegerField(),
                ),
            )
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[SyncSession], search_term: str
    ) -> tuple[QuerySet[SyncSession], bool]:
        """Match a whole UUID exactly, or the short hex prefix the list shows."""
        term = search_term.strip().lower()
        if not term:
            return queryset, False
        try:
            return queryset.filter(session_id=uuid.UUID(term)), False
        except ValueError:
            pass
        hex_only = term.replace("-", "")
        if hex_only and all(c in "0123456789abcdef" for c in hex_only) and len(hex_only) <= 32:
            low = uuid.UUID(hex_only.ljust(32, "0"))
            high = uuid.UUID(hex_only.ljust(32, "f"))
            return queryset.filter(session_id__gte=low, session_id__lte=high), False
        messages.warning(request, gettext("“%(term)s” is not a session id.") % {"term": search_term})
        return queryset.none(), False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return super().changelist_view(request, {"title": gettext("Sync records"), **(extra_context or {})})

    @admin.display(description=_("session"), ordering="session_id")
    def short_id(self, obj: SyncSession) -> str:
        return format_html('<span title="{}">{}</span>', obj.session_id, str(obj.session_id)[:8])

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: SyncSession) -> str:
        if obj.with_gaps:
            return badge(GAPS_STATUS, GAPS_LABEL)
        return badge(
            obj.status,
            session_status_display(
                obj.status, obj.get_status_display(), total=obj.total_instances, succeeded=obj.live_ok or 0
            ),
        )

    @admin.display(description=_("started"), ordering="started_at")
    def started(self, obj: SyncSession) -> str:
        return formats.date_format(timezone.localtime(obj.started_at), "SHORT_DATETIME_FORMAT")

    @admin.display(description=_("duration"))
    def duration(self, obj: SyncSession) -> str:
        return format_duration(span_seconds(obj.started_at, obj.completed_at))

    @admin.display(description=_("instances (ok / failed)"))
    def instances(self, obj: SyncSession) -> str:
        return format_html(
            '{} <span class="wf-muted">(</span><span class="wf-ok">{}</span> / <span class="wf-error">{}</span>'
            '<span class="wf-muted">)</span>',
            obj.total_instances,
            obj.live_ok or 0,
            obj.live_failed or 0,
        )

    @admin.display(description=_("progress"))
    def progress(self, obj: SyncSession) -> str:
        return progress_bar(obj.total_instances, obj.live_ok or 0, obj.live_failed or 0)

    # --- the batch-details page and its actions ---------------------------------

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/progress/", wrap(self.progress_view), name="sync_syncsession_progress"),
            path("<path:object_id>/cancel/", wrap(self.cancel_view), name="sync_syncsession_cancel"),
            path("<path:object_id>/retry-failed/", wrap(self.retry_failed_view), name="sync_syncsession_retry"),
            path(
                "<path:object_id>/accept-removals/<int:record_id>/",
                wrap(self.accept_removals_view),
                name="sync_syncsession_accept_removals",
            ),
            *super().get_urls(),
        ]

    def _missing(self, request: HttpRequest, object_id: str) -> HttpResponseRedirect:
        messages.error(
            request,
            gettext("Sync session “%(id)s” does not exist (mistyped or deleted?).") % {"id": object_id},
        )
        return HttpResponseRedirect(reverse("admin:sync_syncsession_changelist"))

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        session = session_lookup(object_id)
        if session is None:
            return self._missing(request, object_id)
        data = session_progress(session)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": gettext("Batch details"),
            "session": session,
            "progress": data,
            "progress_bar": progress_bar(data["total"], data["succeeded"], data["failed"], wide=True),
            "progress_url": reverse("admin:sync_syncsession_progress", args=[session.pk]),
            "poll_ms": POLL_INTERVAL_MS,
            "can_run_sync": can_run_sync(request),
            "can_cancel": data["running"],
            "can_retry": not data["running"] and data["failed"] > 0,
            "retries": [
                (pk, sid, status, SyncSessionStatusChoices(status).label)
                for pk, sid, status in session.retries.order_by("started_at").values_list("pk", "session_id", "status")
            ],
            "media": self.media,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/sync/syncsession/batch_details.html", context)

    def progress_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        if not self.has_view_permission(request):
            return JsonResponse({"error": gettext("You may not view sync sessions.")}, status=403)
        session = session_lookup(object_id)
        if session is None:
            return JsonResponse(
                {"error": gettext("Sync session “%(id)s” does not exist.") % {"id": object_id}}, status=404
            )
        return JsonResponse(session_progress(session))

    def _session_post(
        self, request: HttpRequest, object_id: str, act: Callable[[HttpRequest, SyncSession], HttpResponse | None]
    ) -> HttpResponse:
        """The shared guard of the session buttons: POST only, known session, ``sync.run_sync``."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        session = session_lookup(object_id)
        if session is None:
            return self._missing(request, object_id)
        back = HttpResponseRedirect(reverse("admin:sync_syncsession_change", args=[session.pk]))
        if refuse_without_run_sync(request):
            return back
        return act(request, session) or back

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._session_post(request, object_id, self._cancel)

    def retry_failed_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._session_post(request, object_id, self._retry_failed)

    def _cancel(self, request: HttpRequest, session: SyncSession) -> None:
        short = str(session.session_id)[:8]
        if sync_session_cancel(session=session):
            messages.success(
                request,
                gettext("Session %(id)s cancelled: pending instances will not run; running ones stop before applying.")
                % {"id": short},
            )
        else:
            session.refresh_from_db(fields=["status"])
            messages.warning(
                request,
                gettext("Session %(id)s had already ended (%(status)s); nothing to cancel.")
                % {"id": short, "status": session.get_status_display()},
            )

    def _retry_failed(self, request: HttpRequest, session: SyncSession) -> HttpResponse | None:
        if session.status == SyncSessionStatusChoices.RUNNING:
            messages.error(request, gettext("The session is still running: wait for it to end, then retry failed."))
            return None
        try:
            retry = sync_session_retry_failed(session=session, created_by=request.user)
        except SyncRequestError:
            messages.error(request, gettext("This session has no failed instance that still exists; nothing to retry."))
            return None
        except SyncBrokerError as exc:
            return broker_unavailable(request, exc)
        messages.success(
            request,
            ngettext(
                "Retrying %(n)d failed instance in new session %(id)s on the workers.",
                "Retrying %(n)d failed instances in new session %(id)s on the workers.",
                retry.total_instances,
            )
            % {"n": retry.total_instances, "id": str(retry.session_id)[:8]},
        )
        return HttpResponseRedirect(reverse("admin:sync_syncsession_change", args=[retry.pk]))

    # --- a guard refusal, accepted: the same instance synced again with force ------------

    def accept_removals_view(self, request: HttpRequest, object_id: str, record_id: int) -> HttpResponse:
        """GET: the accounts the refused sync would have deactivated; POST: sync the instance again with force.

        Only for a failed record whose error kind is ``guard`` and whose instance still exists, and
        only with ``sync.run_sync``. The list is what the refused sync saw; the forced sync reads the
        server again and deactivates what is missing then.
        """
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        session = session_lookup(object_id)
        if session is None:
            return self._missing(request, object_id)
        back = HttpResponseRedirect(reverse("admin:sync_syncsession_change", args=[session.pk]))
        if refuse_without_run_sync(request):
            return back
        record = (
            session.records.select_related("instance")
            .filter(pk=record_id, status=SyncRecordStatusChoices.FAILED, error_kind=GUARD, instance__isnull=False)
            .first()
        )
        if record is None:
            messages.error(
                request,
                gettext("That instance was not refused by the mass-removal guard in this session; nothing to accept."),
            )
            return back
        instance = record.instance
        if request.method == "POST":
            return self._accept_removals(request, record) or back
        guard = (record.details or {}).get(GUARD) or {}
        identities = [str(i) for i in guard.get("identities") or []]
        accounts = {
            a.identity: a
            for a in InstanceAccount.objects.filter(instance=instance, identity__in=identities).only(
                "pk", "identity", "kind", "is_active", "is_superuser", "first_seen_at"
            )
        }
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": gettext("Sync %(instance)s again, accepting the removals") % {"instance": instance.name},
            "session": session,
            "record": record,
            "instance": instance,
            "would_deactivate": guard.get("would_deactivate"),
            "active": guard.get("active"),
            "rows": [(identity, accounts.get(identity)) for identity in identities],
            "more": max(int(guard.get("would_deactivate") or 0) - len(identities), 0),
            "media": self.media,
        }
        return TemplateResponse(request, "admin/sync/syncsession/accept_removals.html", context)

    def _accept_removals(self, request: HttpRequest, record: SyncInstanceRecord) -> HttpResponse | None:
        instance = record.instance
        if instance is None:
            return None
        if not instance.is_active:
            messages.error(
                request, gettext("Instance %(name)s is inactive: activate it first.") % {"name": instance.name}
            )
            return None
        try:
            forced = sync_session_start(
                instances=[instance], sync_type=SyncTypeChoices.MANUAL_BATCH, created_by=request.user, force=True
            )
        except SyncRequestError as exc:
            messages.error(request, gettext("Nothing was started: %(error)s") % {"error": exc})
            return None
        except SyncBrokerError as exc:
            return broker_unavailable(request, exc)
        messages.success(
            request,
            gettext(
                "Syncing %(name)s again in session %(id)s, accepting the removals: accounts the server no longer "
                "lists will be deactivated."
            )
            % {"name": instance.name, "id": str(forced.session_id)[:8]},
        )
        return HttpResponseRedirect(reverse("admin:sync_syncsession_change", args=[forced.pk]))


class ErrorKindFilter(admin.SimpleListFilter):
    """The classified error kinds, listed from code: a DISTINCT over all records would scan the history."""

    title = _("error kind")
    parameter_name = "error_kind"
    KINDS = tuple(ERROR_KIND_LABELS)

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(kind, error_kind_label(kind)) for kind in self.KINDS]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(error_kind=self.value()) if self.value() else queryset


@admin.register(SyncInstanceRecord)
class SyncInstanceRecordAdmin(ReadOnlyAdmin):
    list_display = [
        "instance_name",
        "session_link",
        "status_badge",
        "started_at",
        "completed_at",
        "items_synced",
        "error_kind_display",
    ]
    list_filter = [
        "status",
        CoverageFilter,
        ErrorKindFilter,
        date_range_filter("started_at", "started", _("started")),
    ]
    search_fields = ["instance_name"]
    list_select_related = ["session"]
    ordering = ["-id"]
    # the record page: the error in the reader's language instead of the stored English and its code
    fields = [
        "session_link",
        "instance",
        "instance_name",
        "status_badge",
        "started_at",
        "completed_at",
        "items_synced",
        "items_created",
        "items_updated",
        "items_deleted",
        "coverage_gaps",
        "error_kind_display",
        "error_text",
        "details",
        "server_facts_link",
        "heartbeat_at",
        "attempt",
        "queued_at",
        "queue_attempts",
    ]
    readonly_fields = fields

    @admin.display(description=_("error"))
    def error_text(self, obj: SyncInstanceRecord) -> str:
        return obj.error_display or "-"

    @admin.display(description=_("server facts"))
    def server_facts_link(self, obj: SyncInstanceRecord) -> str:
        """Where the server-wide facts the details only count are (accountsync/facts.py)."""
        ref = (obj.details or {}).get(FACTS_REFERENCE_KEY)
        if isinstance(ref, dict) and ref.get("id") is not None:
            return format_html(
                '<a href="{}">{}</a>',
                reverse("admin:accountsync_instanceserverfacts_change", args=[ref["id"]]),
                gettext("version %(id)s (digest %(digest)s)")
                % {"id": ref["id"], "digest": str(ref.get("digest"))[:12]},
            )
        if any(key in (obj.details or {}) for key in SERVER_FACT_KEYS):
            return gettext("in the details above (recorded before server facts were stored apart)")
        return "-"

    @admin.display(description=_("session"), ordering="session")
    def session_link(self, obj: SyncInstanceRecord) -> str:
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:sync_syncsession_change", args=[obj.session_id]),
            str(obj.session.session_id)[:8],
        )

    @admin.display(description=_("error kind"), ordering="error_kind")
    def error_kind_display(self, obj: SyncInstanceRecord) -> str:
        return error_kind_label(obj.error_kind) if obj.error_kind else ""

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: SyncInstanceRecord) -> str:
        shown = record_status(obj)
        return badge(shown["status"], shown["status_display"])

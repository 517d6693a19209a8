"""The API's viewsets (NetBox naming: ``<Model>ViewSet``): parse, call one service or selector, render.

Every list declares its joins (``select_related`` / ``prefetch_related`` /
annotations) so it runs a fixed number of queries whatever the page holds.
"""

from __future__ import annotations

import uuid
from typing import Any

import django_filters
from auditlog.models import LogEntry
from django.db.models import Count, IntegerField, OuterRef, Prefetch, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.defaults import page_not_found
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import mixins, status, viewsets
from rest_framework import serializers as drf_serializers
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response

from accountsync import selectors as account_selectors
from accountsync.connection import instance_connection_test
from accountsync.coverage import LastKnownMarker, gap_dict, gaps_at, last_known_privileges
from accountsync.effective_read import account_effective_access
from accountsync.models import AccountChangeLog, AccountPermission, InstanceAccount
from api import filtersets, serializers
from api.exceptions import AccountNotSeenYet, NothingToRetry, SessionNotRunning, SyncAlreadyRunning, SyncFailed
from api.filtersets import MAX_ID, TextFilter, UtcDateTimeFilter
from api.permissions import CanRunSync, ViewChangeLogs, ViewModelPermission
from api.querying import FORMAT_PARAMETER, ExportMixin, export_action, parse_when, reject_nul, when_parameter
from audit.exporting import EVENT_COLUMNS, FORMATS, HISTORY_COLUMNS, stream_rows
from audit.models import AuditEvent, AuditKind, AuditVia
from audit.services import query_filters
from findings.models import Finding
from instances.models import Credential, Instance
from sync.models import SyncInstanceRecord, SyncRecordStatusChoices, SyncSession, SyncTypeChoices
from sync.services import (
    SyncRequestError,
    sync_accounts,
    sync_session_cancel,
    sync_session_retry_failed,
    sync_session_start,
)

MAX_RECORD_IDS = 500
# error_kind of a failed single sync -> (HTTP status, stable code)
SYNC_FAILURE_CODES = {
    "conflict": (status.HTTP_409_CONFLICT, "sync_already_running"),
    "connection": (status.HTTP_400_BAD_REQUEST, "instance_unreachable"),
    "timeout": (status.HTTP_400_BAD_REQUEST, "instance_unreachable"),
    "permission": (status.HTTP_400_BAD_REQUEST, "instance_permission_denied"),
    "configuration": (status.HTTP_400_BAD_REQUEST, "instance_misconfigured"),
    "guard": (status.HTTP_400_BAD_REQUEST, "removal_guard"),
}


def session_queryset() -> QuerySet[SyncSession]:
    """Sessions with live counts from their records: one query for a whole page.

    Why not the stored counts: they are only written when a session is finalized,
    so a running or cancelled session would show zeros. Why correlated subqueries and
    not a GROUP BY over the join: the database then counts the records of the page's
    sessions only (through the (session, instance) index), not every record of every
    session before the LIMIT (400,000 records: most of a second).
    """

    def records(state: str | None = None) -> QuerySet[SyncInstanceRecord]:
        rows = SyncInstanceRecord.objects.filter(session=OuterRef("pk")).order_by().values("session")
        return rows.filter(status=state) if state else rows

    def count(state: str | None = None) -> Subquery:
        return Subquery(records(state).annotate(n=Count("pk")).values("n"), output_field=IntegerField())

    return SyncSession.objects.select_related("created_by", "retry_of").annotate(
        n_total=Coalesce(count(), 0),
        n_ok=Coalesce(count(SyncRecordStatusChoices.COMPLETED), 0),
        n_failed=Coalesce(count(SyncRecordStatusChoices.FAILED), 0),
        n_pending=Coalesce(count(SyncRecordStatusChoices.PENDING), 0),
        n_running=Coalesce(count(SyncRecordStatusChoices.RUNNING), 0),
        n_cancelled=Coalesce(count(SyncRecordStatusChoices.CANCELLED), 0),
        n_accounts=Subquery(records().annotate(n=Sum("items_synced")).values("n"), output_field=IntegerField()),
    )


def _session_detail(session_pk: int) -> SyncSession:
    return session_queryset().prefetch_related(_records_prefetch()).get(pk=session_pk)


def _records_prefetch() -> Prefetch:
    return Prefetch("records", queryset=SyncInstanceRecord.objects.select_related("session").order_by("pk"))


@extend_schema_view(
    list=extend_schema(summary="List credentials (passwords are never returned)"),
    create=extend_schema(summary="Add a credential; the password is encrypted and write-only"),
)
class CredentialViewSet(viewsets.ModelViewSet):
    queryset = Credential.objects.order_by("name")
    serializer_class = serializers.CredentialSerializer
    ordering_fields = ["name", "created_at"]


class CanTestConnection(CanRunSync):
    """A connection test connects out with the production credential and records the version: ``sync.run_sync``."""

    message = "You do not have permission to test connections (sync.run_sync)."


@extend_schema_view(
    list=extend_schema(summary="List instances"),
    create=extend_schema(summary="Register an instance"),
)
class InstanceViewSet(viewsets.ModelViewSet):
    queryset = Instance.objects.select_related("credential").prefetch_related("tags").order_by("name")
    serializer_class = serializers.InstanceSerializer
    filterset_class = filtersets.InstanceFilterSet
    ordering_fields = ["name", "db_type", "environment", "last_sync_at", "created_at"]

    def get_permissions(self) -> list[Any]:
        if self.action == "sync":
            return [CanRunSync()]
        if self.action == "test_connection":
            return [ViewModelPermission(), CanTestConnection()]
        if self.action == "changes":
            return [ViewModelPermission(), ViewChangeLogs()]
        return super().get_permissions()

    @extend_schema(
        summary="Sync one instance now (manual_single)",
        description="Runs in the request and returns the seed's result dict. A failed sync answers 400 "
        "(409 when the instance is already being synced) with the same dict under `result`.",
        request=serializers.InstanceSyncRequestSerializer,
        responses={200: serializers.InstanceSyncResponseSerializer},
    )
    @action(detail=True, methods=["post"])
    def sync(self, request: Request, pk: str | None = None) -> Response:
        instance = self.get_object()
        params = serializers.InstanceSyncRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        if not instance.is_active:
            raise ValidationError(
                {"instance": [f"Instance {instance.name} is inactive; activate it to sync it."]},
                code="instance_inactive",
            )
        result = sync_accounts(
            instance=instance,
            sync_type=SyncTypeChoices.MANUAL_SINGLE,
            force=params.validated_data["force"],
            created_by=request.user,
            via=AuditVia.API,
        )
        body = serializers.SyncResultSerializer(result).data
        if not result["success"]:
            kind = result.get("error_kind") or "internal"
            http_status, code = SYNC_FAILURE_CODES.get(kind, (status.HTTP_400_BAD_REQUEST, "sync_failed"))
            if code == "sync_already_running":
                raise SyncAlreadyRunning(detail=result["message"])
            raise SyncFailed(body, code=code, status_code=http_status)
        return Response({"message": f"Accounts of {instance.name} synced.", "result": body})

    @extend_schema(
        summary="Test the connection to an instance",
        description="Always 200 when the test ran: `ok` says whether the instance answered. "
        "Needs `sync.run_sync` (operators and admins): 403 for viewers.",
        request=None,
        responses={200: serializers.ConnectionTestSerializer},
    )
    @action(detail=True, methods=["post"], url_path="test-connection")
    def test_connection(self, request: Request, pk: str | None = None) -> Response:
        result = instance_connection_test(instance=self.get_object())
        return Response(serializers.ConnectionTestSerializer(result).data)

    @extend_schema(
        summary="What changed on an instance between two times",
        description="The change log entries detected in (from, to], oldest first, paginated. `to` defaults to now. "
        "400 `invalid_datetime` for a date that does not parse, `invalid_range` when from is after to.",
        parameters=[
            when_parameter("from", "Start (exclusive), ISO 8601."),
            when_parameter("to", "End (inclusive), ISO 8601; default now.", required=False),
        ],
        responses={200: serializers.AccountChangeLogSerializer(many=True)},
        filters=False,
    )
    @action(detail=True, methods=["get"])
    def changes(self, request: Request, pk: str | None = None) -> Response:
        instance = self.get_object()
        start = parse_when("from", request.query_params.get("from"))
        end = parse_when("to", request.query_params.get("to"), required=False) or timezone.now()
        if start > end:
            raise ValidationError({"from": ["from must not be after to."]}, code="invalid_range")
        logs = account_selectors.instance_changes_between(instance=instance, start=start, end=end)
        page = self.paginate_queryset(logs)
        return self.get_paginated_response(serializers.AccountChangeLogSerializer(page, many=True).data)


@extend_schema_view(
    list=extend_schema(summary="List sync sessions (newest first, 20 per page)"),
    retrieve=extend_schema(summary="One sync session with its per-instance records"),
)
class SyncSessionViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    lookup_field = "session_id"
    filterset_class = filtersets.SyncSessionFilterSet
    ordering_fields = ["started_at", "completed_at", "status", "sync_type"]
    ordering = ["-started_at", "-id"]

    def get_queryset(self) -> QuerySet[SyncSession]:
        qs = session_queryset().order_by("-started_at", "-id")
        if self.action != "list":
            qs = qs.prefetch_related(_records_prefetch())
        return qs

    def get_serializer_class(self) -> type:
        if self.action == "list":
            return serializers.SyncSessionSerializer
        if self.action == "create":
            return serializers.SyncSessionCreateSerializer
        return serializers.SyncSessionDetailSerializer

    def get_permissions(self) -> list[Any]:
        if self.action in ("create", "cancel", "retry_failed"):
            return [CanRunSync()]
        return super().get_permissions()

    def get_object(self) -> SyncSession:
        # an id that is not a UUID is simply not found (never a 500 or a 400)
        try:
            uuid.UUID(str(self.kwargs.get("session_id")))
        except ValueError:
            raise Http404 from None
        return super().get_object()

    @extend_schema(
        summary="Start a sync session on the workers",
        description='`{"instance_ids": [...]}` or `{"all": true}`; answers 202 with the new session, '
        "whose records are pending until workers pick them up. 503 `broker_unavailable` (with `session_id`) "
        "when the task broker refused the tasks: that session has ended with its records failed.",
        request=serializers.SyncSessionCreateSerializer,
        responses={202: serializers.SyncSessionDetailSerializer, 503: OpenApiResponse(serializers.ErrorSerializer)},
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        params = serializers.SyncSessionCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        try:
            session = sync_session_start(
                instances=data["instances"],
                sync_type=data["sync_type"],
                created_by=request.user,
                force=data["force"],
                via=AuditVia.API,
            )
        except SyncRequestError as exc:
            raise ValidationError({"non_field_errors": [str(exc)]}) from exc
        body = serializers.SyncSessionDetailSerializer(_session_detail(session.pk)).data
        return Response(body, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Cancel a running session",
        description="Pending records are cancelled; running ones stop before applying. 409 if it already ended.",
        request=None,
        responses={200: serializers.SyncSessionDetailSerializer},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, session_id: str | None = None) -> Response:
        session = self.get_object()
        if not sync_session_cancel(session=session, cancelled_by=request.user, via=AuditVia.API):
            raise SessionNotRunning(f"Sync session {session.session_id} has already ended ({session.status}).")
        return Response(serializers.SyncSessionDetailSerializer(_session_detail(session.pk)).data)

    @extend_schema(
        summary="Retry the failed instances of a session in a new session",
        description="Answers 202 with the new session. 503 `broker_unavailable` (with `session_id`) when the "
        "task broker refused the tasks: that new session has ended with its records failed.",
        request=None,
        responses={202: serializers.SyncSessionDetailSerializer, 503: OpenApiResponse(serializers.ErrorSerializer)},
    )
    @action(detail=True, methods=["post"], url_path="retry-failed")
    def retry_failed(self, request: Request, session_id: str | None = None) -> Response:
        session = self.get_object()
        try:
            retry = sync_session_retry_failed(session=session, created_by=request.user, via=AuditVia.API)
        except SyncRequestError as exc:
            raise NothingToRetry(str(exc)) from exc
        body = serializers.SyncSessionDetailSerializer(_session_detail(retry.pk)).data
        return Response(body, status=status.HTTP_202_ACCEPTED)


def _parse_ids(raw: str) -> list[int]:
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not parts:
        raise ValidationError({"ids": ["Give record ids, e.g. ?ids=1,2,3."]}, code="empty")
    if len(parts) > MAX_RECORD_IDS:
        raise ValidationError({"ids": [f"At most {MAX_RECORD_IDS} ids at once."]}, code="too_many")
    bad = [p for p in parts if not p.isascii() or not p.isdigit() or len(p) > 18]
    if bad:
        raise ValidationError({"ids": [f"Not record ids: {', '.join(bad[:5])}."]}, code="invalid")
    return list(dict.fromkeys(int(p) for p in parts))


class SyncInstanceRecordViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = SyncInstanceRecord.objects.select_related("session").order_by("pk")
    serializer_class = serializers.SyncInstanceRecordSerializer
    pagination_class = None
    filter_backends: list[Any] = []

    @extend_schema(
        summary="Batch details for a list of records (or a whole session)",
        parameters=[
            OpenApiParameter("ids", str, description="Comma-separated record ids, e.g. 1,2,3 (at most 500)."),
            OpenApiParameter("session", str, description="A session id (UUID): all of its records."),
        ],
        responses={200: serializers.BatchDetailsSerializer, 400: OpenApiResponse(serializers.ErrorSerializer)},
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        raw_ids, raw_session = request.query_params.get("ids"), request.query_params.get("session")
        if raw_ids is not None:
            ids = _parse_ids(raw_ids)
            records = list(self.get_queryset().filter(pk__in=ids))
            unknown = sorted(set(ids) - {r.pk for r in records})
            if unknown:
                raise ValidationError(
                    {"ids": [f"Unknown record ids: {', '.join(map(str, unknown[:20]))}."]}, code="unknown_record"
                )
        elif raw_session is not None:
            try:
                sid = uuid.UUID(raw_session)
            except ValueError:
                raise ValidationError({"session": ["Not a session id (UUID)."]}, code="invalid") from None
            records = list(self.get_queryset().filter(session__session_id=sid))
            if not records:
                raise ValidationError({"session": [f"No records for session {sid}."]}, code="unknown_record")
        else:
            raise ValidationError({"ids": ["Give ?ids=1,2,3 or ?session=<session id>."]}, code="required")
        by_status: dict[str, int] = {}
        for record in records:
            by_status[record.status] = by_status.get(record.status, 0) + 1
        summary = {
            "total_instances": len(records),
            "successful_instances": by_status.get(SyncRecordStatusChoices.COMPLETED, 0),
            "failed_instances": by_status.get(SyncRecordStatusChoices.FAILED, 0),
            "pending_instances": by_status.get(SyncRecordStatusChoices.PENDING, 0),
            "running_instances": by_status.get(SyncRecordStatusChoices.RUNNING, 0),
            "cancelled_instances": by_status.get(SyncRecordStatusChoices.CANCELLED, 0),
            "total_accounts": sum(r.items_synced for r in records),
        }
        data = {"summary": summary, "records": serializers.SyncInstanceRecordSerializer(records, many=True).data}
        return Response(data)


class InstanceAccountViewSet(ExportMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = serializers.InstanceAccountSerializer
    filterset_class = filtersets.InstanceAccountFilterSet
    filter_backends = [DjangoFilterBackend, filtersets.AliasOrderingFilter]
    ordering_fields = ["identity", "username", "first_seen_at", "last_seen_at"]
    # last_seen_at is the true last seen (accountsync.selectors.last_seen_expression), so it sorts by that
    ordering_aliases = {"last_seen_at": account_selectors.LAST_SEEN}
    export_kind = "accounts"

    def get_queryset(self) -> QuerySet[InstanceAccount]:
        current = Prefetch(
            "permissions",
            queryset=AccountPermission.objects.filter(valid_to__isnull=True),
            to_attr="current_permissions",
        )
        return account_selectors.with_last_seen(
            InstanceAccount.objects.select_related("instance")
            .prefetch_related(current)
            .order_by("instance__name", "identity", "pk")
        )

    def export_queryset(self) -> QuerySet[InstanceAccount]:
        # the export joins the current snapshot itself (exports.columns): no prefetch, one query;
        # the last seen annotation is here already so that its filters and ordering can use it
        return account_selectors.with_last_seen(InstanceAccount.objects.order_by("instance__name", "identity", "pk"))

    export = export_action("accounts", "accounts")

    @extend_schema(
        summary="Where does an account exist: search every instance by name, prefix or host",
        description="One query over all instances and database types. `q`: `app_rw` (exact name), `app_*` "
        "(prefix), `app_rw@%` (name and MySQL host), `host=%` (every account with that host; `host=10.0.*` "
        "for a host prefix). Each result carries the current snapshot's capabilities and counts.",
        parameters=[serializers.AccountSearchQuerySerializer],
        responses={200: serializers.AccountSearchResultSerializer(many=True)},
        filters=False,
    )
    @action(detail=False, methods=["get"])
    def search(self, request: Request) -> Response:
        params = serializers.AccountSearchQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        try:
            accounts = account_selectors.account_search(
                q=data.get("q", ""), mode=data["mode"], active=data.get("active"), db_type=data.get("db_type")
            )
        except account_selectors.AccountSearchError as exc:
            raise ValidationError({exc.field: [str(exc)]}, code=exc.code) from None
        page = self.paginate_queryset(accounts)
        return self.get_paginated_response(serializers.AccountSearchResultSerializer(page, many=True).data)

    @extend_schema(
        summary="What an account can really do, through its roles, with the path",
        description="Its own grants and those of the roles it holds (transitively), one entry per "
        "(scope, privilege, effect): `via` is [] for a direct grant, else the role path; `active` is false "
        "for what needs SET ROLE first. PUBLIC's grants are left out (they are PUBLIC's). Optional `time`: "
        "as at that moment (the snapshots valid then).",
        parameters=[when_parameter("time", "ISO 8601 date-time; absent: now.", required=False)],
        responses={200: serializers.EffectiveAccessSerializer, 400: OpenApiResponse(serializers.ErrorSerializer)},
        filters=False,
    )
    @action(detail=True, methods=["get"])
    def effective(self, request: Request, pk: str | None = None) -> Response:
        account = get_object_or_404(InstanceAccount.objects.select_related("instance"), pk=pk)
        self.check_object_permissions(request, account)
        raw = request.query_params.get("time")
        at = parse_when("time", raw) if raw else None
        grants = account_effective_access(account=account, at=at)
        body = {
            "account": account.pk,
            "identity": account.identity,
            "instance": account.instance_id,
            "time": at,
            "count": len(grants),
            "grants": [g.as_dict() for g in grants],
        }
        return Response(serializers.EffectiveAccessSerializer(body).data)

    @extend_schema(
        summary="What an account could do at a given time",
        description="The permission snapshot valid at `time`, with its validity interval. 404 "
        "`account_not_seen_yet` before the account was first seen; `existed` is false (no snapshot) "
        "while it was removed.",
        parameters=[when_parameter("time", "ISO 8601 date-time (a bare date means its midnight).")],
        responses={
            200: serializers.AccountAtSerializer,
            400: OpenApiResponse(serializers.ErrorSerializer),
        },
        filters=False,
    )
    @action(detail=True, methods=["get"])
    def at(self, request: Request, pk: str | None = None) -> Response:
        account = get_object_or_404(InstanceAccount.objects.select_related("instance"), pk=pk)
        self.check_object_permissions(request, account)
        at = parse_when("time", request.query_params.get("time"))
        if at < account.first_seen_at:
            raise AccountNotSeenYet(
                f"Account {account.identity} on {account.instance.name} was first seen at "
                f"{account.first_seen_at.isoformat()}, after {at.isoformat()}."
            )
        snapshot = account_selectors.account_permission_at(account=account, at=at)
        body = {
            "account": account.pk,
            "identity": account.identity,
            "instance": account.instance_id,
            "instance_name": account.instance.name,
            "time": at,
            "existed": snapshot is not None,
            "snapshot": snapshot.snapshot if snapshot else None,
            "digest": snapshot.digest if snapshot else None,
            "valid_from": snapshot.valid_from if snapshot else None,
            "valid_to": snapshot.valid_to if snapshot else None,
            **serializers.snapshot_counts(snapshot.snapshot if snapshot else None),
        }
        gaps = gaps_at(instance=account.instance_id, at=at)
        body["effective_access"] = (
            [g.as_dict() for g in account_effective_access(account=account, at=at)] if snapshot else []
        )
        body["coverage_gaps"] = [gap_dict(g) for g in gaps]
        body["last_known"] = last_known_privileges(LastKnownMarker(gaps), snapshot.snapshot if snapshot else None)
        return Response(serializers.AccountAtSerializer(body).data)


class AccountChangeLogViewSet(ExportMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = serializers.AccountChangeLogSerializer
    filterset_class = filtersets.AccountChangeLogFilterSet
    ordering_fields = ["detected_at"]
    queryset = AccountChangeLog.objects.select_related("instance", "account").order_by("-detected_at", "-id")
    export_kind = "change_logs"
    export = export_action("change_logs", "change logs")


@extend_schema_view(list=extend_schema(summary="List risk findings (open and resolved), newest first"))
class FindingViewSet(ExportMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = serializers.FindingSerializer
    filterset_class = filtersets.FindingFilterSet
    ordering_fields = ["first_seen_at", "resolved_at", "severity"]
    queryset = Finding.objects.select_related("instance", "account").order_by("-first_seen_at", "-id")
    export_kind = "findings"
    export = export_action("findings", "risk findings")


class AccountPermissionViewSet(ExportMixin, viewsets.GenericViewSet):
    """Only ``permissions/export/``: current snapshots, one row per privilege, role and capability."""

    queryset = AccountPermission.objects.filter(valid_to__isnull=True).order_by("instance_id", "account_id")
    serializer_class = serializers.PermissionSnapshotSerializer  # for the schema generator; export renders rows
    filterset_class = filtersets.AccountPermissionFilterSet
    ordering_fields = ["valid_from"]
    export_kind = "permissions"
    export = export_action("permissions", "current permissions")


class EffectiveAccessViewSet(ExportMixin, viewsets.GenericViewSet):
    """Only ``effective-access/export/``: what every current account can really do, through its roles."""

    queryset = AccountPermission.objects.filter(valid_to__isnull=True).order_by("instance_id", "account_id")
    serializer_class = serializers.EffectiveGrantSerializer  # for the schema generator; export renders rows
    filterset_class = filtersets.AccountPermissionFilterSet
    export_kind = "effective_access"
    export = export_action("effective_access", "effective access (through roles, with the path)")


def _audit_export_schema(what: str) -> Any:
    """The OpenAPI description of an audit trail's ``export/`` action (audit events, model history)."""
    return extend_schema(
        summary=f"Export {what} (CSV, JSON or NDJSON), streamed",
        description="Takes the same filters as the list. The export is itself an audit event. See docs/audit.md.",
        parameters=[FORMAT_PARAMETER],
        responses={
            (200, "text/csv"): OpenApiResponse(description="CSV, a JSON array or NDJSON."),
            (400, "application/json"): OpenApiResponse(serializers.ErrorSerializer),
        },
        filters=True,
    )


class AuditEventSerializer(drf_serializers.ModelSerializer):
    """One audit event; ``actor`` is the user's id (null once the user is deleted), ``actor_username`` a copy."""

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "at",
            "kind",
            "actor",
            "actor_username",
            "via",
            "remote_addr",
            "object_type",
            "object_id",
            "object_repr",
            "details",
        ]
        read_only_fields = fields


class AuditEventFilterSet(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=AuditKind.choices)
    via = django_filters.ChoiceFilter(choices=AuditVia.choices)
    actor = TextFilter(field_name="actor_username", help_text="Username (as recorded; a failed login's tried name).")
    actor_id = django_filters.NumberFilter(field_name="actor_id", min_value=0, max_value=MAX_ID, help_text="User id.")
    object_type = TextFilter(help_text="Model label, e.g. sync.syncsession.")
    object_id = TextFilter(help_text="The object's id (a session's UUID).")
    since = UtcDateTimeFilter(field_name="at", lookup_expr="gte", help_text="ISO 8601 date-time, inclusive.")
    until = UtcDateTimeFilter(field_name="at", lookup_expr="lt", help_text="ISO 8601 date-time, exclusive.")

    class Meta:
        model = AuditEvent
        fields = ["kind", "via", "actor", "actor_id", "object_type", "object_id", "since", "until"]


@extend_schema_view(
    list=extend_schema(summary="List audit events: syncs started, cancelled, retried; exports; sign-ins"),
    retrieve=extend_schema(summary="One audit event"),
)
class AuditEventViewSet(ExportMixin, viewsets.ReadOnlyModelViewSet):
    queryset = AuditEvent.objects.order_by("-at", "-id")
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilterSet
    ordering_fields = ["at"]

    @_audit_export_schema("audit events")
    @action(detail=False, methods=["get"], url_path="export", pagination_class=None)
    def export(self, request: Request) -> HttpResponse:
        return _audit_export(self, request, EVENT_COLUMNS, "audit_events")


class ModelHistorySerializer(drf_serializers.ModelSerializer):
    """One change of a tracked object (django-auditlog); secret fields show their name with ``[hidden]`` values."""

    action = drf_serializers.CharField(source="get_action_display", read_only=True)
    model = drf_serializers.SerializerMethodField()
    actor_username = drf_serializers.SerializerMethodField()
    changes = drf_serializers.SerializerMethodField()

    class Meta:
        model = LogEntry
        fields = [
            "id",
            "timestamp",
            "action",
            "model",
            "object_pk",
            "object_repr",
            "actor",
            "actor_username",
            "remote_addr",
            "changes",
        ]
        read_only_fields = fields

    def get_model(self, entry: LogEntry) -> str:
        return f"{entry.content_type.app_label}.{entry.content_type.model}"

    def get_actor_username(self, entry: LogEntry) -> str | None:
        return entry.actor.get_username() if entry.actor_id else None

    # {"field": [old, new]} for a field; {"type": "m2m", "operation": "add", "objects": [...]} for a relation
    @extend_schema_field({"type": "object", "additionalProperties": {}})
    def get_changes(self, entry: LogEntry) -> dict[str, Any]:
        return entry.changes_dict


class ModelHistoryFilterSet(django_filters.FilterSet):
    model = TextFilter(method="filter_model", help_text="Model label, e.g. instances.credential.")
    object_pk = TextFilter(help_text="The object's id.")
    action = django_filters.ChoiceFilter(
        method="filter_action", choices=[("create", "create"), ("update", "update"), ("delete", "delete")]
    )
    actor_id = django_filters.NumberFilter(field_name="actor_id", min_value=0, max_value=MAX_ID, help_text="User id.")
    since = UtcDateTimeFilter(field_name="timestamp", lookup_expr="gte", help_text="ISO 8601 date-time, inclusive.")
    until = UtcDateTimeFilter(field_name="timestamp", lookup_expr="lt", help_text="ISO 8601 date-time, exclusive.")

    class Meta:
        model = LogEntry
        fields = ["model", "object_pk", "action", "actor_id", "since", "until"]

    def filter_model(self, queryset: QuerySet[LogEntry], name: str, value: str) -> QuerySet[LogEntry]:
        app_label, _dot, model = value.lower().partition(".")
        return queryset.filter(content_type__app_label=app_label, content_type__model=model)

    def filter_action(self, queryset: QuerySet[LogEntry], name: str, value: str) -> QuerySet[LogEntry]:
        actions = {"create": LogEntry.Action.CREATE, "update": LogEntry.Action.UPDATE, "delete": LogEntry.Action.DELETE}
        return queryset.filter(action=actions[value])


@extend_schema_view(
    list=extend_schema(summary="List model history: who created, changed or deleted credentials, instances, ..."),
    retrieve=extend_schema(summary="One model history entry"),
)
class ModelHistoryViewSet(ExportMixin, viewsets.ReadOnlyModelViewSet):
    """django-auditlog's entries, newest first; the same permission as the admin's "Log entries" (admins)."""

    queryset = LogEntry.objects.select_related("content_type", "actor").order_by("-timestamp", "-id")
    serializer_class = ModelHistorySerializer
    filterset_class = ModelHistoryFilterSet
    ordering_fields = ["timestamp"]

    @_audit_export_schema("model history")
    @action(detail=False, methods=["get"], url_path="export", pagination_class=None)
    def export(self, request: Request) -> HttpResponse:
        return _audit_export(self, request, HISTORY_COLUMNS, "model_history")


def _audit_export(view: Any, request: Request, columns: list[Any], kind: str) -> HttpResponse:
    fmt = reject_nul("format", request.query_params.get("format") or "csv").lower()
    if fmt not in FORMATS:
        raise ValidationError(
            {"format": [f"Unknown export format {fmt[:20]!r}; use one of: {', '.join(FORMATS)}."]},
            code="invalid_format",
        )
    return stream_rows(
        view.filter_queryset(view.get_queryset()),
        columns,
        kind=kind,
        fmt=fmt,
        actor=request.user,
        via=AuditVia.API,
        request=request._request,
        filters=query_filters(request.query_params, drop=("format",)),
    )


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's 404 handler: JSON in the API's error shape under /api/, the usual page elsewhere.

    Why: a URL no route matches (``/api/v1/instances/0.5/``) never reaches DRF,
    yet API clients must always get JSON with a ``code``.
    """
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    return page_not_found(request, exception)

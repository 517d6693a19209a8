"""Serializers: what each endpoint reads and writes.

Credential passwords are write-only: the serializer hands them to
``Credential.set_password`` and never reads them back (only ``has_password``).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail

from accountsync.coverage import EpisodeCache, last_known_privileges
from accountsync.models import AccountChangeLog, InstanceAccount
from accountsync.selectors import account_last_seen
from findings.models import Finding
from instances.crypto import CredentialDecryptError
from instances.models import DEFAULT_PORTS, Credential, DbType, Instance, Tag
from instances.policy import instance_connection_refusals
from instances.tls import client_key_error
from sync.models import SyncInstanceRecord, SyncSession, SyncTypeChoices

MAX_IDS = 1000
SESSION_START_TYPES = (SyncTypeChoices.MANUAL_BATCH, SyncTypeChoices.MANUAL_TASK)
SESSION_START_TYPE_CHOICES = [(t.value, t.label) for t in SESSION_START_TYPES]


class ErrorSerializer(serializers.Serializer):
    """Every error body: DRF's ``detail`` or field messages, and a stable ``code``."""

    code = serializers.CharField(help_text="Stable machine code, e.g. not_found, invalid, sync_already_running.")
    detail = serializers.CharField(required=False, help_text="Human message (field errors use the field name).")


class CredentialSerializer(serializers.ModelSerializer):
    password = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=1024,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text="Write-only. Omit on update to keep the stored password; an empty string stores none.",
    )
    has_password = serializers.BooleanField(read_only=True)
    tls_client_key = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=20_000,
        trim_whitespace=True,
        help_text="Write-only PEM private key of tls_client_cert. Omit to keep it; an empty string removes it.",
    )
    has_tls_client_key = serializers.BooleanField(read_only=True)
    allowed_db_types = serializers.ListField(
        child=serializers.ChoiceField(choices=DbType.choices),
        required=False,
        max_length=len(DbType.choices),
        help_text="Database types it may be used with; empty: any.",
    )

    class Meta:
        model = Credential
        fields = [
            "id",
            "name",
            "username",
            "password",
            "has_password",
            "allowed_db_types",
            "allowed_hosts",
            "allowed_ports",
            "allow_weak_auth",
            "tls_client_cert",
            "tls_client_key",
            "has_tls_client_key",
            "description",
            "created_at",
            "updated_at",
        ]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The binding's own checks (ports, database types) and the client certificate, on the merged values."""
        probe = Credential(
            allowed_db_types=attrs.get("allowed_db_types", getattr(self.instance, "allowed_db_types", [])),
            allowed_ports=attrs.get("allowed_ports", getattr(self.instance, "allowed_ports", "")),
            tls_client_cert=attrs.get("tls_client_cert", getattr(self.instance, "tls_client_cert", "")),
        )
        try:
            probe.clean()
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from exc
        key = attrs.get("tls_client_key")
        if key is None and self.instance is not None and self.instance.has_tls_client_key:
            try:
                key = self.instance.get_tls_client_key()
            except CredentialDecryptError:
                key = ""
        if error := client_key_error(probe.tls_client_cert.strip(), (key or "").strip()):
            raise serializers.ValidationError({"tls_client_key": [error]})
        return attrs

    @staticmethod
    def _store_password(credential: Credential, raw: str) -> None:
        """An empty password stores none (``has_password`` false), as the admin's "Clear password" does."""
        if raw:
            credential.set_password(raw)
        else:
            credential.password_encrypted = ""

    def create(self, validated_data: dict[str, Any]) -> Credential:
        password = validated_data.pop("password", "")
        client_key = validated_data.pop("tls_client_key", "")
        credential = Credential(**validated_data)
        self._store_password(credential, password)
        credential.set_tls_client_key(client_key)
        credential.save()
        return credential

    def update(self, instance: Credential, validated_data: dict[str, Any]) -> Credential:
        password = validated_data.pop("password", None)
        client_key = validated_data.pop("tls_client_key", None)
        for key, value in validated_data.items():
            setattr(instance, key, value)
        if password is not None:
            self._store_password(instance, password)
        if client_key is not None:
            instance.set_tls_client_key(client_key)
        instance.save()
        return instance


class InstanceSerializer(serializers.ModelSerializer):
    credential = serializers.PrimaryKeyRelatedField(
        queryset=Credential.objects.all(), help_text="Id of a credential (see /api/v1/credentials/)."
    )
    credential_name = serializers.CharField(source="credential.name", read_only=True)
    tags = serializers.SlugRelatedField(
        many=True, slug_field="name", queryset=Tag.objects.all(), required=False, help_text="Tag names."
    )
    port = serializers.IntegerField(
        min_value=1, max_value=65535, required=False, help_text="Defaults to the database type's usual port."
    )
    options = serializers.DictField(required=False, help_text='Per-instance settings, e.g. {"connect_timeout": 5}.')

    class Meta:
        model = Instance
        fields = [
            "id",
            "name",
            "db_type",
            "host",
            "port",
            "database_name",
            "credential",
            "credential_name",
            "environment",
            "tags",
            "is_active",
            "description",
            "options",
            "version",
            "last_sync_at",
            "last_sync_status",
            "sync_count",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["version", "last_sync_at", "last_sync_status", "sync_count"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Default the port, then run the model's own checks (options) on the merged values."""
        current = self.instance
        db_type = attrs.get("db_type", current.db_type if current else None)
        if "port" not in attrs and current is None:
            attrs["port"] = DEFAULT_PORTS[db_type]
        probe = Instance(db_type=db_type or "", options=attrs.get("options", current.options if current else {}))
        try:
            probe.clean()
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from exc
        request = self.context.get("request")
        refusals = instance_connection_refusals(
            getattr(request, "user", None),
            before=current,
            db_type=db_type,
            host=attrs.get("host", current.host if current else None),
            port=attrs.get("port", current.port if current else None),
            credential=attrs.get("credential", current.credential if current else None),
            options=attrs.get("options", current.options if current else {}),
        )
        if refusals:
            raise serializers.ValidationError(
                {field: [ErrorDetail(message, code="connection_not_allowed")] for field, message in refusals.items()}
            )
        return attrs


class SyncResultSerializer(serializers.Serializer):
    """The seed's result dict for one instance's sync."""

    success = serializers.BooleanField()
    message = serializers.CharField()
    synced_count = serializers.IntegerField()
    added_count = serializers.IntegerField()
    modified_count = serializers.IntegerField()
    removed_count = serializers.IntegerField()
    details = serializers.DictField()
    error_kind = serializers.CharField(allow_null=True)


class InstanceSyncRequestSerializer(serializers.Serializer):
    force = serializers.BooleanField(
        default=False, help_text="Override the mass-removal guard (WHALEFALL_MAX_REMOVAL_RATIO)."
    )


class InstanceSyncResponseSerializer(serializers.Serializer):
    message = serializers.CharField()
    result = SyncResultSerializer()


class ConnectionTestSerializer(serializers.Serializer):
    instance_id = serializers.IntegerField()
    instance_name = serializers.CharField()
    ok = serializers.BooleanField()
    version = serializers.CharField(allow_blank=True)
    error_kind = serializers.CharField(allow_null=True)
    message = serializers.CharField(allow_blank=True)
    duration_ms = serializers.IntegerField()


class SyncInstanceRecordSerializer(serializers.ModelSerializer):
    session_id = serializers.UUIDField(source="session.session_id", read_only=True)
    duration_seconds = serializers.SerializerMethodField()
    completed_with_gaps = serializers.BooleanField(
        source="with_gaps",
        read_only=True,
        help_text="Completed, but part of the instance could not be read: details.coverage.gaps lists it with the fix.",
    )
    server_facts = serializers.SerializerMethodField(
        help_text="Where the server-wide facts the details only count are: GET /api/v1/server-facts/{id}/ "
        "(null: none, or an old record whose details still hold them inline)."
    )

    class Meta:
        model = SyncInstanceRecord
        fields = [
            "id",
            "session_id",
            "instance",
            "instance_name",
            "status",
            "started_at",
            "completed_at",
            "duration_seconds",
            "items_synced",
            "items_created",
            "items_updated",
            "items_deleted",
            "error_kind",
            "error_message",
            "error_code",
            "error_params",
            "coverage_gaps",
            "completed_with_gaps",
            "attempt",
            "details",
            "server_facts",
        ]

    @extend_schema_field(
        {"type": "object", "nullable": True, "properties": {"id": {"type": "integer"}, "digest": {"type": "string"}}}
    )
    def get_server_facts(self, obj: SyncInstanceRecord) -> dict[str, Any] | None:
        ref = (obj.details or {}).get("server_facts")
        if not isinstance(ref, dict) or ref.get("id") is None:
            return None
        return {"id": ref["id"], "digest": ref.get("digest", "")}

    def get_duration_seconds(self, obj: SyncInstanceRecord) -> float | None:
        if obj.started_at is None or obj.completed_at is None:
            return None
        return round((obj.completed_at - obj.started_at).total_seconds(), 3)


class RecordCountsSerializer(serializers.Serializer):
    """Counts derived from the records themselves, so they are right while a session runs."""

    total_instances = serializers.IntegerField()
    successful_instances = serializers.IntegerField()
    failed_instances = serializers.IntegerField()
    pending_instances = serializers.IntegerField()
    running_instances = serializers.IntegerField()
    cancelled_instances = serializers.IntegerField()
    total_accounts = serializers.IntegerField()


class SyncSessionSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True, default=None)
    retry_of = serializers.UUIDField(source="retry_of.session_id", read_only=True, allow_null=True, default=None)
    progress = serializers.SerializerMethodField()
    completed_with_gaps = serializers.BooleanField(
        source="with_gaps", read_only=True, help_text="Completed, and at least one instance with coverage gaps."
    )

    class Meta:
        model = SyncSession
        fields = [
            "id",
            "session_id",
            "sync_type",
            "sync_category",
            "status",
            "completed_with_gaps",
            "gapped_instances",
            "started_at",
            "completed_at",
            "progress",
            "created_by",
            "retry_of",
        ]

    @extend_schema_field(RecordCountsSerializer)
    def get_progress(self, obj: SyncSession) -> dict[str, int]:
        """From the annotations of api.views.session_queryset (no query per row)."""
        return {
            "total_instances": obj.n_total,
            "successful_instances": obj.n_ok,
            "failed_instances": obj.n_failed,
            "pending_instances": obj.n_pending,
            "running_instances": obj.n_running,
            "cancelled_instances": obj.n_cancelled,
            "total_accounts": obj.n_accounts or 0,
        }


class SyncSessionDetailSerializer(SyncSessionSerializer):
    records = SyncInstanceRecordSerializer(many=True, read_only=True)

    class Meta(SyncSessionSerializer.Meta):
        fields = [*SyncSessionSerializer.Meta.fields, "records"]


class SyncTypeField(serializers.ChoiceField):
    """A choice field whose error carries the stable code ``invalid_sync_type``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=SESSION_START_TYPE_CHOICES, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str) or data not in self.choices:
            raise serializers.ValidationError(
                f"{data!r} is not a sync type a session can be started with; "
                f"use one of: {', '.join(t.value for t in SESSION_START_TYPES)}.",
                code="invalid_sync_type",
            )
        return data


class SyncSessionCreateSerializer(serializers.Serializer):
    """Either ``instance_ids`` or ``all: true``; checks everything before anything starts."""

    instance_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        required=False,
        max_length=MAX_IDS,
        help_text=f"Instances to sync (1 to {MAX_IDS} ids, active instances only).",
    )
    all = serializers.BooleanField(required=False, default=False, help_text="Sync every active instance.")
    sync_type = SyncTypeField(required=False, default=SyncTypeChoices.MANUAL_BATCH)
    force = serializers.BooleanField(required=False, default=False, help_text="Override the mass-removal guard.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        ids = attrs.get("instance_ids")
        if attrs["all"] and ids is not None:
            raise serializers.ValidationError(
                {"instance_ids": ["Give either instance_ids or all=true, not both."]}, code="invalid"
            )
        if attrs["all"]:
            instances = list(Instance.objects.filter(is_active=True).order_by("name"))
            if not instances:
                raise serializers.ValidationError(
                    {"all": ["There is no active instance to sync; nothing was started."]}, code="no_active_instance"
                )
        elif ids is None:
            raise serializers.ValidationError(
                {"instance_ids": ["Give instance_ids (a list of instance ids) or all=true."]}, code="required"
            )
        elif not ids:
            raise serializers.ValidationError(
                {"instance_ids": ["The list is empty: give at least one instance id."]}, code="empty"
            )
        else:
            wanted = list(dict.fromkeys(ids))
            found = {i.pk: i for i in Instance.objects.filter(pk__in=wanted)}
            unknown = [i for i in wanted if i not in found]
            if unknown:
                raise serializers.ValidationError(
                    {"instance_ids": [f"Unknown instance ids: {', '.join(map(str, unknown))}."]},
                    code="unknown_instance",
                )
            inactive = [found[i].name for i in wanted if not found[i].is_active]
            if inactive:
                raise serializers.ValidationError(
                    {"instance_ids": [f"Inactive instances: {', '.join(inactive)}; activate them or leave them out."]},
                    code="instance_inactive",
                )
            instances = [found[i] for i in wanted]
        attrs["instances"] = instances
        return attrs


class BatchSummarySerializer(RecordCountsSerializer):
    pass


class BatchDetailsSerializer(serializers.Serializer):
    """The seed's batch-details modal as JSON: a summary block and one row per record."""

    summary = BatchSummarySerializer()
    records = SyncInstanceRecordSerializer(many=True)


class PermissionSnapshotSerializer(serializers.Serializer):
    snapshot = serializers.JSONField()
    digest = serializers.CharField()
    collected_at = serializers.DateTimeField()
    valid_from = serializers.DateTimeField()


class LastSeenField(serializers.DateTimeField):
    """An account's true last seen (accountsync.selectors.last_seen_expression), not the row's write time."""

    def get_attribute(self, instance: InstanceAccount) -> Any:
        return account_last_seen(instance)  # the ``last_seen`` annotation of api.views: no query per row


class InstanceAccountSerializer(serializers.ModelSerializer):
    instance_name = serializers.CharField(source="instance.name", read_only=True)
    db_type = serializers.CharField(source="instance.db_type", read_only=True)
    last_seen_at = LastSeenField(
        read_only=True,
        help_text="When the last successful sync that saw the account ran: for an active account its "
        "instance's last successful sync, for a removed one the last successful sync that still listed it.",
    )
    permissions = serializers.SerializerMethodField(help_text="The current permission snapshot; null once removed.")

    class Meta:
        model = InstanceAccount
        fields = [
            "id",
            "instance",
            "instance_name",
            "db_type",
            "identity",
            "username",
            "host",
            "kind",
            "is_active",
            "is_superuser",
            "is_locked",
            "attributes",
            "first_seen_at",
            "last_seen_at",
            "deactivated_at",
            "permissions",
        ]

    @extend_schema_field(PermissionSnapshotSerializer(allow_null=True))
    def get_permissions(self, obj: InstanceAccount) -> dict[str, Any] | None:
        """From the ``current_permissions`` prefetch of api.views (no query per row)."""
        current = getattr(obj, "current_permissions", None)
        if not current:
            return None
        data = dict(PermissionSnapshotSerializer(current[0]).data)
        # grants in a scope the last sync could not read: last known, not current fact (one query per request)
        cache = self.context.setdefault("coverage_episodes", EpisodeCache())
        data["last_known"] = last_known_privileges(cache.marker(obj.instance_id, None), current[0].snapshot)
        return data


class AccountChangeLogSerializer(serializers.ModelSerializer):
    instance_name = serializers.CharField(source="instance.name", read_only=True)
    account_identity = serializers.CharField(source="account.identity", read_only=True)

    class Meta:
        model = AccountChangeLog
        fields = [
            "id",
            "instance",
            "instance_name",
            "account",
            "account_identity",
            "session_id",
            "change_type",
            "summary",
            "diff",
            "detected_at",
        ]


# --- issue 10: findings, exports, account search, point in time -------------------------


class FindingSerializer(serializers.ModelSerializer):
    instance_name = serializers.CharField(source="instance.name", read_only=True)
    db_type = serializers.CharField(source="instance.db_type", read_only=True)
    account_identity = serializers.CharField(source="account.identity", read_only=True)

    class Meta:
        model = Finding
        fields = [
            "id",
            "instance",
            "instance_name",
            "db_type",
            "account",
            "account_identity",
            "rule_code",
            "severity",
            "is_open",
            "detail",
            "first_seen_at",
            "resolved_at",
            "session_id",
            "resolved_session_id",
        ]


def snapshot_counts(snapshot: dict[str, Any] | None) -> dict[str, Any]:
    snapshot = snapshot or {}
    return {
        "capabilities": sorted(snapshot.get("capabilities") or []),
        "privilege_count": len(snapshot.get("privileges") or []),
        "role_count": len(snapshot.get("roles") or []),
    }


class AccountSearchResultSerializer(serializers.ModelSerializer):
    """One place an account exists: where, what it is, and what its current snapshot grants in short."""

    instance_name = serializers.CharField(source="instance.name", read_only=True)
    db_type = serializers.CharField(source="instance.db_type", read_only=True)
    environment = serializers.CharField(source="instance.environment", read_only=True)
    capabilities = serializers.SerializerMethodField()
    privilege_count = serializers.SerializerMethodField()
    role_count = serializers.SerializerMethodField()

    class Meta:
        model = InstanceAccount
        fields = [
            "id",
            "instance",
            "instance_name",
            "db_type",
            "environment",
            "identity",
            "username",
            "host",
            "kind",
            "is_active",
            "is_superuser",
            "is_locked",
            "capabilities",
            "privilege_count",
            "role_count",
        ]

    def _counts(self, obj: InstanceAccount) -> dict[str, Any]:
        """From the ``current_snapshot`` annotation of accountsync.selectors.account_search (no query per row)."""
        return snapshot_counts(getattr(obj, "current_snapshot", None))

    def get_capabilities(self, obj: InstanceAccount) -> list[str]:
        return self._counts(obj)["capabilities"]

    def get_privilege_count(self, obj: InstanceAccount) -> int:
        return self._counts(obj)["privilege_count"]

    def get_role_count(self, obj: InstanceAccount) -> int:
        return self._counts(obj)["role_count"]


class AccountAtSerializer(serializers.Serializer):
    """What an account could do at a moment: the snapshot valid then and its validity interval."""

    account = serializers.IntegerField()
    identity = serializers.CharField()
    instance = serializers.IntegerField()
    instance_name = serializers.CharField()
    time = serializers.DateTimeField()
    existed = serializers.BooleanField(help_text="False when the account had been removed by then (no snapshot).")
    snapshot = serializers.JSONField(allow_null=True)
    digest = serializers.CharField(allow_null=True)
    valid_from = serializers.DateTimeField(allow_null=True)
    valid_to = serializers.DateTimeField(allow_null=True, help_text="Null: still the current snapshot.")
    capabilities = serializers.ListField(child=serializers.CharField())
    privilege_count = serializers.IntegerField()
    role_count = serializers.IntegerField()
    effective_access = serializers.ListField(
        child=serializers.DictField(),
        help_text="What it could really do then, through its roles (see the effective endpoint).",
    )
    coverage_gaps = serializers.ListField(
        child=serializers.DictField(),
        help_text="Scopes of the instance its syncs could not read (or left out) at that moment.",
    )
    last_known = serializers.ListField(
        child=serializers.DictField(),
        help_text="Privileges in an unreadable scope: the last known ones, with when the scope was last read.",
    )


class EffectiveGrantSerializer(serializers.Serializer):
    scope = serializers.CharField()
    privilege = serializers.CharField()
    grantable = serializers.BooleanField()
    effect = serializers.CharField()
    via = serializers.ListField(child=serializers.CharField(), help_text="[]: a direct grant; else the role path.")
    active = serializers.BooleanField(help_text="False: reachable only after SET ROLE (or a non-default role).")


class EffectiveAccessSerializer(serializers.Serializer):
    account = serializers.IntegerField()
    identity = serializers.CharField()
    instance = serializers.IntegerField()
    time = serializers.DateTimeField(allow_null=True, help_text="Null: now.")
    count = serializers.IntegerField()
    grants = EffectiveGrantSerializer(many=True)


class AccountSearchQuerySerializer(serializers.Serializer):
    """Query parameters of ``GET /api/v1/accounts/search/``."""

    q = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=255,
        trim_whitespace=True,
        help_text="app_rw (exact), app_* (prefix), app_rw@% (name and MySQL host), host=% or host=10.0.* (host).",
    )
    mode = serializers.ChoiceField(
        choices=["auto", "exact", "prefix", "host"],
        required=False,
        default="auto",
        help_text="auto reads q's syntax; exact/prefix take q as a name only; host takes q as a host.",
    )
    active = serializers.BooleanField(required=False, allow_null=True, default=None, help_text="Active accounts only.")
    db_type = serializers.ChoiceField(choices=[c[0] for c in DbType.choices], required=False)

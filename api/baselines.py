"""/api/v1/baselines/: approved baselines with their versions and entries, and POST to approve (docs/baselines.md).

Reading needs ``baselines.view_baseline`` (every role); approving needs ``baselines.approve_baseline``
(WhaleFall admins). Drift itself is read through ``/api/v1/findings/?rule_code=DRIFT``.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from accountsync.models import InstanceAccount
from baselines.models import APPROVE_PERMISSION, Baseline, BaselineKind, BaselineVersion
from baselines.selectors import baseline_list, baseline_versions, version_entries
from baselines.services import MAX_COMMENT, BaselineError, baseline_approve
from classification.models import Classification
from instances.models import Instance

SUBJECT_FIELDS = {
    BaselineKind.ACCOUNT: ("account", InstanceAccount),
    BaselineKind.INSTANCE: ("instance", Instance),
    BaselineKind.CLASSIFICATION: ("classification", Classification),
}


@extend_schema_field(
    {
        "type": "string",
        "pattern": "^(" + "|".join(BaselineKind.values) + ")$",
        "description": "account, instance or classification",
    }
)
class KindField(serializers.ChoiceField):
    """The baseline kind, as a pattern: any enum is named by its field (``kind``) and would collide with the
    accounts' and audit events' ``kind`` enums (ENUM_NAME_OVERRIDES lives in the shared settings)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=BaselineKind.choices, **kwargs)


class BaselinePermissions(permissions.BasePermission):
    """GET needs ``baselines.view_baseline``; POST (approve) needs ``baselines.approve_baseline``."""

    message = "You do not have permission to approve baselines (baselines.approve_baseline)."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if request.method in permissions.SAFE_METHODS:
            return user.has_perm("baselines.view_baseline")
        return user.has_perm(APPROVE_PERMISSION)


class ApprovedGrantSerializer(serializers.Serializer):
    scope = serializers.CharField()
    privilege = serializers.CharField()
    effect = serializers.CharField()
    grantable = serializers.BooleanField()
    via = serializers.ListField(child=serializers.CharField(), help_text="Role path; empty for a direct grant.")


class ApprovedRoleSerializer(serializers.Serializer):
    role = serializers.CharField()
    admin_option = serializers.BooleanField()


class ApprovedAccessSerializer(serializers.Serializer):
    grants = ApprovedGrantSerializer(many=True)
    roles = ApprovedRoleSerializer(many=True)
    capabilities = serializers.ListField(child=serializers.CharField())


def access_dict(access: dict[str, Any]) -> dict[str, Any]:
    """The stored compact lists as named fields."""
    return {
        "grants": [
            {"scope": s, "privilege": p, "effect": e, "grantable": bool(g), "via": list(v)}
            for s, p, e, g, v in access.get("grants") or []
        ],
        "roles": [{"role": r, "admin_option": bool(a)} for r, a in access.get("roles") or []],
        "capabilities": list(access.get("capabilities") or []),
    }


class BaselineEntrySerializer(serializers.Serializer):
    account = serializers.IntegerField(source="account_id")
    identity = serializers.CharField(source="account.identity")
    instance = serializers.IntegerField(source="instance_id")
    instance_name = serializers.CharField(source="instance.name")
    digest = serializers.CharField()
    access = serializers.SerializerMethodField()

    @extend_schema_field(ApprovedAccessSerializer)
    def get_access(self, obj: Any) -> dict[str, Any]:
        return access_dict(obj.access)


class BaselineVersionSerializer(serializers.ModelSerializer):
    approved_by = serializers.CharField(source="approved_by_username")
    gaps = serializers.ListField(
        child=serializers.CharField(), help_text="Scopes unreadable at approval time (approved as last known)."
    )

    class Meta:
        model = BaselineVersion
        fields = ["version", "is_current", "approved_at", "approved_by", "comment", "account_count", "gaps"]


class BaselineSerializer(serializers.ModelSerializer):
    kind = KindField(read_only=True)
    subject = serializers.CharField(source="subject_label")
    versions = BaselineVersionSerializer(many=True, read_only=True, source="all_versions")

    class Meta:
        model = Baseline
        fields = [
            "id",
            "kind",
            "account",
            "instance",
            "classification",
            "subject",
            "version",
            "created_at",
            "updated_at",
            "versions",
        ]


class BaselineDetailSerializer(BaselineSerializer):
    entries_version = serializers.SerializerMethodField(help_text="The version whose entries are listed.")
    entries = serializers.SerializerMethodField()

    class Meta(BaselineSerializer.Meta):
        fields = [*BaselineSerializer.Meta.fields, "entries_version", "entries"]

    def get_entries_version(self, obj: Baseline) -> int:
        return self.context["entries_version"].version

    @extend_schema_field(BaselineEntrySerializer(many=True))
    def get_entries(self, obj: Baseline) -> list[dict[str, Any]]:
        return BaselineEntrySerializer(version_entries(version=self.context["entries_version"]), many=True).data


class BaselineApproveSerializer(serializers.Serializer):
    kind = KindField(help_text="What to baseline: account, instance or classification.")
    account = serializers.IntegerField(required=False, min_value=1, help_text="For kind=account.")
    instance = serializers.IntegerField(required=False, min_value=1, help_text="For kind=instance.")
    classification = serializers.IntegerField(required=False, min_value=1, help_text="For kind=classification.")
    comment = serializers.CharField(max_length=MAX_COMMENT, help_text="Why this access is approved (required).")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        field, model = SUBJECT_FIELDS[attrs["kind"]]
        others = [name for name, _m in SUBJECT_FIELDS.values() if name != field and name in attrs]
        if others:
            raise ValidationError({others[0]: [f"Not allowed with kind={attrs['kind']}."]})
        if field not in attrs:
            raise ValidationError({field: [f"Required with kind={attrs['kind']}."]})
        subject = model.objects.filter(pk=attrs[field]).first()
        if subject is None:
            raise ValidationError({field: [f"No {field} with id {attrs[field]}."]})
        attrs["subject"] = subject
        return attrs


VERSION_PARAMETER = OpenApiParameter(
    "version", OpenApiTypes.INT, description="List the entries of this version (default: the current one)."
)


class BaselineViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Baselines, newest approval first; POST approves the current access of an account, instance or classification."""

    permission_classes = [BaselinePermissions]
    serializer_class = BaselineSerializer
    filterset_fields = ["kind", "account", "instance", "classification"]
    ordering_fields = ["updated_at", "created_at"]

    def get_queryset(self) -> Any:
        return baseline_list().prefetch_related(
            Prefetch("versions", queryset=BaselineVersion.objects.order_by("-version"), to_attr="all_versions")
        )

    @extend_schema(parameters=[VERSION_PARAMETER], responses={200: BaselineDetailSerializer})
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        baseline = self.get_object()
        raw = request.query_params.get("version")
        versions = baseline_versions(baseline=baseline)
        if raw is None:
            chosen = versions.filter(is_current=True).first()
        else:
            try:
                number = int(raw)
            except ValueError:
                raise ValidationError({"version": ["A whole number."]}) from None
            chosen = versions.filter(version=number).first()
            if chosen is None:
                raise NotFound(f"Baseline {baseline.pk} has no version {number}.")
        if chosen is None:  # a baseline always has a version; guard against a half-written row
            raise NotFound(f"Baseline {baseline.pk} has no version.")
        return Response(BaselineDetailSerializer(baseline, context={"entries_version": chosen}).data)

    @extend_schema(request=BaselineApproveSerializer, responses={201: BaselineDetailSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        params = BaselineApproveSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        try:
            version = baseline_approve(
                kind=params.validated_data["kind"],
                subject=params.validated_data["subject"],
                comment=params.validated_data["comment"],
                user=request.user,
            )
        except BaselineError as exc:
            raise ValidationError(str(exc)) from None
        baseline = self.get_queryset().get(pk=version.baseline_id)
        body = BaselineDetailSerializer(baseline, context={"entries_version": version}).data
        return Response(body, status=status.HTTP_201_CREATED)

"""/api/v1/classifications/, classification-rules/, classification-assignments/ (docs/classification.md).

Reading needs the models' view permissions (every role). Creating or editing a classification or
a rule needs its add/change permission (WhaleFall admins); a rule is validated by the rule
language and answered 400 with the path to the bad part. Manual assign/unassign needs
``classification.add_manualassignment``, withdrawing a decision ``delete_manualassignment``.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet, Sum
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from accountsync.models import InstanceAccount
from classification.models import (
    FAMILY_CHOICES,
    AssignmentSource,
    Classification,
    ClassificationAssignment,
    ClassificationRule,
    ClassificationRuleVersion,
    ManualAction,
    ManualAssignment,
)
from classification.rules import RuleError, rule_errors
from classification.selectors import rule_versions
from classification.services import (
    ClassificationBrokerError,
    evaluation_enqueue,
    manual_assign,
    manual_clear,
    rule_preview,
    rule_save,
)

MAX_REASON = 2000


class EvaluationNotQueued(APIException):
    """The rule was saved (new version) but the broker refused the re-evaluation task (503)."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = (
        "The rule was saved, but the task broker is unreachable: the re-evaluation could not be queued. "
        "Check that the broker is running (Q_BROKER_URL); the next sync of each instance, or saving the rule "
        "again, re-evaluates."
    )
    default_code = "broker_unavailable"


class InvalidRule(APIException):
    """A rule that the rule language refuses (400 ``invalid_rule``), the bad part named by its path."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The rule is not valid."
    default_code = "invalid_rule"


def _rule_expression(value: Any) -> Any:
    """Why an APIException and not a ValidationError: its own stable code, `invalid_rule`, not `invalid`."""
    errors = rule_errors(value)
    if errors:
        raise InvalidRule({"expression": errors})
    return value


class ClassificationSerializer(serializers.ModelSerializer):
    account_count = serializers.SerializerMethodField(help_text="Active accounts in it now.")

    class Meta:
        model = Classification
        fields = ["id", "code", "name", "description", "risk_level", "color", "account_count", "created_at",
                  "updated_at"]  # fmt: skip
        read_only_fields = ["created_at", "updated_at"]

    @extend_schema_field(OpenApiTypes.INT)
    def get_account_count(self, obj: Classification) -> int:
        found = getattr(obj, "account_count", None)  # annotated on lists; a fresh row has none yet
        if found is None and not hasattr(obj, "account_count"):
            found = obj.instance_states.aggregate(n=Sum("count"))["n"]
        return int(found or 0)


class RuleVersionSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", default=None, read_only=True, allow_null=True)
    expression = serializers.JSONField()

    class Meta:
        model = ClassificationRuleVersion
        fields = ["version", "name", "db_type", "is_enabled", "expression", "comment", "created_at", "created_by"]


class RuleSerializer(serializers.ModelSerializer):
    expression = serializers.JSONField(help_text="The rule, in the JSON rule language (docs/classification.md).")
    classification = serializers.SlugRelatedField(slug_field="code", queryset=Classification.objects.all())
    db_type = serializers.ChoiceField(choices=FAMILY_CHOICES, required=False, allow_blank=True, default="")
    comment = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=MAX_REASON, help_text="Why this change."
    )
    updated_by = serializers.SerializerMethodField(help_text="Who saved the current version (null: a migration).")

    class Meta:
        model = ClassificationRule
        fields = ["id", "classification", "name", "db_type", "is_enabled", "expression", "version", "updated_at",
                  "updated_by", "comment"]  # fmt: skip
        read_only_fields = ["version", "updated_at"]

    def validate_expression(self, value: Any) -> Any:
        return _rule_expression(value)

    @extend_schema_field({"type": "string", "nullable": True})
    def get_updated_by(self, obj: ClassificationRule) -> str | None:
        # a method field: a dotted source would be left out of a PATCH answer (DRF skips defaults when partial)
        return obj.updated_by.username if obj.updated_by_id else None

    def save(self, **kwargs: Any) -> ClassificationRule:
        data = {**self.validated_data, **kwargs}
        comment = data.pop("comment", "")
        user = data.pop("user", None)
        rule = self.instance or ClassificationRule()
        for name, value in data.items():
            setattr(rule, name, value)
        self.instance = rule_save(rule=rule, user=user, comment=comment)
        return self.instance


class PreviewRequestSerializer(serializers.Serializer):
    expression = serializers.JSONField()
    db_type = serializers.ChoiceField(choices=FAMILY_CHOICES, required=False, allow_blank=True, default="")

    def validate_expression(self, value: Any) -> Any:
        return _rule_expression(value)


class PreviewAccountSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    identity = serializers.CharField()
    instance_id = serializers.IntegerField()
    instance = serializers.CharField()
    kind = serializers.CharField()


class PreviewSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="How many active accounts would match.")
    accounts = PreviewAccountSerializer(many=True, help_text="The first 50 of them.")


class AssignmentSerializer(serializers.ModelSerializer):
    classification = serializers.CharField(source="classification.code")
    identity = serializers.CharField(source="account.identity")
    instance_name = serializers.CharField(source="instance.name")
    rule_name = serializers.CharField(source="rule.name", default=None, read_only=True, allow_null=True)

    class Meta:
        model = ClassificationAssignment
        fields = ["id", "account", "identity", "classification", "instance", "instance_name", "source", "rule",
                  "rule_name", "assigned_at"]  # fmt: skip


class ManualSerializer(serializers.ModelSerializer):
    classification = serializers.CharField(source="classification.code")
    identity = serializers.CharField(source="account.identity")
    decided_by = serializers.CharField(source="decided_by.username", default=None, read_only=True, allow_null=True)

    class Meta:
        model = ManualAssignment
        fields = ["id", "account", "identity", "classification", "action", "reason", "decided_at", "decided_by"]


class ManualRequestSerializer(serializers.Serializer):
    account = serializers.IntegerField(min_value=1, max_value=2**31 - 1)
    classification = serializers.SlugField(max_length=64, help_text="The classification's code.")
    reason = serializers.CharField(required=False, allow_blank=True, max_length=MAX_REASON, default="")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        account = InstanceAccount.objects.filter(pk=attrs["account"]).first()
        if account is None:
            raise ValidationError({"account": ["No account with this id."]}, code="invalid")
        if not account.is_active:
            raise ValidationError(
                {"account": ["The account is no longer active; only active accounts are classified."]}
            )
        classification = Classification.objects.filter(code=attrs["classification"]).first()
        if classification is None:
            raise ValidationError({"classification": [f"No classification with code {attrs['classification']!r}."]})
        return {**attrs, "account": account, "classification": classification}


class ClassificationFilterSet(filters.FilterSet):
    risk_level = filters.NumberFilter(min_value=1, max_value=6)
    code = filters.CharFilter(max_length=64)

    class Meta:
        model = Classification
        fields = ["risk_level", "code"]


class ClassificationViewSet(viewsets.ModelViewSet):
    """Categories; `account_count` is the number of active accounts in each now."""

    serializer_class = ClassificationSerializer
    filterset_class = ClassificationFilterSet
    ordering_fields = ["code", "risk_level", "name"]

    def get_queryset(self) -> QuerySet[Classification]:
        return Classification.objects.annotate(account_count=Sum("instance_states__count")).order_by(
            "-risk_level", "code"
        )


class RuleFilterSet(filters.FilterSet):
    classification = filters.CharFilter(field_name="classification__code", max_length=64)
    db_type = filters.ChoiceFilter(choices=FAMILY_CHOICES)
    is_enabled = filters.BooleanFilter()

    class Meta:
        model = ClassificationRule
        fields = ["classification", "db_type", "is_enabled"]


def _queue_evaluation() -> None:
    try:
        evaluation_enqueue()
    except ClassificationBrokerError as exc:
        raise EvaluationNotQueued() from exc


@extend_schema_view(
    create=extend_schema(
        description="Saves version 1 and queues the re-evaluation. 400 `invalid_rule` names the bad part "
        "(`rule.all[2].has_privilege.scope: unknown level 'tabel'`); 503 `broker_unavailable`: saved, not queued."
    ),
    update=extend_schema(description="Saves a new version (when something changed) and queues the re-evaluation."),
    partial_update=extend_schema(description="As update."),
)
class ClassificationRuleViewSet(viewsets.ModelViewSet):
    """Rules; each change is a new version (`versions/`), `preview/` tries an expression without saving."""

    serializer_class = RuleSerializer
    filterset_class = RuleFilterSet
    ordering_fields = ["name", "updated_at", "version"]

    def get_queryset(self) -> QuerySet[ClassificationRule]:
        return ClassificationRule.objects.select_related("classification", "updated_by").order_by(
            "classification__code", "name"
        )

    def perform_create(self, serializer: RuleSerializer) -> None:
        serializer.save(user=self.request.user)
        _queue_evaluation()

    def perform_update(self, serializer: RuleSerializer) -> None:
        serializer.save(user=self.request.user)
        _queue_evaluation()

    @extend_schema(responses=RuleVersionSerializer(many=True), description="Every saved version, newest first.")
    @action(detail=True, methods=["get"], pagination_class=None)
    def versions(self, request: Request, pk: str | None = None) -> Response:
        rule = self.get_object()
        return Response(RuleVersionSerializer(rule_versions(rule_id=rule.pk), many=True).data)

    @extend_schema(
        request=PreviewRequestSerializer,
        responses={200: PreviewSerializer, 400: OpenApiResponse(description="`invalid_rule`: the bad part named.")},
        description="Which active accounts an expression would match now (nothing is saved). Needs view permission.",
    )
    @action(detail=False, methods=["post"], permission_classes=[permissions.IsAuthenticated])
    def preview(self, request: Request) -> Response:
        if not request.user.has_perm("classification.view_classificationrule"):
            self.permission_denied(request, message="You do not have permission to view classification rules.")
        body = PreviewRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            result = rule_preview(expression=body.validated_data["expression"], db_type=body.validated_data["db_type"])
        except RuleError as exc:  # pragma: no cover - validated above
            raise ValidationError({"expression": [str(exc)]}) from exc
        return Response(PreviewSerializer({"count": result.count, "accounts": result.accounts}).data)

    @extend_schema(responses=PreviewSerializer, description="Which active accounts the saved rule matches now.")
    @action(detail=True, methods=["get"], url_path="preview")
    def preview_saved(self, request: Request, pk: str | None = None) -> Response:
        rule = self.get_object()
        result = rule_preview(expression=rule.expression, db_type=rule.db_type)
        return Response(PreviewSerializer({"count": result.count, "accounts": result.accounts}).data)


class AssignmentFilterSet(filters.FilterSet):
    classification = filters.CharFilter(field_name="classification__code", max_length=64)
    instance = filters.NumberFilter(field_name="instance_id", min_value=1, max_value=2**31 - 1)
    account = filters.NumberFilter(field_name="account_id", min_value=1, max_value=2**31 - 1)
    source = filters.ChoiceFilter(choices=AssignmentSource.choices)

    class Meta:
        model = ClassificationAssignment
        fields = ["classification", "instance", "account", "source"]


class ManualPermission(permissions.BasePermission):
    """Reading needs view permission; assign/unassign ``add_manualassignment``; clear ``delete_manualassignment``."""

    message = "You do not have permission to assign classifications by hand."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if request.method in permissions.SAFE_METHODS:
            return user.has_perm("classification.view_classificationassignment")
        if getattr(view, "action", "") == "clear":
            return user.has_perm("classification.delete_manualassignment")
        return user.has_perm("classification.add_manualassignment")


class ClassificationAssignmentViewSet(viewsets.ReadOnlyModelViewSet):
    """Who is in which classification now, and why (a rule, or a manual decision)."""

    serializer_class = AssignmentSerializer
    filterset_class = AssignmentFilterSet
    permission_classes = [ManualPermission]
    ordering_fields = ["assigned_at", "account"]

    def get_queryset(self) -> QuerySet[ClassificationAssignment]:
        return (
            ClassificationAssignment.objects.filter(account__is_active=True)
            .select_related("classification", "account", "instance", "rule")
            .order_by("classification__code", "account_id")
        )

    def _decide(self, request: Request, action_name: str) -> Response:
        body = ManualRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        decision = manual_assign(
            account=body.validated_data["account"],
            classification=body.validated_data["classification"],
            action=action_name,
            reason=body.validated_data["reason"],
            user=request.user,
        )
        return Response(ManualSerializer(decision).data, status=status.HTTP_200_OK)

    @extend_schema(
        request=ManualRequestSerializer,
        responses=ManualSerializer,
        description="Put the account in the classification by hand; wins over every rule. Audited.",
    )
    @action(detail=False, methods=["post"])
    def assign(self, request: Request) -> Response:
        return self._decide(request, ManualAction.INCLUDE)

    @extend_schema(
        request=ManualRequestSerializer,
        responses=ManualSerializer,
        description="Keep the account out of the classification by hand, whatever the rules say. Audited.",
    )
    @action(detail=False, methods=["post"])
    def unassign(self, request: Request) -> Response:
        return self._decide(request, ManualAction.EXCLUDE)

    @extend_schema(
        request=ManualRequestSerializer,
        responses={204: None, 404: OpenApiResponse(description="No manual decision for this pair.")},
        description="Withdraw the manual decision: the rules decide again. Audited.",
    )
    @action(detail=False, methods=["post"])
    def clear(self, request: Request) -> Response:
        body = ManualRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if not manual_clear(
            account=body.validated_data["account"],
            classification=body.validated_data["classification"],
            user=request.user,
        ):
            return Response(
                {"detail": "No manual decision for this account and classification.", "code": "not_found"},
                status=status.HTTP_404_NOT_FOUND,
            )
        return Response(status=status.HTTP_204_NO_CONTENT)


class ManualAssignmentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Manual decisions (assign = include, unassign = exclude), newest first; change them through the assignments."""

    serializer_class = ManualSerializer
    filterset_fields = ["action"]

    def get_queryset(self) -> QuerySet[ManualAssignment]:
        return ManualAssignment.objects.select_related("classification", "account", "decided_by").order_by(
            "-decided_at", "-pk"
        )

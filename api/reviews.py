"""/api/v1/review-campaigns/ and /api/v1/review-items/: access reviews (docs/reviews.md).

Thin: visibility is reviews.selectors (a reviewer sees only their own items, holders of
``reviews.oversee_reviews`` see all), writes are reviews.services (audited there). There is no
update or delete endpoint: a campaign's selection is frozen at its start, and a closed campaign
with its items is retained read-only.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from api.exceptions import Conflict
from api.serializers import ErrorSerializer
from classification.models import Classification
from instances.models import Environment, Instance
from reviews.evidence import evidence_csv_response
from reviews.models import CLOSE_CAMPAIGN, DECIDE_ITEM, Assignment, Campaign, Decision, ReviewItem, ReviewRetained
from reviews.selectors import campaign_progress, campaigns_progress, oversees, visible_campaigns, visible_items
from reviews.services import campaign_close, campaign_create, item_decide, revoke_choices


class CampaignClosed(Conflict):
    default_detail = "The campaign is closed: it and its items are retained read-only."
    default_code = "campaign_closed"


def _validation(exc: DjangoValidationError) -> ValidationError:
    if hasattr(exc, "error_dict"):
        return ValidationError({k: [str(m) for m in v] for k, v in exc.message_dict.items()})
    return ValidationError({"non_field_errors": [str(m) for m in exc.messages]})


class ProgressSerializer(serializers.Serializer):
    reviewer = serializers.CharField()
    total = serializers.IntegerField()
    decided = serializers.IntegerField()
    pending = serializers.IntegerField()
    keep = serializers.IntegerField()
    revoke = serializers.IntegerField()
    change = serializers.IntegerField()
    percent = serializers.IntegerField()


class CampaignProgressSerializer(serializers.Serializer):
    overall = ProgressSerializer()
    per_reviewer = ProgressSerializer(many=True)


class CampaignSerializer(serializers.ModelSerializer):
    instances = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    classification = serializers.CharField(source="classification_name", read_only=True)
    is_overdue = serializers.BooleanField(read_only=True)
    progress = serializers.SerializerMethodField()
    reviewers = serializers.SerializerMethodField()

    class Meta:
        model = Campaign
        fields = [
            "id",
            "name",
            "description",
            "status",
            "instances",
            "environment",
            "classification",
            "include_roles",
            "assignment",
            "reviewers",
            "due_date",
            "is_overdue",
            "started_at",
            "created_by_username",
            "created_at",
            "closed_at",
            "closed_by_username",
            "progress",
        ]
        read_only_fields = fields

    @extend_schema_field(CampaignProgressSerializer)
    def get_progress(self, obj: Campaign) -> dict[str, Any]:
        known = self.context.get("progress") or {}  # a list page reads every row's progress at once
        if obj.pk in known:
            per, overall = known[obj.pk]
        else:
            request = self.context.get("request")
            items = visible_items(getattr(request, "user", None)).filter(campaign=obj)
            per, overall = campaign_progress(campaign=obj, items=items)
        data = ProgressSerializer(overall).data
        return {"overall": data, "per_reviewer": ProgressSerializer(per, many=True).data}

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_reviewers(self, obj: Campaign) -> list[str]:
        request = self.context.get("request")
        if oversees(getattr(request, "user", None)):
            return sorted(user.username for user in obj.reviewers.all())  # prefetched on the list
        return [request.user.get_username()] if request is not None else []


class CampaignCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=10000)
    instances = serializers.SlugRelatedField(
        slug_field="name", many=True, required=False, queryset=Instance.objects.all(), default=list
    )
    environment = serializers.ChoiceField(choices=Environment.choices, required=False, allow_blank=True, default="")
    classification = serializers.SlugRelatedField(
        slug_field="code", required=False, allow_null=True, default=None, queryset=Classification.objects.all()
    )
    include_roles = serializers.BooleanField(required=False, default=False)
    reviewers = serializers.SlugRelatedField(
        slug_field="username", many=True, queryset=get_user_model().objects.filter(is_active=True)
    )
    assignment = serializers.ChoiceField(choices=Assignment.choices, required=False, default=Assignment.ROUND_ROBIN)
    fallback_reviewer = serializers.SlugRelatedField(
        slug_field="username",
        required=False,
        allow_null=True,
        default=None,
        queryset=get_user_model().objects.filter(is_active=True),
    )
    owners = serializers.DictField(
        child=serializers.CharField(max_length=150),
        required=False,
        default=dict,
        help_text="For assignment instance_owner: instance name -> reviewer username.",
    )
    due_date = serializers.DateField()

    def validate_reviewers(self, value: list[Any]) -> list[Any]:
        if not value:
            raise ValidationError("Name at least one reviewer.")
        return value

    def validate_owners(self, value: dict[str, str]) -> dict[int, Any]:
        users = {
            u.username: u for u in get_user_model().objects.filter(username__in=set(value.values()), is_active=True)
        }
        instances = dict(Instance.objects.filter(name__in=list(value)).values_list("name", "pk"))
        owners: dict[int, Any] = {}
        for name, username in value.items():
            if name not in instances:
                raise ValidationError(f"Unknown instance {name[:128]!r}.")
            if username not in users:
                raise ValidationError(f"Unknown or inactive user {username[:150]!r}.")
            owners[instances[name]] = users[username]
        return owners


class ReviewItemSerializer(serializers.ModelSerializer):
    campaign = serializers.PrimaryKeyRelatedField(read_only=True)
    revoke_choices = serializers.SerializerMethodField()

    class Meta:
        model = ReviewItem
        fields = [
            "id",
            "campaign",
            "instance_name",
            "db_type",
            "identity",
            "kind",
            "access_at",
            "access",
            "reviewer_username",
            "decision",
            "comment",
            "revoke_privileges",
            "revoke_roles",
            "target",
            "script",
            "decided_by_username",
            "decided_at",
            "revoke_choices",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_revoke_choices(self, obj: ReviewItem) -> list[str]:
        return revoke_choices(obj.access)


class DecideSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=[d for d in Decision.choices if d[0] != Decision.PENDING])
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=10000)
    revoke = serializers.ListField(
        child=serializers.CharField(max_length=2000),
        required=False,
        default=list,
        max_length=1000,
        help_text="For change: entries of the item's revoke_choices (`scope|privilege` or `role:<name>`).",
    )
    target = serializers.CharField(required=False, allow_blank=True, default="", max_length=10000)


class CampaignPermission(BasePermission):
    """Reading needs ``view_campaign``; creating ``add_campaign``; closing ``close_campaign``."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        needed = {"create": "reviews.add_campaign", "close": CLOSE_CAMPAIGN}.get(view.action, "reviews.view_campaign")
        if view.action == "items":
            needed = "reviews.view_reviewitem"
        return user.has_perm(needed)


class ItemPermission(BasePermission):
    """Reading needs ``view_reviewitem``; deciding ``decide_reviewitem`` (and being the item's reviewer)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return user.has_perm(DECIDE_ITEM if view.action == "decide" else "reviews.view_reviewitem")


@extend_schema_view(
    list=extend_schema(summary="List the review campaigns you may see"),
    retrieve=extend_schema(summary="One campaign, with progress per reviewer and overall"),
)
class ReviewCampaignViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    serializer_class = CampaignSerializer
    permission_classes = [CampaignPermission]
    ordering_fields = ["created_at", "due_date"]
    filterset_fields = ["status"]

    def get_queryset(self) -> QuerySet[Campaign]:
        return (
            visible_campaigns(self.request.user)
            .prefetch_related("instances", "reviewers")
            .order_by("-created_at", "-id")
        )

    def paginate_queryset(self, queryset: QuerySet[Campaign]) -> list[Campaign] | None:
        """The page, with every campaign's progress read in one grouped query (stored for the serializer)."""
        page = super().paginate_queryset(queryset)
        if page is not None:
            items = visible_items(self.request.user)
            self._progress = campaigns_progress(campaign_ids=[c.pk for c in page], items=items)
        return page

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "progress": getattr(self, "_progress", None)}

    @extend_schema(
        summary="Create and start a campaign (freezes every selected account's access)",
        request=CampaignCreateSerializer,
        responses={201: CampaignSerializer},
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = CampaignCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            campaign = campaign_create(
                name=data["name"],
                description=data["description"],
                due_date=data["due_date"],
                reviewers=data["reviewers"],
                actor=request.user,
                instances=data["instances"],
                environment=data["environment"],
                classification=data["classification"],
                include_roles=data["include_roles"],
                assignment=data["assignment"],
                fallback_reviewer=data["fallback_reviewer"],
                owners=data["owners"],
            )
        except DjangoValidationError as exc:
            raise _validation(exc) from None
        return Response(CampaignSerializer(campaign, context={"request": request}).data, status=201)

    @extend_schema(
        summary="Close the campaign; it and its items become read-only",
        request=None,
        responses={200: CampaignSerializer, 409: OpenApiResponse(ErrorSerializer)},
    )
    @action(detail=True, methods=["post"])
    def close(self, request: Request, pk: str | None = None) -> Response:
        campaign = self.get_object()
        try:
            campaign = campaign_close(campaign=campaign, actor=request.user)
        except ReviewRetained as exc:
            raise CampaignClosed(str(exc)) from None
        return Response(CampaignSerializer(campaign, context={"request": request}).data)

    @extend_schema(summary="The campaign's items you may see", responses={200: ReviewItemSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def items(self, request: Request, pk: str | None = None) -> Response:
        campaign = self.get_object()
        qs = visible_items(request.user).filter(campaign=campaign).order_by("instance_name", "identity", "id")
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(ReviewItemSerializer(page, many=True).data)

    @extend_schema(
        summary="Evidence export (CSV), streamed: every item, decision, who, when, the access at the review",
        description="Needs reviews.oversee_reviews (WhaleFall admins). The download is an audit event.",
        responses={(200, "text/csv"): OpenApiResponse(description="CSV, one row per item.")},
    )
    @action(detail=True, methods=["get"], url_path="evidence")
    def evidence(self, request: Request, pk: str | None = None) -> StreamingHttpResponse:
        if not oversees(request.user):
            raise PermissionDenied("Exporting evidence needs reviews.oversee_reviews.")
        return evidence_csv_response(self.get_object(), request.user, request._request)


@extend_schema_view(
    list=extend_schema(summary="Your review items (every item for reviews.oversee_reviews)"),
    retrieve=extend_schema(summary="One review item, with the access frozen at the campaign's start"),
)
class ReviewItemViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = ReviewItemSerializer
    permission_classes = [ItemPermission]
    filterset_fields = ["campaign", "decision"]
    ordering_fields = ["instance_name", "identity", "decided_at"]

    def get_queryset(self) -> QuerySet[ReviewItem]:
        return visible_items(self.request.user).order_by("campaign_id", "instance_name", "identity", "id")

    @extend_schema(
        summary="Decide your item: keep, revoke or change (revoke and change return the revoke script)",
        request=DecideSerializer,
        responses={200: ReviewItemSerializer, 409: OpenApiResponse(ErrorSerializer)},
    )
    @action(detail=True, methods=["post"])
    def decide(self, request: Request, pk: str | None = None) -> Response:
        item = self.get_object()
        body = DecideSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            item = item_decide(item=item, actor=request.user, **body.validated_data)
        except ReviewRetained as exc:
            raise CampaignClosed(str(exc)) from None
        except PermissionError as exc:
            raise PermissionDenied(str(exc)) from None
        except DjangoValidationError as exc:
            raise _validation(exc) from None
        return Response(ReviewItemSerializer(item).data)

"""GET /api/v1/server-facts/: the versions of each instance's server-wide facts (docs/server-facts.md).

Why an endpoint of its own: a sync record's details only count the bulky facts (Oracle's
tens of thousands of PUBLIC grants) and name the version they are in; this is where the
version is read. The list leaves the facts out (megabytes each on Oracle); one version's
page returns them whole.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import django_filters
from django.db.models import Q, QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, viewsets

from accountsync.facts import facts_count
from accountsync.models import InstanceServerFacts
from api.filtersets import MAX_ID, UtcDateTimeFilter


class ServerFactsListSerializer(serializers.ModelSerializer):
    class Meta:
        model = InstanceServerFacts
        fields = ["id", "instance", "digest", "valid_from", "valid_to", "session_id"]


class ServerFactsSerializer(ServerFactsListSerializer):
    counts = serializers.SerializerMethodField(help_text="How many grants (or entries) each fact holds.")

    class Meta(ServerFactsListSerializer.Meta):
        fields = [*ServerFactsListSerializer.Meta.fields, "counts", "facts"]

    def get_counts(self, obj: InstanceServerFacts) -> dict[str, int]:
        return {key: facts_count(value) for key, value in sorted((obj.facts or {}).items())}


class ServerFactsFilterSet(django_filters.FilterSet):
    instance = django_filters.NumberFilter(
        field_name="instance_id", help_text="Instance id.", min_value=0, max_value=MAX_ID
    )
    at = UtcDateTimeFilter(method="_valid_at", help_text="Only the version valid at this moment (ISO 8601).")
    current = django_filters.BooleanFilter(field_name="valid_to", lookup_expr="isnull", help_text="Open versions.")

    class Meta:
        model = InstanceServerFacts
        fields = ["instance", "at", "current"]

    def _valid_at(self, queryset: QuerySet, name: str, value: datetime | None) -> QuerySet:
        if value is None:
            return queryset
        return queryset.filter(Q(valid_from__lte=value) & (Q(valid_to__isnull=True) | Q(valid_to__gt=value)))


@extend_schema_view(
    list=extend_schema(summary="List server-facts versions (without the facts)"),
    retrieve=extend_schema(summary="One server-facts version, whole (Oracle: every PUBLIC grant)"),
)
class ServerFactsViewSet(viewsets.ReadOnlyModelViewSet):
    filterset_class = ServerFactsFilterSet
    ordering_fields = ["valid_from", "id"]

    def get_queryset(self) -> QuerySet[InstanceServerFacts]:
        queryset = InstanceServerFacts.objects.order_by("instance_id", "-valid_from", "-id")
        return queryset.defer("facts") if self.action == "list" else queryset

    def get_serializer_class(self) -> Any:
        return ServerFactsListSerializer if self.action == "list" else ServerFactsSerializer

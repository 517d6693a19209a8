"""django-filter FilterSets for the list endpoints (NetBox naming: ``<Model>FilterSet``).

A value that does not parse (a date that is not a date, an unknown choice)
makes the list answer 400 with the filter's name and message. Every free-text
filter is a ``TextFilter``: a value longer than ``MAX_QUERY_LENGTH`` is a 400
``query_too_long`` before any query runs.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

import django_filters
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Q, QuerySet
from django_filters.fields import IsoDateTimeField
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request

from accountsync.models import AccountChangeLog, AccountKind, AccountPermission, ChangeType, InstanceAccount
from accountsync.selectors import LAST_SEEN
from api.querying import MAX_QUERY_LENGTH, validate_query_length
from classification.selectors import classification_members
from findings.models import Finding, SeverityChoices
from instances.models import DbType, Environment, Instance, SyncStatus
from sync.models import SyncSession, SyncSessionStatusChoices, SyncTypeChoices


class TextFilter(django_filters.CharFilter):
    """A free-text filter bounded to MAX_QUERY_LENGTH characters (400 ``query_too_long`` beyond)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("validators", [validate_query_length])
        help_text = kwargs.get("help_text")
        if help_text:
            kwargs["help_text"] = f"{help_text} At most {MAX_QUERY_LENGTH} characters."
        super().__init__(*args, **kwargs)


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time, converted to UTC.

    PostgreSQL refuses an offset beyond ±15:59 (``-16:00`` is valid ISO 8601) with a
    DataError; in UTC it is an ordinary instant. One that has no UTC form (year 1 at
    +15:00) is a 400 ``invalid_datetime`` naming the parameter.
    """

    def clean(self, value):
        value = super().clean(value)
        if value is not None and value.tzinfo is not None:
            try:
                value = value.astimezone(UTC)
            except OverflowError:
                message = "Out of the supported date-time range (years 1 to 9999 in UTC)."
                raise DjangoValidationError(message, code="invalid_datetime") from None
        return value


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 date-time filter that queries in UTC (see UtcIsoDateTimeField)."""

    field_class = UtcIsoDateTimeField


def _search(fields: tuple[str, ...]):
    def method(queryset: QuerySet, name: str, value: str) -> QuerySet:
        if not value:
            return queryset
        query = Q()
        for field in fields:
            query |= Q(**{f"{field}__icontains": value})
        return queryset.filter(query)

    return method


MAX_ID = 2**63 - 1  # the largest value a BigAutoField (and SQLite's INTEGER) can hold


def _id_filter(field_name: str, what: str) -> django_filters.NumberFilter:
    """An id filter that answers 400 for a number no database id can be (instead of a driver overflow)."""
    return django_filters.NumberFilter(field_name=field_name, help_text=f"{what} id.", min_value=0, max_value=MAX_ID)


class InstanceFilterSet(django_filters.FilterSet):
    db_type = django_filters.ChoiceFilter(choices=DbType.choices)
    environment = django_filters.ChoiceFilter(choices=Environment.choices)
    is_active = django_filters.BooleanFilter()
    last_sync_status = django_filters.ChoiceFilter(choices=[c for c in SyncStatus.choices if c[0]])
    tag = TextFilter(field_name="tags__name", distinct=True, help_text="Tag name.")
    search = TextFilter(method=_search(("name", "host", "description")), help_text="Name or host.")

    class Meta:
        model = Instance
        fields = ["db_type", "environment", "is_active", "last_sync_status", "tag", "search"]


class SyncSessionFilterSet(django_filters.FilterSet):
    sync_type = django_filters.ChoiceFilter(choices=SyncTypeChoices.choices)
    status = django_filters.ChoiceFilter(choices=SyncSessionStatusChoices.choices)
    started_after = UtcDateTimeFilter(
        field_name="started_at", lookup_expr="gte", help_text="ISO 8601 date-time, inclusive."
    )
    started_before = UtcDateTimeFilter(
        field_name="started_at", lookup_expr="lt", help_text="ISO 8601 date-time, exclusive."
    )

    class Meta:
        model = SyncSession
        fields = ["sync_type", "status", "started_after", "started_before"]


class InstanceAccountFilterSet(django_filters.FilterSet):
    instance = _id_filter("instance_id", "Instance")
    db_type = django_filters.ChoiceFilter(field_name="instance__db_type", choices=DbType.choices)
    kind = django_filters.ChoiceFilter(choices=AccountKind.choices)
    active = django_filters.BooleanFilter(field_name="is_active")
    superuser = django_filters.BooleanFilter(field_name="is_superuser")
    locked = django_filters.BooleanFilter(field_name="is_locked")
    oracle_maintained = django_filters.BooleanFilter(
        method="_oracle_maintained", help_text="Oracle-maintained accounts (SYS, SYSTEM, DBSNMP, DBA, ...)."
    )
    classification = TextFilter(
        method="_classification", help_text="Accounts in the classification with this code (docs/classification.md)."
    )
    # the identity holds the name: one indexed test (PostgreSQL's trigram index, accountsync 0007), not two scans
    search = TextFilter(method=_search(("identity",)), help_text="Account name (anywhere in the identity).")
    # on the true last seen (the view's ``last_seen`` annotation), not the row's write time
    last_seen_after = UtcDateTimeFilter(
        field_name=LAST_SEEN, lookup_expr="gte", help_text="Last seen at or after this ISO 8601 date-time."
    )
    last_seen_before = UtcDateTimeFilter(
        field_name=LAST_SEEN, lookup_expr="lt", help_text="Last seen before this ISO 8601 date-time (exclusive)."
    )

    class Meta:
        model = InstanceAccount
        fields = [
            "instance",
            "db_type",
            "kind",
            "active",
            "superuser",
            "locked",
            "oracle_maintained",
            "classification",
            "search",
            "last_seen_after",
            "last_seen_before",
        ]

    def _classification(self, queryset: Any, name: str, value: str) -> Any:
        """By classification code; an unknown code is a 400 naming it, not an empty page."""
        members = classification_members(code=value)
        if members is None:
            raise DRFValidationError({"classification": [f"Unknown classification code {value!r}."]})
        return queryset.filter(pk__in=members)

    def _oracle_maintained(self, queryset: Any, name: str, value: bool | None) -> Any:
        """The account attribute the Oracle adapter sets; false: every other account (other families too)."""
        if value is None:
            return queryset
        if value:
            return queryset.filter(attributes__oracle_maintained=True)
        # accounts without the attribute (other families) too: a missing key is SQL's NULL, not "no"
        return queryset.filter(Q(attributes__oracle_maintained=False) | Q(attributes__oracle_maintained__isnull=True))


class AccountChangeLogFilterSet(django_filters.FilterSet):
    instance = _id_filter("instance_id", "Instance")
    account = _id_filter("account_id", "Account")
    change_type = django_filters.ChoiceFilter(choices=ChangeType.choices)
    session_id = django_filters.UUIDFilter()
    detected_after = UtcDateTimeFilter(
        field_name="detected_at", lookup_expr="gte", help_text="ISO 8601 date-time, inclusive."
    )
    detected_before = UtcDateTimeFilter(
        field_name="detected_at", lookup_expr="lt", help_text="ISO 8601 date-time, exclusive."
    )

    class Meta:
        model = AccountChangeLog
        fields = ["instance", "account", "change_type", "session_id", "detected_after", "detected_before"]


class FindingFilterSet(django_filters.FilterSet):
    instance = _id_filter("instance_id", "Instance")
    account = _id_filter("account_id", "Account")
    db_type = django_filters.ChoiceFilter(field_name="instance__db_type", choices=DbType.choices)
    severity = django_filters.ChoiceFilter(choices=SeverityChoices.choices)
    rule_code = TextFilter(help_text="Rule code, e.g. SUPERUSER (docs/findings.md).")
    is_open = django_filters.BooleanFilter()

    class Meta:
        model = Finding
        fields = ["instance", "account", "db_type", "severity", "rule_code", "is_open"]


class AccountPermissionFilterSet(django_filters.FilterSet):
    """Current snapshots, filtered by their account with the account list's filters."""

    instance = _id_filter("instance_id", "Instance")
    account = _id_filter("account_id", "Account")
    db_type = django_filters.ChoiceFilter(field_name="instance__db_type", choices=DbType.choices)
    kind = django_filters.ChoiceFilter(field_name="account__kind", choices=AccountKind.choices)
    active = django_filters.BooleanFilter(field_name="account__is_active")
    superuser = django_filters.BooleanFilter(field_name="account__is_superuser")
    locked = django_filters.BooleanFilter(field_name="account__is_locked")
    search = TextFilter(method="_account_search", help_text="Account name (anywhere in the identity).")

    class Meta:
        model = AccountPermission
        fields = ["instance", "account", "db_type", "kind", "active", "superuser", "locked", "search"]

    def _account_search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        """By account ids first: the snapshots are never joined to the accounts to test the text."""
        if not value:
            return queryset
        return queryset.filter(account_id__in=InstanceAccount.objects.filter(identity__icontains=value).values("pk"))


class AliasOrderingFilter(OrderingFilter):
    """DRF's ``?ordering=``, where a public field name may sort by an annotation, ties broken by id.

    Why: ``?ordering=last_seen_at`` on accounts must sort by the true last seen
    (the ``last_seen`` annotation), while the field keeps its public name. The
    view maps names in ``ordering_aliases``. Many rows share one value (every
    active account of an instance has its last successful sync), so a
    requested ordering ends with the primary key and pages never overlap.
    """

    def get_ordering(self, request: Request, queryset: QuerySet, view: Any) -> list[str] | None:
        ordering = super().get_ordering(request, queryset, view)
        if not ordering or not request.query_params.get(self.ordering_param):
            return ordering
        aliases = getattr(view, "ordering_aliases", {})
        terms = []
        for term in ordering:
            descending = term.startswith("-")
            name = aliases.get(term.lstrip("-"), term.lstrip("-"))
            terms.append(f"-{name}" if descending else name)
        if not any(term.lstrip("-") in ("pk", "id") for term in terms):
            terms.append("pk")
        return terms

"""The directory cross-check in the API (docs/directory.md): people, an account's person, the read status.

- ``GET /api/v1/people/`` and ``/api/v1/people/{id}/``: people as the last good directory read left
  them, each with the database accounts linked to them (``directory.view_person``).
- ``GET /api/v1/accounts/{id}/person/``: who owns the account, or for a Windows group login the people
  it lets in, and the directory status (``accountsync.view_instanceaccount`` and ``directory.view_person``).
- ``GET /api/v1/directory-status/``: last good read, last failed attempt and why.

Read-only: people come from the directory, links from the rules and the mapping table (admin).
"""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accountsync.models import InstanceAccount
from directory.models import AccountPersonLink, Person, PersonStatus
from directory.selectors import account_people, directory_status, status_text


class ManagerSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    uid = serializers.CharField()
    name = serializers.CharField()
    status = serializers.CharField()


class LinkedAccountSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="account_id")
    instance = serializers.IntegerField(source="account.instance_id")
    instance_name = serializers.CharField(source="account.instance.name")
    identity = serializers.CharField(source="account.identity")
    is_active = serializers.BooleanField(source="account.is_active")
    rule = serializers.CharField()
    matched = serializers.CharField()


class PersonSerializer(serializers.ModelSerializer):
    manager = serializers.SerializerMethodField()
    last_directory_sync = serializers.DateTimeField(source="last_seen_at", read_only=True)
    accounts = LinkedAccountSerializer(many=True, source="links", read_only=True)

    class Meta:
        model = Person
        fields = [
            "id",
            "uid",
            "name",
            "mail",
            "department",
            "dn",
            "status",
            "status_changed_at",
            "last_directory_sync",
            "manager",
            "accounts",
        ]

    @extend_schema(responses=ManagerSerializer(allow_null=True))
    def get_manager(self, obj: Person) -> dict[str, Any] | None:
        m = obj.manager
        return {"id": m.pk, "uid": m.uid, "name": m.name, "status": m.status} if m else None


class PersonFilterSet(filters.FilterSet):
    status = filters.ChoiceFilter(choices=PersonStatus.choices)
    uid = filters.CharFilter(field_name="uid", lookup_expr="iexact")
    department = filters.CharFilter(field_name="department", lookup_expr="iexact")

    class Meta:
        model = Person
        fields = ["status", "uid", "department"]


class PersonViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = PersonSerializer
    filterset_class = PersonFilterSet
    ordering_fields = ["uid", "name", "status", "last_seen_at"]

    def get_queryset(self) -> QuerySet[Person]:
        links = Prefetch(
            "links", queryset=AccountPersonLink.objects.select_related("account__instance").order_by("account_id")
        )
        return Person.objects.select_related("manager").prefetch_related(links).order_by("uid", "pk")


class DirectoryStatusSerializer(serializers.Serializer):
    last_ok_at = serializers.DateTimeField(allow_null=True)
    last_attempt_at = serializers.DateTimeField(allow_null=True)
    last_failed_at = serializers.DateTimeField(allow_null=True)
    error_kind = serializers.CharField()
    error = serializers.CharField()
    people = serializers.IntegerField()
    text = serializers.CharField(help_text="The status line the account page shows.")


def _status() -> dict[str, Any]:
    status = directory_status()
    return {**status.as_dict(), "text": status_text(status)}


class ViewPeople(permissions.BasePermission):
    message = "You do not have permission to view people (directory.view_person)."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("directory.view_person"))


class ViewAccountsAndPeople(ViewPeople):
    message = "You need accountsync.view_instanceaccount and directory.view_person."

    def has_permission(self, request: Request, view: Any) -> bool:
        return super().has_permission(request, view) and request.user.has_perm("accountsync.view_instanceaccount")


class DirectoryStatusView(APIView):
    permission_classes = [ViewPeople]

    @extend_schema(responses=DirectoryStatusSerializer, operation_id="directory_status_retrieve")
    def get(self, request: Request) -> Response:
        return Response(DirectoryStatusSerializer(_status()).data)


class GroupMemberSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    uid = serializers.CharField()
    name = serializers.CharField()
    department = serializers.CharField()
    status = serializers.CharField()


class GroupLoginSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    dn = serializers.CharField()
    deleted = serializers.BooleanField()
    members = GroupMemberSerializer(many=True, help_text="Everyone the group lets in, nested groups expanded.")


class AccountPersonDetailSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    uid = serializers.CharField()
    name = serializers.CharField()
    mail = serializers.CharField()
    department = serializers.CharField()
    dn = serializers.CharField()
    status = serializers.CharField()
    status_changed_at = serializers.DateTimeField()
    last_directory_sync = serializers.DateTimeField()
    manager = ManagerSerializer(allow_null=True)


class AccountPersonSerializer(serializers.Serializer):
    account = serializers.IntegerField()
    person = AccountPersonDetailSerializer(allow_null=True)
    rule = serializers.CharField(allow_null=True, help_text="mapping, windows, username, mail or windows_group.")
    matched = serializers.CharField(allow_null=True)
    group = GroupLoginSerializer(allow_null=True, help_text="For a Windows group login: the group it lets in.")
    directory = DirectoryStatusSerializer()


class AccountPersonView(APIView):
    permission_classes = [ViewAccountsAndPeople]

    @extend_schema(responses=AccountPersonSerializer, operation_id="accounts_person_retrieve")
    def get(self, request: Request, pk: int) -> Response:
        if not InstanceAccount.objects.filter(pk=pk).exists():
            raise NotFound("No account with this id.")
        link = account_people(account_ids=[pk]).get(pk) or {}
        body = {
            "account": pk,
            "person": link.get("person"),
            "rule": link.get("rule"),
            "matched": link.get("matched"),
            "group": link.get("group"),
            "directory": _status(),
        }
        return Response(AccountPersonSerializer(body).data)

"""/api/v1/ grant scripts: replayable DDL of an account or an instance, and revoke scripts (docs/grant-scripts.md).

A script is `text/plain` (an instance's is streamed); every error is JSON like the rest of the
API. Reading needs the right to view accounts (`accountsync.view_instanceaccount`), and for an
instance also `instances.view_instance`: a script says nothing a snapshot does not. Every script
handed out is an export event in the audit trail.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from accountsync.models import InstanceAccount
from api.querying import parse_when, when_parameter
from api.serializers import ErrorSerializer
from grantscripts.services import (
    GrantScriptError,
    account_script,
    grant_script_audit,
    instance_script,
    revoke_script,
)
from instances.models import Instance

VIEW_ACCOUNTS = "accountsync.view_instanceaccount"
VIEW_INSTANCES = "instances.view_instance"
MAX_ITEMS = 1000
SQL = "text/plain; charset=utf-8"

AT_PARAMETER = when_parameter(
    "at",
    "ISO 8601 date-time: the access the snapshots valid at that moment record (default: the current access).",
    required=False,
)
SCRIPT_RESPONSES = {
    (200, "text/plain"): OpenApiResponse(OpenApiTypes.STR, description="The script (SQL, one statement a line)."),
    (400, "application/json"): OpenApiResponse(ErrorSerializer),
    (403, "application/json"): OpenApiResponse(ErrorSerializer),
    (404, "application/json"): OpenApiResponse(ErrorSerializer),
}


class CanViewAccounts(permissions.BasePermission):
    """The right to view accounts; an instance's script needs the right to view instances too."""

    message = "You do not have permission to view accounts (accountsync.view_instanceaccount)."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.has_perm(VIEW_ACCOUNTS)):
            return False
        return not getattr(view, "needs_instances", False) or user.has_perm(VIEW_INSTANCES)


class ScriptView(APIView):
    # Content negotiation is skipped: the answer is a script, and errors are always JSON.
    # (A comment, not a docstring: drf-spectacular would show it as every operation's description.)
    permission_classes = [CanViewAccounts]
    renderer_classes = [JSONRenderer]
    needs_instances = False

    def perform_content_negotiation(self, request: Request, force: bool = False) -> tuple[Any, str]:
        renderer = JSONRenderer()
        return renderer, renderer.media_type


def _download(response: HttpResponse | StreamingHttpResponse, name: str) -> HttpResponse | StreamingHttpResponse:
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "no-store"
    return response


class AccountGrantScriptView(ScriptView):
    @extend_schema(
        operation_id="accounts_grant_script",
        summary="Replayable DDL of one account (CREATE, GRANTs, memberships)",
        description=(
            "text/plain. Never contains a password: accounts that had one are created with a random placeholder. "
            "Optional `at`: the access as it was at that moment. See docs/grant-scripts.md."
        ),
        parameters=[AT_PARAMETER],
        responses=SCRIPT_RESPONSES,
        tags=["accounts"],
    )
    def get(self, request: Request, pk: int) -> HttpResponse:
        at = parse_when("at", request.query_params.get("at"), required=False)
        account = InstanceAccount.objects.select_related("instance").filter(pk=pk).first()
        if account is None:
            raise NotFound("No such account.")
        try:
            script = account_script(account=account, at=at)
        except GrantScriptError as exc:
            raise ValidationError({exc.field: [str(exc)]}, code=exc.code) from exc
        grant_script_audit(request=request._request, what="grant_script", obj=account, at=at)
        return _download(HttpResponse(script, content_type=SQL), f"grant-script-account-{account.pk}.sql")


class InstanceGrantScriptView(ScriptView):
    needs_instances = True

    @extend_schema(
        operation_id="instances_grant_script",
        summary="Replayable DDL of every account of an instance, streamed",
        description=(
            "text/plain, streamed: every CREATE, then every GRANT, then the memberships. Never contains a "
            "password. Optional `at`: the accounts and access as they were then. See docs/grant-scripts.md."
        ),
        parameters=[AT_PARAMETER],
        responses=SCRIPT_RESPONSES,
        tags=["instances"],
    )
    def get(self, request: Request, pk: int) -> StreamingHttpResponse:
        at = parse_when("at", request.query_params.get("at"), required=False)
        instance = Instance.objects.filter(pk=pk).first()
        if instance is None:
            raise NotFound("No such instance.")
        grant_script_audit(request=request._request, what="grant_script", obj=instance, at=at)
        response = StreamingHttpResponse(instance_script(instance=instance, at=at), content_type=SQL)
        return _download(response, f"grant-script-instance-{instance.pk}.sql")


class RevokePrivilegeSerializer(serializers.Serializer):
    scope = serializers.CharField(max_length=2000, help_text="As stored in the snapshot, e.g. `database:sales`.")
    privilege = serializers.CharField(max_length=200, help_text="As stored, e.g. `SELECT`.")


class RevokeRequestSerializer(serializers.Serializer):
    account = serializers.IntegerField(min_value=1)
    privileges = RevokePrivilegeSerializer(many=True, required=False, default=list, max_length=MAX_ITEMS)
    roles = serializers.ListField(
        child=serializers.CharField(max_length=600), required=False, default=list, max_length=MAX_ITEMS
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("privileges") and not attrs.get("roles"):
            raise ValidationError({"privileges": ["Choose at least one privilege or role to revoke."]}, code="empty")
        return attrs


class RevokeScriptView(ScriptView):
    @extend_schema(
        operation_id="grant_scripts_revoke",
        summary="REVOKE statements for chosen privileges and role memberships of one account",
        description=(
            "text/plain. Privileges are (scope, privilege) pairs as stored in the account's snapshot; a pair the "
            "current snapshot no longer holds is still written, with a comment. Nothing is executed."
        ),
        request=RevokeRequestSerializer,
        responses=SCRIPT_RESPONSES,
        tags=["grant-scripts"],
    )
    def post(self, request: Request) -> HttpResponse:
        body = RevokeRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        account = InstanceAccount.objects.select_related("instance").filter(pk=data["account"]).first()
        if account is None:
            raise ValidationError({"account": ["No such account."]}, code="invalid")
        pairs = [(p["scope"], p["privilege"]) for p in data["privileges"]]
        try:
            script = revoke_script(account=account, privileges=pairs, roles=data["roles"])
        except GrantScriptError as exc:
            raise ValidationError({exc.field: [str(exc)]}, code=exc.code) from exc
        grant_script_audit(
            request=request._request,
            what="revoke_script",
            obj=account,
            details={"privileges": len(pairs), "roles": len(data["roles"])},
        )
        return _download(HttpResponse(script, content_type=SQL), f"revoke-script-account-{account.pk}.sql")

"""Ready-made Django admin actions that export the selected rows (for the admin integration).

Why here: the admin engineer adds ``actions = [admin_export_action("accounts", "csv"), ...]``
to a ModelAdmin and gets the same stream, headers and escaping as the API,
without touching the writers. With "select all" the selection is the whole
current filter. The action needs only the view permission, like the API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse

from accountsync.models import InstanceAccount
from audit.models import AuditKind, AuditVia
from audit.services import audit_record, query_filters
from exports.columns import current_permissions
from exports.http import export_response
from exports.writers import export_observed

AdminAction = Callable[[Any, HttpRequest, QuerySet[Any]], StreamingHttpResponse]


def admin_export_action(kind: str, fmt: str = "csv", *, description: str | None = None) -> AdminAction:
    """An admin action exporting the selected rows as ``kind`` in ``fmt``.

    On the accounts admin, ``kind="permissions"`` exports the selected accounts'
    current permissions (one row per privilege, role and capability).
    """

    def action(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any]) -> StreamingHttpResponse:
        if kind in ("permissions", "effective_access") and queryset.model is InstanceAccount:
            queryset = current_permissions(queryset)
        with export_observed(_audit_done(request, kind, fmt)):
            return export_response(kind, queryset, fmt)

    action.__name__ = f"export_{kind}_{fmt}"
    action.short_description = description or f"Export selected {kind.replace('_', ' ')} as {fmt.upper()}"  # type: ignore[attr-defined]
    action.allowed_permissions = ("view",)  # type: ignore[attr-defined]
    return action


def _audit_done(request: HttpRequest, kind: str, fmt: str) -> Callable[[int, bool], None]:
    """The audit event of an admin export, written when its stream ends: who, the list's filters, how many rows."""
    user = getattr(request, "user", None)
    filters = query_filters(request.GET)  # the change list's filters: an action posts to the list's URL
    selection = "all" if request.POST.get("select_across") == "1" else len(request.POST.getlist("_selected_action"))

    def done(rows: int, complete: bool) -> None:
        audit_record(
            AuditKind.EXPORT,
            actor=user,
            via=AuditVia.ADMIN,
            request=request,
            details={
                "kind": kind,
                "format": fmt,
                "filters": filters,
                "selection": selection,
                "rows": rows,
                "complete": complete,
            },
        )

    return done

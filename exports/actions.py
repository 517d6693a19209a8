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
from exports.columns import current_permissions
from exports.http import export_response

AdminAction = Callable[[Any, HttpRequest, QuerySet[Any]], StreamingHttpResponse]


def admin_export_action(kind: str, fmt: str = "csv", *, description: str | None = None) -> AdminAction:
    """An admin action exporting the selected rows as ``kind`` in ``fmt``.

    On the accounts admin, ``kind="permissions"`` exports the selected accounts'
    current permissions (one row per privilege, role and capability).
    """

    def action(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any]) -> StreamingHttpResponse:
        if kind in ("permissions", "effective_access") and queryset.model is InstanceAccount:
            queryset = current_permissions(queryset)
        return export_response(kind, queryset, fmt)

    action.__name__ = f"export_{kind}_{fmt}"
    action.short_description = description or f"Export selected {kind.replace('_', ' ')} as {fmt.upper()}"  # type: ignore[attr-defined]
    action.allowed_permissions = ("view",)  # type: ignore[attr-defined]
    return action

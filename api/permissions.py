"""Who may do what: Django model permissions, plus ``sync.run_sync`` for syncs.

The same groups drive the admin and the API (sync/roles.py): alice's admins may
do everything, bob's operators manage instances and run syncs, charlie's
viewers only read.
"""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request

from sync.models import RUN_SYNC


class ModelPermissions(permissions.DjangoModelPermissions):
    """DRF's model permissions, with reads needing ``view_<model>`` too (DRF lets any user read)."""

    perms_map = {
        **permissions.DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
    }


class ViewModelPermission(permissions.DjangoModelPermissions):
    """``view_<model>`` for any method: read-only actions that happen to be POSTs (test connection)."""

    perms_map = {
        method: ["%(app_label)s.view_%(model_name)s"]
        for method in ("GET", "OPTIONS", "HEAD", "POST", "PUT", "PATCH", "DELETE")
    }


class CanRunSync(permissions.BasePermission):
    """Starting, cancelling and retrying syncs need ``sync.run_sync`` (bob and alice, not charlie)."""

    message = "You do not have permission to start, cancel or retry syncs (sync.run_sync)."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm(RUN_SYNC))


class ViewChangeLogs(permissions.BasePermission):
    """Reading change logs through another endpoint (an instance's changes) needs their view permission too."""

    message = "You do not have permission to view account changes (accountsync.view_accountchangelog)."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("accountsync.view_accountchangelog"))

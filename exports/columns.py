"""What each export kind contains: the model it reads, its joins and its columns.

Why one table per kind: CSV headers, JSON keys and the admin/API entry points
all come from the same definitions, so a column added here appears everywhere
at once. A kind may turn one database row into several export rows
(``permissions``: one row per privilege, role and capability of a snapshot).

Nothing here reads credentials: the joins stop at the instance (never its
credential), and account attributes go through ``scrub`` so that a key that
looks like a secret (a password hash some adapter might one day keep) is
dropped rather than exported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db.models import Model, QuerySet

from accountsync.coverage import EpisodeCache, LastKnownMarker
from accountsync.effective_read import instance_effective_access
from accountsync.models import AccountChangeLog, AccountPermission, InstanceAccount
from accountsync.selectors import account_last_seen, with_current_snapshot, with_last_seen
from directory.selectors import PERSON_COLUMNS, PERSON_JOINS, person_columns
from findings.models import Finding

# attribute keys never exported, whatever an adapter stored (compared lower-case)
SECRET_KEYS = frozenset(
    {"authentication_string", "password", "additional_password", "rolpassword", "password_hash", "secret", "hash"}
)

Row = dict[str, Any]


def scrub(value: Any) -> Any:
    """A copy of a JSON value without any key that names a secret (at any depth)."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if str(k).lower() not in SECRET_KEYS}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def _snapshot_summary(snapshot: dict[str, Any] | None) -> tuple[list[str], int, int]:
    if not snapshot:
        return [], 0, 0
    return (
        sorted(snapshot.get("capabilities") or []),
        len(snapshot.get("privileges") or []),
        len(snapshot.get("roles") or []),
    )


# --- row builders ---------------------------------------------------------------------


def _account_rows(account: InstanceAccount) -> Iterator[Row]:
    capabilities, n_privileges, n_roles = _snapshot_summary(getattr(account, "current_snapshot", None))
    instance = account.instance
    attributes = scrub(account.attributes or {})
    yield {
        "id": account.pk,
        "instance": instance.name,
        "db_type": instance.db_type,
        "environment": instance.environment,
        "identity": account.identity,
        "username": account.username,
        "host": account.host,
        "kind": account.kind,
        "is_active": account.is_active,
        "is_superuser": account.is_superuser,
        "is_locked": account.is_locked,
        "auth_plugin": attributes.get("auth_plugin") if isinstance(attributes, dict) else None,
        "capabilities": capabilities,
        "privilege_count": n_privileges,
        "role_count": n_roles,
        "first_seen_at": account.first_seen_at,
        "last_seen_at": account_last_seen(account),  # the true last seen, from the ``last_seen`` annotation
        "deactivated_at": account.deactivated_at,
        "attributes": attributes,
        **person_columns(account),  # the person who owns it (directory), from the joined link
    }


class _PermissionRows:
    """One export's permission rows; marks privileges whose scope was unreadable as last known (see coverage.py)."""

    def __init__(self) -> None:
        self.gaps = EpisodeCache()

    def __call__(self, permission: AccountPermission) -> Iterator[Row]:
        # a closed snapshot is marked with the gaps open when it was replaced; the open one with today's
        at = permission.valid_to - timedelta(microseconds=1) if permission.valid_to else None
        return _permission_rows(permission, self.gaps.marker(permission.instance_id, at))


def _permission_rows(permission: AccountPermission, marker: LastKnownMarker | None = None) -> Iterator[Row]:
    """One row per privilege, then one per role held, then one per capability."""
    account, instance = permission.account, permission.instance
    snapshot = permission.snapshot or {}
    base = {
        "instance": instance.name,
        "db_type": instance.db_type,
        "account": account.identity,
        "account_id": account.pk,
    }
    tail = {"valid_from": permission.valid_from}
    for item in snapshot.get("privileges") or []:
        known = marker.mark(item.get("scope") or "") if marker else None
        yield {
            **base,
            "row_type": "privilege",
            "scope": item.get("scope"),
            "privilege": item.get("privilege"),
            "grantable": bool(item.get("grantable")),
            "effect": item.get("effect") or "GRANT",
            **tail,
            "unreadable_since": known.since if known else None,
            "last_read_at": known.last_read_at if known else None,
        }
    for item in snapshot.get("roles") or []:
        yield {
            **base,
            "row_type": "role",
            "scope": "role",
            "privilege": item.get("role"),
            "grantable": bool(item.get("admin_option")),
            "effect": "GRANT",
            **tail,
        }
    for capability in snapshot.get("capabilities") or []:
        yield {
            **base,
            "row_type": "capability",
            "scope": "capability",
            "privilege": capability,
            "grantable": False,
            "effect": "GRANT",
            **tail,
        }


class _EffectiveRows:
    """One export's effective-access rows: each instance's role graph is computed once, for all its accounts.

    Why per instance: what an account can do through roles depends on the snapshots of the
    roles it holds; one query and one pass per instance (accountsync/effective.py computes each
    role's closure once) keeps the export from walking the graph per account.
    """

    def __init__(self) -> None:
        self.instance_id: int | None = None
        self.access: dict[str, list[Any]] = {}

    def __call__(self, permission: AccountPermission) -> Iterator[Row]:
        account, instance = permission.account, permission.instance
        if permission.instance_id != self.instance_id:
            self.instance_id = permission.instance_id
            self.access = instance_effective_access(instance_id=instance.pk, db_type=instance.db_type)
        base = {"instance": instance.name, "db_type": instance.db_type, "account": account.identity}
        for grant in self.access.get(account.identity, []):
            yield {
                **base,
                "account_id": account.pk,
                "scope": grant.scope,
                "privilege": grant.privilege,
                "grantable": grant.grantable,
                "effect": grant.effect,
                "via": " → ".join(grant.via),
                "active": grant.active,
            }


def _finding_rows(finding: Finding) -> Iterator[Row]:
    yield {
        "id": finding.pk,
        "instance": finding.instance.name,
        "db_type": finding.instance.db_type,
        "account": finding.account.identity,
        "account_id": finding.account_id,
        "rule_code": finding.rule_code,
        "severity": finding.severity,
        "is_open": finding.is_open,
        "first_seen_at": finding.first_seen_at,
        "resolved_at": finding.resolved_at,
        "session_id": finding.session_id,
        "detail": scrub(finding.detail),
    }


def _change_log_rows(log: AccountChangeLog) -> Iterator[Row]:
    yield {
        "id": log.pk,
        "detected_at": log.detected_at,
        "instance": log.instance.name,
        "db_type": log.instance.db_type,
        "account": log.account.identity,
        "account_id": log.account_id,
        "change_type": log.change_type,
        "summary": log.summary,
        "session_id": log.session_id,
        "diff": scrub(log.diff),
    }


@dataclass(frozen=True)
class ExportKind:
    """One exportable kind: the model its queryset must be of, how to join it, its columns and rows."""

    name: str
    model: type[Model]
    columns: tuple[str, ...]
    rows: Callable[[Any], Iterator[Row]]
    prepare: Callable[[QuerySet[Any]], QuerySet[Any]]
    # a fresh rows function per export, for kinds that keep per-export state (None: `rows` is used)
    fresh: Callable[[], Callable[[Any], Iterator[Row]]] | None = None


def _prepare_accounts(qs: QuerySet[InstanceAccount]) -> QuerySet[InstanceAccount]:
    # last_seen_at is the last successful sync that saw the account (accountsync.selectors.last_seen_expression),
    # an annotation on the instance join: still one query for the whole export
    return with_current_snapshot(with_last_seen(qs.select_related("instance", *PERSON_JOINS)))


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


KINDS: dict[str, ExportKind] = {
    kind.name: kind
    for kind in (
        ExportKind(
            name="accounts",
            model=InstanceAccount,
            columns=_names(
                "id instance db_type environment identity username host kind is_active is_superuser "
                "is_locked auth_plugin capabilities privilege_count role_count first_seen_at last_seen_at "
                "deactivated_at attributes " + " ".join(PERSON_COLUMNS)
            ),
            rows=_account_rows,
            prepare=_prepare_accounts,
        ),
        ExportKind(
            name="permissions",
            model=AccountPermission,
            columns=_names(
                "instance db_type account account_id row_type scope privilege grantable effect valid_from "
                "unreadable_since last_read_at"
            ),
            rows=_permission_rows,
            prepare=lambda qs: qs.select_related("account", "instance"),
            fresh=_PermissionRows,
        ),
        ExportKind(
            name="effective_access",
            model=AccountPermission,
            columns=_names("instance db_type account account_id scope privilege grantable effect via active"),
            rows=lambda permission: _EffectiveRows()(permission),
            # by instance: each instance's graph is computed once, when its first account comes
            prepare=lambda qs: qs.select_related("account", "instance").order_by("instance_id", "account_id"),
            fresh=_EffectiveRows,
        ),
        ExportKind(
            name="findings",
            model=Finding,
            columns=_names(
                "id instance db_type account account_id rule_code severity is_open first_seen_at "
                "resolved_at session_id detail"
            ),
            rows=_finding_rows,
            prepare=lambda qs: qs.select_related("account", "instance"),
        ),
        ExportKind(
            name="change_logs",
            model=AccountChangeLog,
            columns=_names("id detected_at instance db_type account account_id change_type summary session_id diff"),
            rows=_change_log_rows,
            prepare=lambda qs: qs.select_related("account", "instance"),
        ),
    )
}


def current_permissions(accounts: QuerySet[InstanceAccount]) -> QuerySet[AccountPermission]:
    """The open snapshots of the given accounts: what the ``permissions`` kind exports for an account filter.

    Why a subquery of ids: an admin changelist hands over its filtered account
    queryset; this keeps the export one query instead of loading those ids.
    """
    return AccountPermission.objects.filter(
        valid_to__isnull=True, account__in=accounts.order_by().values("pk")
    ).order_by("instance_id", "account_id")

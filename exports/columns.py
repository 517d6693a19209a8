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

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db.models import F, Model, Q, QuerySet

from accountsync.adapters.base import AccountRecord, Catalog
from accountsync.coverage import EpisodeCache, LastKnownMarker
from accountsync.effective import effective_access
from accountsync.effective_read import MAX_DEPTH, instance_effective_access, record_from_snapshot, settable_memberships
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


# the names a row keyed by account shows, read as columns of its own query (``_named``)
_NAMES = {
    "export_instance": "instance__name",
    "export_db_type": "instance__db_type",
    "export_account": "account__identity",
}


def _named(qs: QuerySet[Any], names: dict[str, str] = _NAMES) -> QuerySet[Any]:
    """``qs`` with the instance's name and type and the account's identity as columns of each row.

    Why not ``select_related``: building an account and an instance object for every finding,
    change-log or effective-access row, to read a few names, cost a fifth of the export's CPU
    per row (#19); the same joins give the values. Any ``select_related`` of the caller's (the admin's
    ``list_select_related``, the API's queryset) is dropped for the same reason.
    """
    if not LEAN_JOINS:
        return qs.select_related("account", "instance")
    return qs.select_related(None).annotate(**{alias: F(path) for alias, path in names.items()})


def _names_of(obj: Any) -> tuple[str, str, str]:
    """(instance name, db type, account identity) of a row read through ``_named`` (or joined, LEAN_JOINS off)."""
    try:
        return obj.export_instance, obj.export_db_type, obj.export_account
    except AttributeError:
        return obj.instance.name, obj.instance.db_type, obj.account.identity


# and, for effective access, what the role graph needs of the account
_EFFECTIVE_NAMES = {
    **_NAMES,
    "export_username": "account__username",
    "export_kind": "account__kind",
    "export_host": "account__host",
}


def _account_of(permission: AccountPermission) -> tuple[str, str, str, str | None]:
    """(identity, username, kind, host) of a permission read through ``_named`` (or joined)."""
    try:
        return permission.export_account, permission.export_username, permission.export_kind, permission.export_host
    except AttributeError:
        account = permission.account
        return account.identity, account.username, account.kind, account.host


# accounts whose effective access is computed together; EFFECTIVE_LAZY off: each instance up front, as before
# #19 (bench/export_first_mb.py's before and per-instance columns)
EFFECTIVE_BATCH = 500
EFFECTIVE_LAZY = True


class _EffectiveRows:
    """One export's effective-access rows, computed from the streamed snapshots a batch of accounts at a time.

    Why batches of the stream and not each instance up front: computing a whole instance before
    its first row (loading every snapshot of it a second time, then every account's closure)
    held the first megabyte of a 5,000-account instance for seconds (#19). A batch uses the
    snapshots the export is reading anyway, plus the roles they hold, loaded the way an
    account's own page loads them (``account_effective_access``: by identity, or by name for
    role accounts, level by level, PUBLIC included) and kept for the rest of the instance, so
    each role is read once per instance and each role's closure once per batch. The answer is
    the one ``instance_effective_access`` gives: an account's effective access depends only on
    its own snapshot and those of the roles it reaches (tests/exports/test_first_megabyte.py).
    """

    def __init__(self) -> None:
        self.instance_id: int | None = None
        self.roles: dict[str, AccountRecord] = {}  # role records reached so far on this instance
        self.searched: set[str] = set()  # names already looked up on this instance
        self.access: dict[str, list[Any]] = {}  # the whole instance (EFFECTIVE_LAZY off: as before #19)

    def __call__(self, permission: AccountPermission) -> Iterator[Row]:
        """One permission's rows, its whole instance computed when its first account comes (the old way)."""
        if permission.instance_id != self.instance_id:
            self.instance_id = permission.instance_id
            _name, db_type, _account = _names_of(permission)
            self.access = instance_effective_access(instance_id=permission.instance_id, db_type=db_type)
        return self._rows(permission, self.access)

    def over(self, permissions: Iterable[AccountPermission]) -> Iterator[Row]:
        """The rows of every permission of the stream, in its order (consecutive ones batched by instance)."""
        if not EFFECTIVE_LAZY:
            for permission in permissions:
                yield from self(permission)
            return
        batch: list[AccountPermission] = []
        for permission in permissions:
            if batch and (permission.instance_id != batch[0].instance_id or len(batch) >= EFFECTIVE_BATCH):
                yield from self._batch(batch)
                batch = []
            batch.append(permission)
        if batch:
            yield from self._batch(batch)

    def _batch(self, batch: list[AccountPermission]) -> Iterator[Row]:
        instance_id = batch[0].instance_id
        _name, db_type, _account = _names_of(batch[0])
        if instance_id != self.instance_id:
            self.instance_id, self.roles, self.searched = instance_id, {}, set()
        accounts = [_account_of(p) for p in batch]
        own = {acc[0]: record_from_snapshot(*acc, p.snapshot or {}) for acc, p in zip(accounts, batch, strict=True)}
        self._reach(instance_id, db_type, own)
        records = list({**self.roles, **own}.values())
        access = effective_access(
            Catalog(accounts=records),
            family=db_type,
            include_public=False,  # as instance_effective_access: PUBLIC's grants are PUBLIC's own
            only=own,
            settable=settable_memberships(records),
        )
        for permission in batch:
            yield from self._rows(permission, access)

    def _reach(self, instance_id: int, db_type: str, own: dict[str, AccountRecord]) -> None:
        """Load (into ``self.roles``) every role the batch's accounts hold, directly or through roles."""
        first = not self.searched
        names = {grant.role for record in own.values() for grant in record.roles}
        for _level in range(MAX_DEPTH):
            held = (*own.values(), *self.roles.values())
            known = {*own, *self.roles} | {r.username for r in held if r.kind == "role"}
            frontier = names - known - self.searched
            if not frontier and not first:
                return
            match = Q(account__identity__in=frontier) | Q(account__kind="role", account__username__in=frontier)
            if first:  # as account_effective_access: PUBLIC's record, once per instance
                public_names = ("public", "PUBLIC") if db_type == "oracle" else ("public",)
                match |= Q(account__identity__in=public_names, account__kind="role")
                self.searched.update(public_names)
                first = False
            self.searched |= frontier
            fields = ("account__identity", "account__username", "account__kind", "account__host", "snapshot")
            fresh = [
                record_from_snapshot(*row)
                for row in AccountPermission.objects.filter(match, instance_id=instance_id, valid_to__isnull=True)
                .order_by("account_id")
                .values_list(*fields)
            ]
            for record in fresh:
                self.roles.setdefault(record.identity, record)
            names = {grant.role for record in fresh for grant in record.roles}

    @staticmethod
    def _rows(permission: AccountPermission, access: dict[str, list[Any]]) -> Iterator[Row]:
        instance, db_type, account = _names_of(permission)
        base = {"instance": instance, "db_type": db_type, "account": account}
        for grant in access.get(account, []):
            yield {
                **base,
                "account_id": permission.account_id,
                "scope": grant.scope,
                "privilege": grant.privilege,
                "grantable": grant.grantable,
                "effect": grant.effect,
                "via": " → ".join(grant.via),
                "active": grant.active,
            }


def _finding_rows(finding: Finding) -> Iterator[Row]:
    instance, db_type, account = _names_of(finding)
    yield {
        "id": finding.pk,
        "instance": instance,
        "db_type": db_type,
        "account": account,
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
    instance, db_type, account = _names_of(log)
    yield {
        "id": log.pk,
        "detected_at": log.detected_at,
        "instance": instance,
        "db_type": db_type,
        "account": account,
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
    # a fresh function of the whole stream of objects, for kinds that look at several at once (effective_access)
    stream: Callable[[], Callable[[Iterable[Any]], Iterator[Row]]] | None = None


# load only the columns of the joined rows that the rows use (off: all, bench/export_first_mb.py's all-columns)
LEAN_JOINS = True


def _joined(qs: QuerySet[Any], *relations: str, keep: tuple[str, ...]) -> QuerySet[Any]:
    """``qs`` with ``relations`` joined, loading of those rows only the ``keep`` fields (``"instance__name"``).

    Why: ``select_related`` loads every column of the joined account and instance, and turning
    their JSON (attributes, options) and timestamps into Python for each exported row cost
    about as much as the row itself; the export's speed is that Python (#19: the first
    megabyte of a million-row export). The exported model's own columns are all kept (other
    readers of a kind, such as exports/retention.py, use them), and a kept list here that
    misses a field the rows read costs a query per row, which the query-count tests catch.
    """
    qs = qs.select_related(*relations)
    if not LEAN_JOINS:
        return qs
    deferred = []
    for relation in relations:
        head, _, rest = relation.partition("__")
        if rest:  # only the first hop is trimmed (the person joins of the accounts kind stay whole)
            continue
        related = qs.model._meta.get_field(head).related_model
        deferred += [
            f"{head}__{f.name}"
            for f in related._meta.concrete_fields
            if not f.primary_key and f"{head}__{f.name}" not in keep
        ]
    return qs.defer(*deferred)


def _prepare_accounts(qs: QuerySet[InstanceAccount]) -> QuerySet[InstanceAccount]:
    # last_seen_at is the last successful sync that saw the account (accountsync.selectors.last_seen_expression),
    # an annotation on the instance join: still one query for the whole export
    joined = _joined(
        qs,
        "instance",
        *PERSON_JOINS,
        keep=("instance__name", "instance__db_type", "instance__environment", "instance__last_success_at"),
    )
    return with_current_snapshot(with_last_seen(joined))


# what the rows of the kinds keyed by account read of the joined account and instance
_ACCOUNT_INSTANCE = ("account__identity", "instance__name", "instance__db_type")


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
            prepare=lambda qs: _joined(qs, "account", "instance", keep=_ACCOUNT_INSTANCE),
            fresh=_PermissionRows,
        ),
        ExportKind(
            name="effective_access",
            model=AccountPermission,
            columns=_names("instance db_type account account_id scope privilege grantable effect via active"),
            rows=lambda permission: _EffectiveRows()(permission),
            # by instance: each instance's roles are read once, as its first accounts come
            prepare=lambda qs: _named(qs, _EFFECTIVE_NAMES).order_by("instance_id", "account_id"),
            fresh=_EffectiveRows,
            stream=lambda: _EffectiveRows().over,
        ),
        ExportKind(
            name="findings",
            model=Finding,
            columns=_names(
                "id instance db_type account account_id rule_code severity is_open first_seen_at "
                "resolved_at session_id detail"
            ),
            rows=_finding_rows,
            prepare=_named,
        ),
        ExportKind(
            name="change_logs",
            model=AccountChangeLog,
            columns=_names("id detected_at instance db_type account account_id change_type summary session_id diff"),
            rows=_change_log_rows,
            prepare=_named,
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

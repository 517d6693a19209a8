"""The two-phase account sync: fetch remotely, then apply locally in one transaction.

Why split fetch and apply: the remote read can take minutes and must never hold
a local transaction or lock open; the apply is short, bulk and atomic per
instance, so a failure leaves the previous picture intact.

The apply runs four phases in one transaction, each its own function:
guard (refuse a catalog that looks like a broken read), inventory (the account
rows), collection (the permission snapshots) and change log (one entry per
account that changed). Rows travel between them as small typed tuples whose
field order is the order of the columns they are inserted into.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext_noop

from accountsync import diff as snapdiff
from accountsync.adapters.base import (
    SCHEMA_VERSION,
    AccountRecord,
    AdapterError,
    Catalog,
    ConnectionTarget,
    CoverageGap,
    ErrorKind,
    GapKind,
    Privilege,
    RoleGrant,
    canonical_json,
    gaps_cover,
    gc_paused,
    get_adapter,
    message_english,
    message_register,
    scrub,
)
from accountsync.bulk import BATCH_SIZE, batches, insert_rows
from accountsync.codec import Prepared, SnapshotCodec, json_text
from accountsync.coverage import episode_dict, result_gaps, unreadable_count
from accountsync.effective_read import record_from_snapshot
from accountsync.facts import SERVER_FACT_KEYS, facts_for_details, unchanged_facts_for_details
from accountsync.models import (
    AccountChangeLog,
    AccountPermission,
    ChangeType,
    CoverageGapEpisode,
    InstanceAccount,
)
from config.db import on_fresh_connection
from config.logging import log_event
from instances.models import Instance, SyncStatus

logger = logging.getLogger(__name__)

MODULE = "accountsync"
# server-wide facts (Oracle's container, PUBLIC's grants, ...): stored once per version, referenced by the details
SERVER_DETAILS = SERVER_FACT_KEYS
ROW_FIELDS = ("username", "host", "kind", "is_superuser", "is_locked", "attributes")


class SyncCancelled(Exception):
    """Raised by a `before_apply` hook to stop a sync before anything is written.

    ``error_kind`` "conflict" (with a message) says the caller lost its claim (its record
    was reaped) rather than being cancelled by a user.
    """

    def __init__(self, message: str = "", *, error_kind: str = "cancelled") -> None:
        super().__init__(message)
        self.error_kind = error_kind


@dataclass
class SyncResult:
    success: bool
    message: str
    synced_count: int = 0
    added_count: int = 0
    modified_count: int = 0
    removed_count: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    error_kind: str | None = None
    # Accounts given a change-log row by this apply, for work that follows a sync without re-reading the log.
    # Not in as_dict(): that dict is stored in the sync records and its shape is fixed.
    changed_account_ids: list[int] = field(default_factory=list)
    # a failure's message code and parameters (accountsync.adapters.base.MESSAGES): the admin renders
    # them in the reader's language; `message` stays the English text. Not in as_dict() (see above).
    message_code: str = ""
    message_params: dict[str, str] = field(default_factory=dict)

    @property
    def coverage_gaps(self) -> int:
        """How many scopes this sync could not read (0: it read everything it was asked to read).

        Scopes the options leave out (out of scope) are listed in the details but are no gap:
        leaving a database out is a choice, not a failure to see it.
        """
        return unreadable_count(result_gaps(self.details))

    def as_dict(self) -> dict[str, Any]:
        """The seed's result dict, plus `error_kind` for classified failures."""
        return {
            "success": self.success,
            "message": self.message,
            "synced_count": self.synced_count,
            "added_count": self.added_count,
            "modified_count": self.modified_count,
            "removed_count": self.removed_count,
            "details": self.details,
            "error_kind": self.error_kind,
        }


# How many of the accounts a tripped guard would have deactivated its result lists (the count is always whole).
GUARD_LISTED_MAX = 1000


GUARD_EMPTY = message_register(
    "guard_empty",
    gettext_noop(
        "the server returned no accounts; refusing to deactivate %(active)s accounts. Check the monitoring "
        "account's catalog privileges, or rerun with force."
    ),
)
GUARD_RATIO = message_register(
    "guard_ratio",
    gettext_noop(
        "this sync would deactivate %(removed)s of %(active)s active accounts (more than "
        "WHALEFALL_MAX_REMOVAL_RATIO=%(ratio)s); nothing was changed. Check the monitoring account's "
        "privileges, or rerun with force if the removal is real."
    ),
)
SYNC_CANCELLED = message_register(
    "sync_cancelled", gettext_noop("sync cancelled before applying; nothing was written.")
)
SYNC_INTERNAL = message_register(
    "sync_internal",
    gettext_noop("internal error during sync (%(error)s); see the server log and report it."),
)


class _GuardTripped(Exception):
    def __init__(
        self, instance: Instance, code: str, params: dict[str, str], *, removed: list[ExistingAccount], active: int
    ) -> None:
        super().__init__(f"{instance.name}: {message_english(code, params)}")
        self.code = code
        self.params = params
        self.removed = removed
        self.active = active

    def details(self) -> dict[str, Any]:
        """What the refused sync would have deactivated: the admin's "accepting the removals" page lists it."""
        identities = sorted(account.identity for account in self.removed)
        return {
            "guard": {
                "would_deactivate": len(identities),
                "active": self.active,
                "identities": identities[:GUARD_LISTED_MAX],
            }
        }


class _Fenced(Exception):
    """The caller lost its lease or its record while fetching: the apply rolls back."""


class ApplyFence(Protocol):
    """What the caller of an apply (sync's lease and record) checks and writes inside its transaction."""

    def check(self) -> str:
        """Lock and verify the caller's claim; a non-empty reason refuses the apply."""

    def commit(self, result: SyncResult) -> None:
        """Write the caller's outcome for ``result`` in the apply's transaction; raise to roll back."""

    def commit_unchanged(self, result: SyncResult, *, catalog_digest: str) -> bool:
        """An unchanged catalog's ``check`` and ``commit`` at once, while the instance still has ``catalog_digest``.

        False refuses, having written nothing; the apply then runs ``check`` and ``commit`` to tell why.
        """


# --- rows ----------------------------------------------------------------------------
# Tuples, not models: at 10,000 accounts per-row model instances cost more than the SQL.
# The insert rows' fields are named and ordered as the columns they fill, so they go to
# insert_rows as they are.


class ExistingAccount(NamedTuple):
    """An account row as stored before this apply."""

    id: int
    identity: str
    is_active: bool
    username: str
    host: str | None
    kind: str
    is_superuser: bool
    is_locked: bool
    attributes: dict[str, Any]

    def row_values(self) -> dict[str, Any]:
        """The ROW_FIELDS, shaped as `_row_values` builds them from a record, so the two compare with ==."""
        return {
            "username": self.username,
            "host": self.host,
            "kind": self.kind,
            "is_superuser": self.is_superuser,
            "is_locked": self.is_locked,
            "attributes": self.attributes,
        }


class OpenSnapshot(NamedTuple):
    """An account's current snapshot (valid_to null): what a new one is compared with and closes."""

    id: int
    account_id: int
    digest: str


class NewAccountRow(NamedTuple):
    """An account row to insert, values already in database form."""

    instance: int
    identity: str
    first_seen_at: Any
    last_seen_at: Any
    is_active: bool
    username: str
    host: str | None
    kind: str
    is_superuser: bool
    is_locked: bool
    attributes: str


class SnapshotRow(NamedTuple):
    """A permission snapshot row to insert, values already in database form."""

    account: int
    instance: int
    snapshot: str
    digest: str
    schema_version: int
    collected_at: Any
    valid_from: Any


class ChangeRow(NamedTuple):
    """A change-log row to insert, values already in database form."""

    instance: int
    account: int
    session_id: Any
    change_type: str
    diff: str
    summary: str
    detected_at: Any


ACCOUNT_COLUMNS = NewAccountRow._fields
PERMISSION_COLUMNS = SnapshotRow._fields
CHANGE_COLUMNS = ChangeRow._fields


class DetectedChange(NamedTuple):
    """A snapshot change found by the collection, before the change log words it."""

    account_id: int
    identity: str
    change_type: str
    ops: list[dict[str, Any]] | str  # the diff operations, or their JSON text when the codec built it
    summary: str  # the operations in one line, without the "added <identity>: " lead


# --- phase outcomes ------------------------------------------------------------------


@dataclass(slots=True)
class Stamp:
    """This apply's moment and session, adapted once for every raw insert."""

    now: datetime
    db_now: Any
    session: Any

    @classmethod
    def of(cls, now: datetime, session_id: uuid.UUID | None) -> Stamp:
        session = AccountChangeLog._meta.get_field("session_id").get_db_prep_save(session_id, connection)
        return cls(now, connection.ops.adapt_datetimefield_value(now), session)


@dataclass(slots=True)
class InventoryOutcome:
    account_ids: dict[str, int]  # identity -> id, every stored account and every one just added
    added_ids: set[int]
    reactivated_ids: set[int]
    rows_updated: int  # existing rows rewritten, reactivations included


@dataclass(slots=True)
class CollectionOutcome:
    snapshot_account_ids: set[int]  # accounts that got a new snapshot
    changes: list[DetectedChange]


# The change-log entries the collection's result counts by type.
_COUNTED_CHANGES = (
    ChangeType.PRIVILEGES_CHANGED.value,
    ChangeType.ATTRIBUTES_CHANGED.value,
    ChangeType.REACTIVATED.value,
)


@dataclass(slots=True)
class ApplyOutcome:
    inventory: dict[str, int]
    collection: dict[str, int]
    changed_account_ids: list[int]
    coverage: dict[str, Any]


def _ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


def _row_values(record: AccountRecord, attributes: dict[str, Any]) -> dict[str, Any]:
    """The account row's fields; `attributes` is the snapshot's already canonical copy."""
    return {
        "username": record.username,
        "host": record.host,
        "kind": record.kind,
        "is_superuser": bool(record.is_superuser),
        "is_locked": bool(record.is_locked),
        "attributes": attributes,
    }


def _row_changed(old: dict[str, Any], values: dict[str, Any]) -> bool:
    """Compare with the stored row; attributes through a JSON round trip only when they differ as given.

    Why: adapters may hand non-JSON values (dates) that the database stores as text;
    the round trip is what makes them comparable, and it is paid only by rows that differ.
    """
    if old == values:
        return False
    if old["attributes"] != values["attributes"]:
        values["attributes"] = json.loads(canonical_json(values["attributes"]))
    return old != values


def _log_apply(
    instance: Instance, session_id: uuid.UUID | None, level: int, message: str, phase: str, started: float | None
) -> None:
    """One log line of the apply; `started` None leaves the duration out (nothing was timed)."""
    context: dict[str, Any] = {
        "module": MODULE,
        "operation": "account_sync_apply",
        "instance_id": instance.pk,
        "db_type": instance.db_type,
        "session_id": session_id,
        "phase": phase,
    }
    if started is not None:
        context["duration_ms"] = _ms(started)
    log_event(logger, level, message, **context)


# --- the apply -----------------------------------------------------------------------


@gc_paused()  # bulk: see gc_paused
def account_sync_apply(
    *,
    instance: Instance,
    catalog: Catalog,
    session_id: uuid.UUID | None = None,
    force: bool = False,
    fence: ApplyFence | None = None,
) -> SyncResult:
    """Apply a fetched catalog: inventory, then collection, in one atomic block.

    ``fence`` (the caller's lease and record) is checked first inside that block and
    its ``commit`` writes the caller's outcome in it, so the data and the history of
    who applied it commit together or not at all.

    Query cost is O(1) + O(changed / BATCH_SIZE): existing accounts and open
    snapshot digests are read in two queries; old snapshot JSON is read only
    for accounts that may have changed. An unchanged account costs no write,
    not even a `last_seen_at` bump (see InstanceAccount).
    Returns success=False with error_kind "guard" (nothing written) when the
    catalog is empty or would deactivate too many accounts, unless `force`.
    """
    started = time.monotonic()
    if catalog.unchanged:
        return _apply_unchanged_catalog(instance, catalog, session_id, started, fence)
    now = timezone.now()
    records: dict[str, AccountRecord] = {}
    for record in catalog.accounts:
        records.setdefault(record.identity, record)
    gaps = _distinct_gaps(catalog.coverage)

    try:
        with transaction.atomic():
            _fence_check(instance, fence)
            outcome = _apply(instance, catalog, records, gaps, session_id, force, now)
            # what this apply is the result of; an empty digest (adapter without one) disables the shortcut
            if catalog.source_digest != instance.catalog_digest:
                Instance.objects.filter(pk=instance.pk).update(catalog_digest=catalog.source_digest)
            result = _applied_result(instance, catalog, records, outcome)
            result.details.update(
                facts_for_details(
                    instance_id=instance.pk, catalog_details=catalog.details, now=now, session_id=session_id
                )
            )
            if fence is not None:
                fence.commit(result)
        instance.catalog_digest = catalog.source_digest
    except _GuardTripped as exc:
        _log_apply(instance, session_id, logging.WARNING, str(exc), "guard", started)
        return SyncResult(
            success=False,
            message=str(exc),
            error_kind="guard",
            synced_count=len(records),
            details=exc.details(),
            message_code=exc.code,
            message_params=exc.params,
        )
    except _Fenced as exc:
        _log_apply(instance, session_id, logging.WARNING, str(exc), "fence", started)
        return SyncResult(success=False, message=str(exc), error_kind="conflict")
    _log_apply(instance, session_id, logging.INFO, result.message, "apply", started)
    return result


def _fence_check(instance: Instance, fence: ApplyFence | None) -> None:
    if fence is None:
        return
    reason = fence.check()
    if reason:
        raise _Fenced(f"{instance.name}: {reason}; nothing was written.")


def _distinct_gaps(gaps: list[CoverageGap]) -> list[CoverageGap]:
    """One gap per (scope, kind), the first an adapter gave; scopes cut to what an episode row holds."""
    seen: dict[tuple[str, str], CoverageGap] = {}
    for gap in gaps:
        seen.setdefault((gap.scope[:GAP_SCOPE_MAX], gap.kind), gap)
    return list(seen.values())


GAP_SCOPE_MAX = CoverageGapEpisode._meta.get_field("scope").max_length


def _gaps_message(coverage: dict[str, Any]) -> str:
    """ " — completed with gaps: …" naming the scopes, or "" when the sync saw everything."""
    gaps = coverage.get("gaps") or []
    if not gaps:
        return ""
    unreadable = [g["scope"] for g in gaps if g["kind"] == GapKind.UNREADABLE]
    dropped = [g["scope"] for g in gaps if g["kind"] == GapKind.OUT_OF_SCOPE]
    parts = []
    if unreadable:
        parts.append(
            f"{len(unreadable)} unreadable ({', '.join(unreadable[:5])}{', …' if len(unreadable) > 5 else ''})"
        )
    if dropped:
        parts.append(f"{len(dropped)} out of scope ({', '.join(dropped[:5])}{', …' if len(dropped) > 5 else ''})")
    if not unreadable:
        return f"; not audited: {parts[0]}"
    return "; completed with gaps: " + ", ".join(parts) + "; last known grants kept where unreadable"


def _applied_result(
    instance: Instance, catalog: Catalog, records: dict[str, AccountRecord], outcome: ApplyOutcome
) -> SyncResult:
    inventory, collection = outcome.inventory, outcome.collection
    return SyncResult(
        success=True,
        message=(
            f"{instance.name}: synced {len(records)} accounts "
            f"({inventory['added']} added, {collection['modified']} modified, {inventory['removed']} removed)"
            + _gaps_message(outcome.coverage)
        ),
        synced_count=len(records),
        added_count=inventory["added"],
        modified_count=collection["modified"],
        removed_count=inventory["removed"],
        details={
            "inventory": inventory,
            "collection": collection,
            "coverage": outcome.coverage,
            # server-wide facts that belong to no account: stored apart (account_sync_apply), referenced here
        },
        changed_account_ids=outcome.changed_account_ids,
    )


def _apply_unchanged_catalog(
    instance: Instance, catalog: Catalog, session_id: uuid.UUID | None, started: float, fence: ApplyFence | None
) -> SyncResult:
    """The adapter saw the rows of the last applied sync: report what is stored, or refuse if that moved.

    The usual case is the fence's ``commit_unchanged``: the reads of what is stored, then one
    statement that both fences and records the outcome (why that is safe: its docstring). Only
    when it refuses does the fenced transaction below run, to find out and report why.
    """
    if fence is not None and catalog.source_digest:
        result = _unchanged_result(instance, catalog)
        if fence.commit_unchanged(result, catalog_digest=catalog.source_digest):
            _log_apply(instance, session_id, logging.INFO, result.message, "apply", started)
            return result
    try:
        # nothing is written without a fence: then no transaction either (two reads)
        with transaction.atomic() if fence is not None else contextlib.nullcontext():
            _fence_check(instance, fence)
            result = _apply_unchanged(instance, catalog, session_id)
            if result is not None and fence is not None:
                fence.commit(result)
    except _Fenced as exc:
        _log_apply(instance, session_id, logging.WARNING, str(exc), "fence", started)
        return SyncResult(success=False, message=str(exc), error_kind="conflict")
    if result is not None:
        _log_apply(instance, session_id, logging.INFO, result.message, "apply", started)
        return result
    message = (
        f"{instance.name}: the server's catalog is unchanged, but another sync was applied meanwhile; "
        "nothing was written, sync again."
    )
    _log_apply(instance, session_id, logging.WARNING, message, "apply", None)
    return SyncResult(success=False, message=message, error_kind="conflict")


def _apply_unchanged(instance: Instance, catalog: Catalog, session_id: uuid.UUID | None) -> SyncResult | None:
    """The rows read equal those of the last applied sync: nothing to write; report what is stored.

    The stored digest is re-read here, so a sync applied by someone else in between
    (another digest) is never mistaken for ours; None then, and the caller refuses.
    """
    stored = Instance.objects.filter(pk=instance.pk).values_list("catalog_digest", flat=True).first()
    if not catalog.source_digest or stored != catalog.source_digest:
        return None
    return _unchanged_result(instance, catalog)


def _unchanged_result(instance: Instance, catalog: Catalog) -> SyncResult:
    """What is stored, as the result of a sync whose catalog is unchanged (reads only)."""
    active = InstanceAccount.objects.filter(instance=instance, is_active=True).count()
    inventory = {
        "seen": active,
        "active_before": active,
        "added": 0,
        "removed": 0,
        "reactivated": 0,
        "updated": 0,
        "catalog_unchanged": True,
    }
    collection = {
        "processed": active,
        "unchanged": active,
        "modified": 0,
        "snapshots_written": 0,
        "privileges_changed": 0,
        "attributes_changed": 0,
        "reactivated": 0,
    }
    coverage = {"gaps": _open_gaps(instance), "opened": [], "closed": []}
    return SyncResult(
        success=True,
        message=f"{instance.name}: synced {active} accounts (catalog unchanged since the last sync: nothing written)"
        + _gaps_message(coverage),
        synced_count=active,
        details={
            "inventory": inventory,
            "collection": collection,
            "coverage": coverage,
            **unchanged_facts_for_details(instance_id=instance.pk, catalog_details=catalog.details),
        },
    )


def _apply(
    instance: Instance,
    catalog: Catalog,
    records: dict[str, AccountRecord],
    gaps: list[CoverageGap],
    session_id: uuid.UUID | None,
    force: bool,
    now: datetime,
) -> ApplyOutcome:
    """The four phases, in the order their reads depend on each other's writes.

    Each account's canonical snapshot, its text and digest are built once (after the
    guard, which must not pay for them) and serve both the inventory and the collection;
    the codec encodes each distinct privilege/role/capability set once (see accountsync/codec.py).
    """
    existing = {
        account.identity: account
        for account in map(
            ExistingAccount._make,
            InstanceAccount.objects.filter(instance=instance).values_list(*ExistingAccount._fields),
        )
    }
    active_before = sum(1 for account in existing.values() if account.is_active)
    carried = _carry_forward(instance, catalog, records, existing, gaps)
    removed = _guard(instance, existing, records, active_before, force)

    codec = SnapshotCodec()
    prepared = {identity: codec.prepare(record) for identity, record in records.items()}
    stamp = Stamp.of(now, session_id)
    inventory = _inventory(instance, records, prepared, existing, removed, stamp)
    collection = _collection(instance, prepared, inventory, codec, stamp, gaps, carried.snapshots)
    changes = _change_log(instance, collection.changes, inventory, removed, stamp)
    coverage = _coverage(instance, gaps, stamp, session_id)

    # an account is modified when something about it changed (an entry), not when only its stored form did
    modified = {
        change.account_id for change in collection.changes if change.account_id not in inventory.added_ids
    } | inventory.reactivated_ids
    added = len(inventory.added_ids)
    counted = dict.fromkeys(_COUNTED_CHANGES, 0)
    for change in changes:
        if change.change_type in counted:
            counted[change.change_type] += 1
    return ApplyOutcome(
        inventory={
            "seen": len(records),
            "active_before": active_before,
            "added": added,
            "removed": len(removed),
            "reactivated": len(inventory.reactivated_ids),
            "updated": inventory.rows_updated - len(inventory.reactivated_ids),
            **({"carried": len(carried.identities)} if carried.identities else {}),
        },
        collection={
            "processed": len(records),
            "unchanged": len(records) - added - len(modified),
            "modified": len(modified),
            "snapshots_written": len(collection.snapshot_account_ids),
            "privileges_changed": counted[ChangeType.PRIVILEGES_CHANGED.value],
            "attributes_changed": counted[ChangeType.ATTRIBUTES_CHANGED.value],
            "reactivated": counted[ChangeType.REACTIVATED.value],
        },
        changed_account_ids=[change.account for change in changes],
        coverage=coverage,
    )


@dataclass(slots=True)
class CarryOutcome:
    identities: list[str]  # stored accounts kept whole: they live inside a scope this fetch could not read
    snapshots: dict[int, dict[str, Any]]  # account id -> open snapshot, read once for the carry and the collection


def _carry_forward(
    instance: Instance,
    catalog: Catalog,
    records: dict[str, AccountRecord],
    existing: dict[str, ExistingAccount],
    gaps: list[CoverageGap],
) -> CarryOutcome:
    """Put the last known state of what lies in unreadable scopes back into the catalog, before anything is compared.

    "Could not read" is never "revoked". An active account that exists only inside an unreadable
    scope (`Catalog.account_scope`: a SQL Server database's contained user or role, an Oracle PDB's
    local user) is kept whole from its open snapshot: no deactivation, no change entry, its findings
    stay. The fetched accounts get back their last known grants in those scopes and their memberships
    of roles that live there. Then the catalog is finalized again, so the capabilities those grants
    give (db_owner of a TRUSTWORTHY database, a role held there) are the adapter's own answer over the
    whole picture rather than dropped. Once the scope is read again, what is read is compared with
    what was known: only real differences become changes.
    """
    unreadable = [gap for gap in gaps if gap.kind == GapKind.UNREADABLE]
    if not unreadable or not existing:
        return CarryOutcome([], {})
    ids = [account.id for account in existing.values() if account.is_active]
    snapshots: dict[int, dict[str, Any]] = {}
    for batch in batches(ids):
        snapshots.update(
            AccountPermission.objects.filter(account_id__in=batch, valid_to__isnull=True).values_list(
                "account_id", "snapshot"
            )
        )
    inside = {
        identity: account
        for identity, account in existing.items()
        if account.is_active
        and (scope := catalog.account_scope(identity, account.kind, account.attributes))
        and gaps_cover(unreadable, scope)
    }
    for identity, account in inside.items():
        snapshot = snapshots.get(account.id) or {"attributes": account.attributes}
        record = record_from_snapshot(identity, account.username, account.kind, account.host, snapshot)
        record.is_superuser, record.is_locked = account.is_superuser, account.is_locked
        records[identity] = record  # replaces what the fetch could only guess (a database's empty public role)
    merged = bool(inside)
    for identity, record in records.items():
        stored = existing.get(identity)
        if identity in inside or stored is None or not stored.is_active or not (old := snapshots.get(stored.id)):
            continue
        merged = _merge_last_known(record, old, unreadable, inside) or merged
        attributes = catalog.carry_attributes(record.attributes, old.get("attributes") or {}, unreadable)
        if attributes != record.attributes:
            record.attributes = attributes
            merged = True
    if merged:
        catalog.accounts = list(records.values())
        catalog.finalize()
    return CarryOutcome(sorted(inside), snapshots)


def _merge_last_known(
    record: AccountRecord, old: dict[str, Any], unreadable: list[CoverageGap], inside: dict[str, ExistingAccount]
) -> bool:
    """Give a fetched account back its last known grants in unreadable scopes and roles that live there; True if any."""
    held = {(p.scope, p.privilege.upper()) for p in record.privileges}
    extra = [
        Privilege(p["scope"], p["privilege"], bool(p.get("grantable")), p.get("effect") or "GRANT")
        for p in old.get("privileges") or []
        if (p["scope"], p["privilege"]) not in held and gaps_cover(unreadable, p["scope"])
    ]
    names = {grant.role for grant in record.roles}
    roles = [
        RoleGrant(r["role"], bool(r.get("admin_option")), bool(r.get("default", True)))
        for r in old.get("roles") or []
        if r["role"] not in names and r["role"] in inside
    ]
    record.privileges += extra
    record.roles += roles
    if any(p.grantable and p.effect == "GRANT" for p in extra):
        record.capabilities.add("GRANT_ADMIN")  # a kept grant option still is one (adapters derive it when reading)
    return bool(extra or roles)


def _guard(
    instance: Instance,
    existing: dict[str, ExistingAccount],
    records: dict[str, AccountRecord],
    active_before: int,
    force: bool,
) -> list[ExistingAccount]:
    """The active accounts the catalog no longer lists; refused when that looks like a broken read, not removals.

    An empty catalog or a mass removal is far more often a monitoring account that lost
    its catalog privileges than a real purge; `force` is the operator saying it is real.
    """
    removed = [account for identity, account in existing.items() if account.is_active and identity not in records]
    ratio = float(settings.WHALEFALL_MAX_REMOVAL_RATIO)
    if force:
        return removed
    if not records:
        raise _GuardTripped(
            instance,
            GUARD_EMPTY,
            {"active": str(active_before)},
            removed=removed,
            active=active_before,
        )
    if active_before and len(removed) / active_before > ratio:
        raise _GuardTripped(
            instance,
            GUARD_RATIO,
            {"removed": str(len(removed)), "active": str(active_before), "ratio": f"{ratio:g}"},
            removed=removed,
            active=active_before,
        )
    return removed


def _inventory(
    instance: Instance,
    records: dict[str, AccountRecord],
    prepared: dict[str, Prepared],
    existing: dict[str, ExistingAccount],
    removed: list[ExistingAccount],
    stamp: Stamp,
) -> InventoryOutcome:
    """Insert new accounts, rewrite changed or returning ones, deactivate removed ones (closing their snapshots).

    New rows are inserted raw (the bulk of a first sync); changed rows go through
    bulk_update, which is rare enough that the ORM's cost does not matter.
    """
    db_now = stamp.db_now
    new_rows: list[NewAccountRow] = []
    updated: list[InstanceAccount] = []
    reactivated_ids: set[int] = set()
    for identity, record in records.items():
        stored = existing.get(identity)
        if stored is None:
            new_rows.append(
                NewAccountRow(
                    instance.pk,
                    identity,
                    db_now,
                    db_now,
                    True,
                    record.username,
                    record.host,
                    str(record.kind),
                    bool(record.is_superuser),
                    bool(record.is_locked),
                    prepared[identity].attributes_text,
                )
            )
            continue
        values = _row_values(record, prepared[identity].snapshot["attributes"])
        if stored.is_active and not _row_changed(stored.row_values(), values):
            continue
        if not stored.is_active:
            reactivated_ids.add(stored.id)
        values["attributes"] = json.loads(canonical_json(values["attributes"]))
        updated.append(
            InstanceAccount(id=stored.id, is_active=True, deactivated_at=None, last_seen_at=stamp.now, **values)
        )

    insert_rows(InstanceAccount, ACCOUNT_COLUMNS, new_rows)
    account_ids = {identity: account.id for identity, account in existing.items()}
    added_ids = _new_account_ids(instance, existing, account_ids) if new_rows else set()
    if updated:
        InstanceAccount.objects.bulk_update(
            updated, ["is_active", "deactivated_at", "last_seen_at", *ROW_FIELDS], batch_size=BATCH_SIZE
        )
    # a removed account was last seen by the last successful sync before this one (it listed it)
    seen: dict[str, Any] = {"last_seen_at": instance.last_success_at} if instance.last_success_at else {}
    for batch in batches([account.id for account in removed]):
        InstanceAccount.objects.filter(id__in=batch).update(is_active=False, deactivated_at=stamp.now, **seen)
        AccountPermission.objects.filter(account_id__in=batch, valid_to__isnull=True).update(valid_to=stamp.now)
    return InventoryOutcome(account_ids, added_ids, reactivated_ids, len(updated))


def _new_account_ids(instance: Instance, existing: dict[str, ExistingAccount], account_ids: dict[str, int]) -> set[int]:
    """Record the ids of the accounts just inserted in `account_ids`; return them.

    One SELECT for all of them: portable (MySQL has no RETURNING) and cheaper than per-batch lookups.
    """
    added_ids: set[int] = set()
    for pk, identity in InstanceAccount.objects.filter(instance=instance).values_list("id", "identity"):
        if identity not in existing:
            account_ids[identity] = pk
            added_ids.add(pk)
    return added_ids


def _collection(
    instance: Instance,
    prepared: dict[str, Prepared],
    inventory: InventoryOutcome,
    codec: SnapshotCodec,
    stamp: Stamp,
    gaps: list[CoverageGap],
    known_snapshots: dict[int, dict[str, Any]] | None = None,
) -> CollectionOutcome:
    """Write a new snapshot for every account whose permissions moved (closing the old one); say what moved.

    Only accounts whose digest differs from the open snapshot's, or all of them while part
    of the catalog is unreadable (the old grants there are carried forward), have their old
    snapshot read and diffed; the rest cost nothing beyond the one query for open digests.
    A snapshot whose stored form changed while nothing in it did (a carried grant, a scope
    no longer audited, an older shape) is written without a change entry.
    """
    carrying = any(gap.kind == GapKind.UNREADABLE for gap in gaps)
    account_ids, added_ids = inventory.account_ids, inventory.added_ids
    open_rows = {
        row.account_id: row
        for row in map(
            OpenSnapshot._make,
            AccountPermission.objects.filter(instance=instance, valid_to__isnull=True).values_list(
                *OpenSnapshot._fields
            ),
        )
    }
    candidates: dict[str, Prepared] = {}
    for identity, item in prepared.items():
        current = open_rows.get(account_ids[identity])
        if current is not None and current.digest == item.digest and not carrying:
            continue
        candidates[identity] = item
    old_snapshots: dict[int, dict[str, Any]] = dict(known_snapshots or {})
    needed = [
        open_rows[account_ids[i]].id
        for i in candidates
        if account_ids[i] in open_rows and account_ids[i] not in old_snapshots
    ]
    for batch in batches(needed):
        old_snapshots.update(AccountPermission.objects.filter(id__in=batch).values_list("account_id", "snapshot"))

    to_close: list[int] = []
    new_rows: list[SnapshotRow] = []
    changes: list[DetectedChange] = []
    db_now = stamp.db_now
    for identity, item in candidates.items():
        account_id = account_ids[identity]
        current = open_rows.get(account_id)
        if current is None and account_id in added_ids:
            # the bulk of a first sync: nothing to carry forward or compare, the codec has the pieces
            new_rows.append(
                SnapshotRow(account_id, instance.pk, item.text, item.digest, SCHEMA_VERSION, db_now, db_now)
            )
            ops_text, summary = codec.first_seen_diff(item)
            changes.append(DetectedChange(account_id, identity, ChangeType.ADDED, ops_text, summary))
            continue
        # What is diffed must equal what is stored: attributes that are not plain JSON (dates) take a round trip.
        snapshot, digest, text = codec.stored_snapshot(item), item.digest, item.text
        old = old_snapshots.get(account_id)
        merged = snapdiff.carry_forward(old, snapshot, gaps)
        if merged is not snapshot:
            snapshot, digest, text = merged, snapdiff.digest(merged), canonical_json(merged)
        if current is not None and current.digest == digest:
            continue
        if current is not None:
            to_close.append(current.id)
        version = snapshot.get("schema_version", 1)
        new_rows.append(SnapshotRow(account_id, instance.pk, text, digest, version, db_now, db_now))
        ops = snapdiff.diff_snapshots(snapdiff.without_out_of_scope(old, gaps), snapshot)
        if not ops and account_id not in added_ids:
            continue  # nothing an auditor would call a change: no entry (an empty diff is never logged)
        changes.append(
            DetectedChange(account_id, identity, _change_type(account_id, ops, inventory), ops, snapdiff.summarize(ops))
        )

    for batch in batches(to_close):
        AccountPermission.objects.filter(id__in=batch).update(valid_to=stamp.now)
    insert_rows(AccountPermission, PERMISSION_COLUMNS, new_rows)
    return CollectionOutcome({row.account for row in new_rows}, changes)


def _open_gaps(instance: Instance) -> list[dict[str, Any]]:
    """The instance's open coverage episodes, as the result and the record show them."""
    return [
        episode_dict(row)
        for row in CoverageGapEpisode.objects.filter(instance=instance, closed_at__isnull=True).order_by(
            "scope", "kind"
        )
    ]


def _coverage(
    instance: Instance, gaps: list[CoverageGap], stamp: Stamp, session_id: uuid.UUID | None
) -> dict[str, Any]:
    """Open an episode for each gap first seen now, close those read again; what this sync could not see.

    Why episodes: "nc_sales unreadable since …" and its return are two instance-level
    events, whatever the number of accounts; the rows are the coverage history.
    """
    current = {(gap.scope[:GAP_SCOPE_MAX], gap.kind): gap for gap in gaps}
    open_rows = {
        (row.scope, row.kind): row
        for row in CoverageGapEpisode.objects.filter(instance=instance, closed_at__isnull=True)
    }
    opened: list[CoverageGapEpisode] = []
    changed: list[CoverageGapEpisode] = []
    for key, gap in current.items():
        row = open_rows.get(key)
        if row is None:
            opened.append(
                CoverageGapEpisode(
                    instance=instance,
                    scope=key[0],
                    kind=gap.kind,
                    inclusive=gap.inclusive,
                    reason=gap.reason,
                    fix=gap.fix,
                    opened_at=stamp.now,
                    # the last successful sync before this one read it (or this gap would be open already)
                    last_read_at=instance.last_success_at if gap.kind == GapKind.UNREADABLE else None,
                    opened_session_id=session_id,
                )
            )
        elif (row.reason, row.fix, row.inclusive) != (gap.reason, gap.fix, gap.inclusive):
            row.reason, row.fix, row.inclusive = gap.reason, gap.fix, gap.inclusive
            changed.append(row)
    closed = [row for key, row in open_rows.items() if key not in current]
    if opened:
        CoverageGapEpisode.objects.bulk_create(opened)
    if changed:
        CoverageGapEpisode.objects.bulk_update(changed, ["reason", "fix", "inclusive"])
    if closed:
        CoverageGapEpisode.objects.filter(pk__in=[row.pk for row in closed]).update(
            closed_at=stamp.now, closed_session_id=session_id
        )
    for row in opened:
        _log_gap(instance, session_id, f"{instance.name}: {row.scope} {row.kind} since now ({row.reason})", "opened")
    for row in closed:
        _log_gap(
            instance,
            session_id,
            f"{instance.name}: {row.scope} read again ({row.kind} since {row.opened_at})",
            "closed",
        )
    rows = [*[r for k, r in open_rows.items() if k in current], *opened]
    return {
        "gaps": [episode_dict(row) for row in sorted(rows, key=lambda r: (r.scope, r.kind))],
        # what the coverage alerts tell: scopes lost from sight and seen again (leaving a scope out is not news)
        "opened": sorted(row.scope for row in opened if row.kind == GapKind.UNREADABLE),
        "closed": sorted(row.scope for row in closed if row.kind == GapKind.UNREADABLE),
    }


def _log_gap(instance: Instance, session_id: uuid.UUID | None, message: str, what: str) -> None:
    log_event(
        logger,
        logging.WARNING if what == "opened" else logging.INFO,
        message,
        module=MODULE,
        operation="coverage",
        instance_id=instance.pk,
        db_type=instance.db_type,
        session_id=session_id,
        phase=f"coverage_{what}",
    )


def _change_type(account_id: int, ops: list[dict[str, Any]], inventory: InventoryOutcome) -> str:
    """What a snapshot change is logged as: the account's arrival or return outranks what moved in it."""
    if account_id in inventory.added_ids:
        return ChangeType.ADDED
    if account_id in inventory.reactivated_ids:
        return ChangeType.REACTIVATED
    return snapdiff.classify(ops) or snapdiff.ATTRIBUTES_CHANGED


# The lead of an entry whose account came, came back or went: "<verb> <identity>", then ": <summary>" if any.
# Keyed by plain values: change types arrive both as ChangeType members and as diff.classify()'s strings.
_LIFECYCLE_VERBS = {
    ChangeType.ADDED.value: "added",
    ChangeType.REACTIVATED.value: "reactivated",
    ChangeType.REMOVED.value: "removed",
}


def _change_log(
    instance: Instance,
    detected: list[DetectedChange],
    inventory: InventoryOutcome,
    removed: list[ExistingAccount],
    stamp: Stamp,
) -> list[ChangeRow]:
    """One entry per account that changed: the collection's, returns without a new snapshot, removals.

    A reactivated account whose snapshot was not closed at removal (older data) and did
    not move still gets its entry: its return is a change even when its grants are not.
    """
    logged = {change.account_id for change in detected}
    returned: list[DetectedChange] = []
    if missing := inventory.reactivated_ids - logged:
        identities = {account_id: identity for identity, account_id in inventory.account_ids.items()}
        returned = [
            DetectedChange(account_id, identities[account_id], ChangeType.REACTIVATED, [], "") for account_id in missing
        ]
    gone = [DetectedChange(account.id, account.identity, ChangeType.REMOVED, [], "") for account in removed]
    rows = []
    for change in (*detected, *returned, *gone):
        change_type = str(change.change_type)
        verb = _LIFECYCLE_VERBS.get(change_type)
        summary = change.summary
        if verb is not None:
            summary = f"{verb} {change.identity}" + (f": {summary}" if summary else "")
        ops = change.ops if isinstance(change.ops, str) else json_text(change.ops)
        rows.append(ChangeRow(instance.pk, change.account_id, stamp.session, change_type, ops, summary, stamp.db_now))
    insert_rows(AccountChangeLog, CHANGE_COLUMNS, rows)
    return rows


def account_sync_run(
    *,
    instance: Instance,
    session_id: uuid.UUID | None = None,
    force: bool = False,
    before_apply: Callable[[str], None] | None = None,
    fence: ApplyFence | None = None,
) -> SyncResult:
    """Fetch the instance's catalog (no local transaction open), then apply it (see ``account_sync_apply``).

    Classified failures never raise: they come back as success=False with an
    error_kind and a message naming the instance. The instance's sync fields
    are updated with one UPDATE whatever the outcome.
    """
    context = {
        "module": MODULE,
        "operation": "account_sync_run",
        "instance_id": instance.pk,
        "db_type": instance.db_type,
        "session_id": session_id,
    }
    started = time.monotonic()
    log_event(logger, logging.INFO, f"{instance.name}: account sync started", phase="start", **context)
    target: ConnectionTarget | None = None
    catalog: Catalog | None = None
    try:
        if before_apply:
            before_apply("fetch")
        fetch_started = time.monotonic()
        adapter = get_adapter(instance.db_type)
        target = ConnectionTarget.from_instance(instance)
        catalog = adapter.fetch(target).finalize()
        log_event(
            logger,
            logging.INFO,
            f"{instance.name}: fetched {len(catalog.accounts)} accounts in {catalog.round_trips} round trips",
            phase="fetch",
            duration_ms=_ms(fetch_started),
            **context,
        )
        if before_apply:
            before_apply("apply")
        result = account_sync_apply(instance=instance, catalog=catalog, session_id=session_id, force=force, fence=fence)
    except SyncCancelled as exc:
        cancelled = exc.error_kind == "cancelled"
        result = SyncResult(
            success=False,
            message=f"{instance.name}: "
            + ("sync cancelled before applying" if cancelled else str(exc))
            + "; nothing was written.",
            error_kind=exc.error_kind,
            message_code=SYNC_CANCELLED if cancelled else "",
        )
    except AdapterError as exc:
        message = str(exc) if exc.instance_name else f"{instance.name}: {exc}"
        result = SyncResult(
            success=False, message=message, error_kind=exc.kind, message_code=exc.code, message_params=exc.params
        )
    except Exception as exc:  # classified as internal: callers never see a traceback
        secret = target.password if target is not None else None
        params = {"error": scrub(f"{type(exc).__name__}: {exc}", secret)}
        message = scrub(f"{instance.name}: {message_english(SYNC_INTERNAL, params)}", secret)
        log_event(logger, logging.ERROR, message, exc_info=True, secrets=(secret,), phase="error", **context)
        result = SyncResult(
            success=False,
            message=message,
            error_kind=ErrorKind.INTERNAL,
            message_code=SYNC_INTERNAL,
            message_params=params,
        )

    status = SyncStatus.COMPLETED if result.success else SyncStatus.FAILED
    finished = timezone.now()
    updates: dict[str, Any] = {
        "last_sync_at": finished,
        "last_sync_status": status,
        "sync_count": F("sync_count") + 1,
    }
    if result.success:
        updates["last_success_at"] = finished
    if catalog is not None and catalog.server_version:
        updates["version"] = catalog.server_version[:255]
    on_fresh_connection(lambda: Instance.objects.filter(pk=instance.pk).update(**updates), what="instance sync state")
    level = logging.INFO if result.success else logging.WARNING
    log_event(
        logger, level, result.message, phase="done" if result.success else "error", duration_ms=_ms(started), **context
    )
    return result

"""The two-phase account sync: fetch remotely, then apply locally in one transaction.

Why split fetch and apply: the remote read can take minutes and must never hold
a local transaction or lock open; the apply is short, bulk and atomic per
instance, so a failure leaves the previous picture intact.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from accountsync import diff as snapdiff
from accountsync.adapters.base import (
    SCHEMA_VERSION,
    AccountRecord,
    AdapterError,
    Catalog,
    ConnectionTarget,
    ErrorKind,
    canonical_json,
    gc_paused,
    get_adapter,
    scrub,
)
from accountsync.bulk import BATCH_SIZE, batches, insert_rows
from accountsync.codec import Prepared, SnapshotCodec, json_text
from accountsync.models import AccountChangeLog, AccountPermission, ChangeType, InstanceAccount
from config.logging import log_event
from instances.models import Instance, SyncStatus

logger = logging.getLogger(__name__)

MODULE = "accountsync"
ACCOUNT_COLUMNS = (
    "instance",
    "identity",
    "first_seen_at",
    "last_seen_at",
    "is_active",
    "username",
    "host",
    "kind",
    "is_superuser",
    "is_locked",
    "attributes",
)
PERMISSION_COLUMNS = ("account", "instance", "snapshot", "digest", "schema_version", "collected_at", "valid_from")
CHANGE_COLUMNS = ("instance", "account", "session_id", "change_type", "diff", "summary", "detected_at")
SERVER_DETAILS = ("default_password_lifetime", "public_grants")
ROW_FIELDS = ("username", "host", "kind", "is_superuser", "is_locked", "attributes")


class SyncCancelled(Exception):
    """Raised by a `before_apply` hook to stop a sync before anything is written."""


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


class _GuardTripped(Exception):
    pass


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


def _change(
    instance: Instance,
    account_id: int,
    session: Any,
    change_type: str,
    ops: list[dict[str, Any]] | str,
    summary: str,
    now: Any,
) -> tuple[Any, ...]:
    """A change-log row in CHANGE_COLUMNS order; `session` and `now` already adapted, `ops` may be JSON text."""
    return (
        instance.pk,
        account_id,
        session,
        str(change_type),
        ops if isinstance(ops, str) else json_text(ops),
        summary,
        now,
    )


@gc_paused()  # bulk: see gc_paused
def account_sync_apply(
    *,
    instance: Instance,
    catalog: Catalog,
    session_id: uuid.UUID | None = None,
    force: bool = False,
) -> SyncResult:
    """Apply a fetched catalog: inventory, then collection, in one atomic block.

    Query cost is O(1) + O(changed / BATCH_SIZE): existing accounts and open
    snapshot digests are read in two queries; old snapshot JSON is read only
    for accounts that may have changed. An unchanged account costs no write,
    not even a `last_seen_at` bump (see InstanceAccount).
    Returns success=False with error_kind "guard" (nothing written) when the
    catalog is empty or would deactivate too many accounts, unless `force`.
    """
    started = time.monotonic()
    if catalog.unchanged:
        result = _apply_unchanged(instance, catalog, session_id)
        if result is not None:
            log_event(
                logger,
                logging.INFO,
                result.message,
                module=MODULE,
                operation="account_sync_apply",
                instance_id=instance.pk,
                db_type=instance.db_type,
                session_id=session_id,
                phase="apply",
                duration_ms=_ms(started),
            )
            return result
        message = (
            f"{instance.name}: the server's catalog is unchanged, but another sync was applied meanwhile; "
            "nothing was written, sync again."
        )
        log_event(
            logger,
            logging.WARNING,
            message,
            module=MODULE,
            operation="account_sync_apply",
            instance_id=instance.pk,
            db_type=instance.db_type,
            session_id=session_id,
            phase="apply",
        )
        return SyncResult(success=False, message=message, error_kind="conflict")
    now = timezone.now()
    records: dict[str, AccountRecord] = {}
    for record in catalog.accounts:
        records.setdefault(record.identity, record)
    catalog_unknown = sorted(set(catalog.unknown_scopes))

    try:
        with transaction.atomic():
            counts = _apply(instance, records, catalog_unknown, session_id, force, now)
            # what this apply is the result of; an empty digest (adapter without one) disables the shortcut
            if catalog.source_digest != instance.catalog_digest:
                Instance.objects.filter(pk=instance.pk).update(catalog_digest=catalog.source_digest)
                instance.catalog_digest = catalog.source_digest
    except _GuardTripped as exc:
        message = str(exc)
        log_event(
            logger,
            logging.WARNING,
            message,
            module=MODULE,
            operation="account_sync_apply",
            instance_id=instance.pk,
            db_type=instance.db_type,
            session_id=session_id,
            phase="guard",
            duration_ms=_ms(started),
        )
        return SyncResult(success=False, message=message, error_kind="guard", synced_count=len(records))

    inventory, collection = counts
    result = SyncResult(
        success=True,
        message=(
            f"{instance.name}: synced {len(records)} accounts "
            f"({inventory['added']} added, {collection['modified']} modified, {inventory['removed']} removed)"
        ),
        synced_count=len(records),
        added_count=inventory["added"],
        modified_count=collection["modified"],
        removed_count=inventory["removed"],
        details={
            "inventory": inventory,
            "collection": collection,
            # server-wide facts that belong to no account, for the findings and the record
            **{k: catalog.details[k] for k in SERVER_DETAILS if k in catalog.details},
        },
    )
    log_event(
        logger,
        logging.INFO,
        result.message,
        module=MODULE,
        operation="account_sync_apply",
        instance_id=instance.pk,
        db_type=instance.db_type,
        session_id=session_id,
        phase="apply",
        duration_ms=_ms(started),
    )
    return result


def _apply_unchanged(instance: Instance, catalog: Catalog, session_id: uuid.UUID | None) -> SyncResult | None:
    """The rows read equal those of the last applied sync: nothing to write; report what is stored.

    The stored digest is re-read here, so a sync applied by someone else in between
    (another digest) is never mistaken for ours; None then, and the caller refuses.
    """
    stored = Instance.objects.filter(pk=instance.pk).values_list("catalog_digest", flat=True).first()
    if not catalog.source_digest or stored != catalog.source_digest:
        return None
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
    return SyncResult(
        success=True,
        message=f"{instance.name}: synced {active} accounts (catalog unchanged since the last sync: nothing written)",
        synced_count=active,
        details={
            "inventory": inventory,
            "collection": collection,
            **{k: catalog.details[k] for k in SERVER_DETAILS if k in catalog.details},
        },
    )


def _apply(
    instance: Instance,
    records: dict[str, AccountRecord],
    catalog_unknown: list[str],
    session_id: uuid.UUID | None,
    force: bool,
    now: datetime,
) -> tuple[dict[str, int], dict[str, int]]:
    existing = {
        row[1]: row
        for row in InstanceAccount.objects.filter(instance=instance).values_list(
            "id", "identity", "is_active", *ROW_FIELDS
        )
    }
    active_total = sum(1 for row in existing.values() if row[2])
    to_remove = [row[0] for identity, row in existing.items() if row[2] and identity not in records]

    ratio = float(settings.WHALEFALL_MAX_REMOVAL_RATIO)
    if not force:
        if not records:
            raise _GuardTripped(
                f"{instance.name}: the server returned no accounts; refusing to deactivate "
                f"{active_total} accounts. Check the monitoring account's catalog privileges, or rerun with force."
            )
        if active_total and len(to_remove) / active_total > ratio:
            raise _GuardTripped(
                f"{instance.name}: this sync would deactivate {len(to_remove)} of {active_total} active accounts "
                f"(more than WHALEFALL_MAX_REMOVAL_RATIO={ratio:g}); nothing was changed. "
                "Check the monitoring account's privileges, or rerun with force if the removal is real."
            )

    # Each account's canonical snapshot, its text and digest are built once and serve both phases;
    # the codec encodes each distinct privilege/role/capability set once (see accountsync/codec.py).
    codec = SnapshotCodec()
    prepared: dict[str, Prepared] = {
        identity: codec.prepare(record, catalog_unknown) for identity, record in records.items()
    }

    # --- inventory ---------------------------------------------------------
    db_now = connection.ops.adapt_datetimefield_value(now)
    new_accounts: list[str] = []
    new_rows: list[tuple[Any, ...]] = []
    updated_accounts: list[InstanceAccount] = []
    reactivated_ids: set[int] = set()
    for identity, record in records.items():
        row = existing.get(identity)
        if row is None:
            new_accounts.append(identity)
            new_rows.append(
                (
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
        account_id, _identity, is_active, *old_values = row
        changed = _row_changed(dict(zip(ROW_FIELDS, old_values, strict=True)), values)
        if is_active and not changed:
            continue
        if not is_active:
            reactivated_ids.add(account_id)
        values["attributes"] = json.loads(canonical_json(values["attributes"]))
        updated_accounts.append(
            InstanceAccount(id=account_id, is_active=True, deactivated_at=None, last_seen_at=now, **values)
        )

    insert_rows(InstanceAccount, ACCOUNT_COLUMNS, new_rows)
    del new_rows
    added_ids: set[int] = set()
    account_ids = {identity: row[0] for identity, row in existing.items()}
    if new_accounts:
        # One SELECT for the new ids: portable (MySQL has no RETURNING) and cheaper than per-batch lookups.
        for pk, identity in InstanceAccount.objects.filter(instance=instance).values_list("id", "identity"):
            if identity not in existing:
                account_ids[identity] = pk
                added_ids.add(pk)
    if updated_accounts:
        InstanceAccount.objects.bulk_update(
            updated_accounts, ["is_active", "deactivated_at", "last_seen_at", *ROW_FIELDS], batch_size=BATCH_SIZE
        )
    for batch in batches(to_remove):
        InstanceAccount.objects.filter(id__in=batch).update(is_active=False, deactivated_at=now)
        AccountPermission.objects.filter(account_id__in=batch, valid_to__isnull=True).update(valid_to=now)

    # --- collection --------------------------------------------------------
    open_rows = {
        account_id: (perm_id, digest)
        for perm_id, account_id, digest in AccountPermission.objects.filter(
            instance=instance, valid_to__isnull=True
        ).values_list("id", "account_id", "digest")
    }

    candidates: dict[str, Prepared] = {}
    for identity, item in prepared.items():
        current = open_rows.get(account_ids[identity])
        if current is not None and current[1] == item.digest and not item.snapshot["unknown_scopes"]:
            continue
        candidates[identity] = item

    old_snapshots: dict[int, dict[str, Any]] = {}
    needed = [open_rows[account_ids[i]][0] for i in candidates if account_ids[i] in open_rows]
    for batch in batches(needed):
        old_snapshots.update(AccountPermission.objects.filter(id__in=batch).values_list("account_id", "snapshot"))

    to_close: list[int] = []
    new_perms: list[tuple[Any, ...]] = []
    changes: list[tuple[Any, ...]] = []
    collection = {
        "processed": len(records),
        "unchanged": 0,
        "modified": 0,
        "snapshots_written": 0,
        "privileges_changed": 0,
        "attributes_changed": 0,
        "reactivated": 0,
    }
    session = AccountChangeLog._meta.get_field("session_id").get_db_prep_save(session_id, connection)
    for identity, item in candidates.items():
        account_id = account_ids[identity]
        current = open_rows.get(account_id)
        if current is None and account_id in added_ids:
            # the bulk of a first sync: nothing to carry forward or compare, the codec has the pieces
            new_perms.append((account_id, instance.pk, item.text, item.digest, SCHEMA_VERSION, db_now, db_now))
            ops_text, summary = codec.first_seen_diff(item)
            changes.append(
                _change(
                    instance,
                    account_id,
                    session,
                    ChangeType.ADDED,
                    ops_text,
                    f"added {identity}" + (f": {summary}" if summary else ""),
                    db_now,
                )
            )
            continue
        # What is diffed must equal what is stored: attributes that are not plain JSON (dates) take a round trip.
        snapshot, digest, text = codec.stored_snapshot(item), item.digest, item.text
        old = old_snapshots.get(account_id)
        merged = snapdiff.carry_forward(old, snapshot)
        if merged is not snapshot:
            snapshot, digest, text = merged, snapdiff.digest(merged), canonical_json(merged)
        if current is not None and current[1] == digest:
            continue
        if current is not None:
            to_close.append(current[0])
        new_perms.append((account_id, instance.pk, text, digest, snapshot.get("schema_version", 1), db_now, db_now))
        ops = snapdiff.diff_snapshots(old, snapshot)
        summary = snapdiff.summarize(ops)
        if account_id in added_ids:
            changes.append(
                _change(
                    instance,
                    account_id,
                    session,
                    ChangeType.ADDED,
                    ops,
                    f"added {identity}" + (f": {summary}" if summary else ""),
                    db_now,
                )
            )
        elif account_id in reactivated_ids:
            collection["reactivated"] += 1
            text_ = f"reactivated {identity}" + (f": {summary}" if summary else "")
            changes.append(_change(instance, account_id, session, ChangeType.REACTIVATED, ops, text_, db_now))
        else:
            kind = snapdiff.classify(ops) or snapdiff.ATTRIBUTES_CHANGED
            collection[kind] += 1
            changes.append(_change(instance, account_id, session, kind, ops, summary, db_now))
    # A reactivated account whose snapshot was not closed at removal (older data) still gets its log entry.
    logged = {c[1] for c in changes}
    identities = {aid: identity for identity, aid in account_ids.items()}
    for account_id in reactivated_ids - logged:
        identity = identities[account_id]
        collection["reactivated"] += 1
        changes.append(
            _change(instance, account_id, session, ChangeType.REACTIVATED, [], f"reactivated {identity}", db_now)
        )
    for identity, row in existing.items():
        if row[2] and identity not in records:
            changes.append(_change(instance, row[0], session, ChangeType.REMOVED, [], f"removed {identity}", db_now))

    for batch in batches(to_close):
        AccountPermission.objects.filter(id__in=batch).update(valid_to=now)
    insert_rows(AccountPermission, PERMISSION_COLUMNS, new_perms)
    insert_rows(AccountChangeLog, CHANGE_COLUMNS, changes)

    collection["snapshots_written"] = len(new_perms)
    modified_ids = ({p[0] for p in new_perms} - added_ids) | reactivated_ids
    collection["modified"] = len(modified_ids)
    collection["unchanged"] = len(records) - len(new_accounts) - len(modified_ids)
    inventory = {
        "seen": len(records),
        "active_before": active_total,
        "added": len(new_accounts),
        "removed": len(to_remove),
        "reactivated": len(reactivated_ids),
        "updated": len(updated_accounts) - len(reactivated_ids),
    }
    return inventory, collection


def account_sync_run(
    *,
    instance: Instance,
    session_id: uuid.UUID | None = None,
    force: bool = False,
    before_apply: Callable[[str], None] | None = None,
) -> SyncResult:
    """Fetch the instance's catalog (no local transaction open), then apply it.

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
        result = account_sync_apply(instance=instance, catalog=catalog, session_id=session_id, force=force)
    except SyncCancelled:
        result = SyncResult(
            success=False,
            message=f"{instance.name}: sync cancelled before applying; nothing was written.",
            error_kind="cancelled",
        )
    except AdapterError as exc:
        message = str(exc) if exc.instance_name else f"{instance.name}: {exc}"
        result = SyncResult(success=False, message=message, error_kind=exc.kind)
    except Exception as exc:  # classified as internal: callers never see a traceback
        secret = target.password if target is not None else None
        message = scrub(
            f"{instance.name}: internal error during sync ({type(exc).__name__}: {exc}); "
            "see the server log and report it.",
            secret,
        )
        logger.error(message, exc_info=False)
        result = SyncResult(success=False, message=message, error_kind=ErrorKind.INTERNAL)

    status = SyncStatus.COMPLETED if result.success else SyncStatus.FAILED
    updates: dict[str, Any] = {
        "last_sync_at": timezone.now(),
        "last_sync_status": status,
        "sync_count": F("sync_count") + 1,
    }
    if catalog is not None and catalog.server_version:
        updates["version"] = catalog.server_version[:255]
    Instance.objects.filter(pk=instance.pk).update(**updates)
    level = logging.INFO if result.success else logging.WARNING
    log_event(
        logger, level, result.message, phase="done" if result.success else "error", duration_ms=_ms(started), **context
    )
    return result

"""Server-wide facts, stored once per version instead of in every sync record.

Why: what a sync learns about the server rather than about an account (Oracle's and
PostgreSQL's grants to PUBLIC, MySQL's default_password_lifetime, the Oracle container
and PDBs read) used to be copied into the sync result's details, which is every
`SyncInstanceRecord.details`. Oracle grants PUBLIC tens of thousands of privileges, so
each record of an unchanged Oracle instance carried megabytes. Now the facts live in
`InstanceServerFacts`, versioned like the permission snapshots (a new row only when
their digest changes), and the details keep a small reference: the bulky keys become
``{"count": n, "facts_id": id}``, the small ones stay as they were, and
``details["server_facts"]`` names the version.

Old records (from before the facts were stored) still carry the full values inline;
`record_server_facts` reads either form, and migration 0009 gave their values versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db.models import Q

from accountsync.adapters.base import snapshot_digest
from accountsync.models import InstanceServerFacts

# keys a sync's details take from the catalog: server-wide facts that belong to no account
# (Oracle read from CDB$ROOT: the PDBs read through the CDB_ views, those not read, each PDB's PUBLIC in short)
SERVER_FACT_KEYS = (
    "default_password_lifetime",
    "public_grants",
    "container",
    "unreadable_views",
    "pdbs_read",
    "pdbs_not_read",
    "container_public_grants",
)
# the keys that grow with the server (thousands of grants): a record keeps only their count
REFERENCED_KEYS = ("public_grants", "container_public_grants")
REFERENCE_KEY = "server_facts"


def server_facts_of(details: Mapping[str, Any]) -> dict[str, Any]:
    """The server-wide facts among a catalog's details (the part that is versioned)."""
    return {key: details[key] for key in SERVER_FACT_KEYS if key in details}


def server_facts_record(
    *, instance_id: int, facts: dict[str, Any], now: datetime, session_id: Any = None
) -> tuple[InstanceServerFacts | None, bool]:
    """The version holding `facts`, written only when they differ from the open one; (row, written).

    Runs inside the apply's transaction, so a rolled-back apply leaves no version behind.
    Facts gone (an empty dict) close the open version and return None.
    """
    digest = snapshot_digest(facts) if facts else ""
    current = (
        InstanceServerFacts.objects.filter(instance_id=instance_id, valid_to__isnull=True)
        .only("id", "digest", "valid_from", "instance_id")
        .first()
    )
    if current is not None and current.digest == digest:
        return current, False
    start = now
    if current is not None:
        # never before its own start: a clock that stepped back must not make the versions overlap
        start = max(now, current.valid_from)
        InstanceServerFacts.objects.filter(pk=current.pk).update(valid_to=start)
    if not facts:
        return None, current is not None
    row = InstanceServerFacts.objects.create(
        instance_id=instance_id, facts=facts, digest=digest, valid_from=start, session_id=session_id
    )
    return row, True


def server_facts_current(instance_id: int) -> InstanceServerFacts | None:
    """The open version (the facts of the last applied sync), or None."""
    return (
        InstanceServerFacts.objects.filter(instance_id=instance_id, valid_to__isnull=True)
        .only("id", "digest", "valid_from", "instance_id")
        .first()
    )


def facts_count(value: Any) -> int:
    """How many grants (or entries) a fact holds: what a record keeps of a bulky one."""
    if isinstance(value, dict) and "privileges" in value:
        return len(value.get("privileges") or ()) + len(value.get("roles") or ())
    if isinstance(value, dict | list | tuple):
        return len(value)
    return 1 if value else 0


def facts_reference(facts: Mapping[str, Any], row: InstanceServerFacts, *, written: bool) -> dict[str, Any]:
    """What a record's details say of `facts` stored as `row`: small keys inline, bulky ones counted."""
    summary: dict[str, Any] = {}
    for key, value in facts.items():
        summary[key] = {"count": facts_count(value), "facts_id": row.pk} if key in REFERENCED_KEYS else value
    summary[REFERENCE_KEY] = {
        "id": row.pk,
        "digest": row.digest,
        "valid_from": row.valid_from.isoformat(),
        "new": written,
    }
    return summary


def record_server_facts(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """The full server facts a record's details stand for, from its version or (old records) inline.

    A reference whose version is gone (it cannot be: versions are PROTECTed with their
    instance) falls back to what the details still say, so a reader never fails on it.
    """
    details = details or {}
    ref = details.get(REFERENCE_KEY)
    facts_id = ref.get("id") if isinstance(ref, Mapping) else None
    if facts_id is not None:
        stored = InstanceServerFacts.objects.filter(pk=facts_id).values_list("facts", flat=True).first()
        if stored is not None:
            return dict(stored)
    return {key: details[key] for key in SERVER_FACT_KEYS if key in details and not _is_reference(details[key])}


def _is_reference(value: Any) -> bool:
    return isinstance(value, Mapping) and "facts_id" in value and set(value) <= {"count", "facts_id"}


def server_facts_at(instance_id: int, at: datetime | None = None) -> dict[str, Any]:
    """The facts valid at `at` (the current ones when None); {} when no sync stored any by then."""
    valid = (
        Q(valid_to__isnull=True)
        if at is None
        else Q(valid_from__lte=at) & (Q(valid_to__isnull=True) | Q(valid_to__gt=at))
    )
    stored = (
        InstanceServerFacts.objects.filter(valid, instance_id=instance_id)
        .order_by("-valid_from")
        .values_list("facts", flat=True)
        .first()
    )
    return dict(stored) if stored else {}


def facts_for_details(
    *, instance_id: int, catalog_details: Mapping[str, Any], now: datetime, session_id: Any = None
) -> dict[str, Any]:
    """The details entries of an applied sync: its facts stored (when they changed) and referenced.

    A catalog with no facts at all costs no query: an adapter that reports facts reports them
    on every sync (an empty PUBLIC is an empty list, not a missing key), so none means a family
    that has none, and the apply's query budget stays what it was for it.
    """
    facts = server_facts_of(catalog_details)
    if not facts:
        return {}
    row, written = server_facts_record(instance_id=instance_id, facts=facts, now=now, session_id=session_id)
    return facts_reference(facts, row, written=written) if row is not None else {}


def unchanged_facts_for_details(*, instance_id: int, catalog_details: Mapping[str, Any]) -> dict[str, Any]:
    """The details entries of a sync whose catalog is unchanged: no write, and no query for small facts.

    An unchanged catalog carries only what the adapter read before noticing nothing changed
    (MySQL's default_password_lifetime; PostgreSQL nothing): small, so it stays inline, as
    before, and this path keeps its three queries. Should bulky facts come with one, they are
    referenced when the open version holds exactly them, else kept inline (nothing is written
    outside the apply's transaction).
    """
    facts = server_facts_of(catalog_details)
    if not any(key in facts for key in REFERENCED_KEYS):
        return facts
    row = server_facts_current(instance_id)
    if row is None or row.digest != snapshot_digest(facts):
        return facts
    return facts_reference(facts, row, written=False)

"""Refresh an instance's risk findings from the snapshots its last sync stored.

Why after the apply and set-based: findings are derived data. Reading every
active account's open snapshot is one query, evaluating the rule table is pure
Python, and writing is O(changed / BATCH_SIZE) statements, so 10,000 accounts
cost a handful of queries. A finding opens with the sync that first sees its
cause and is resolved (never deleted) by the sync that sees it gone, including
when the account itself disappears (deactivated accounts have no open snapshot).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from datetime import time as day_start
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from accountsync import effective, effective_read
from accountsync.bulk import BATCH_SIZE, batches, insert_rows, upsert_options
from accountsync.facts import record_server_facts
from accountsync.models import InstanceAccount
from config.logging import log_event
from findings import rules as rule_table
from findings.models import Finding, RefreshState
from findings.rules import EVALUATED_CODES, PRIVILEGED, Policy, Subject, evaluate, policy_from_settings
from instances.models import Instance
from sync.hooks import PostSyncEvent

logger = logging.getLogger(__name__)

MODULE = "findings"


@dataclass
class RefreshResult:
    opened: int = 0
    resolved: int = 0
    updated: int = 0
    open_total: int = 0
    accounts: int = 0
    # the earliest moment the clock alone could change this outcome (RefreshState.valid_until)
    valid_until: datetime | None = None

    def as_dict(self) -> dict[str, int]:
        return {
            "opened": self.opened,
            "resolved": self.resolved,
            "updated": self.updated,
            "open": self.open_total,
            "accounts": self.accounts,
        }


INSERT_FIELDS = ("instance", "account", "rule_code", "severity", "detail", "first_seen_at", "is_open", "session_id")


def _insert(rows: list[tuple[Any, ...]]) -> None:
    """Insert new findings (values in INSERT_FIELDS order), each value prepared by its field."""
    insert_rows(Finding, INSERT_FIELDS, rows, prepare=True)


def _subjects(shared: effective_read.InstanceEffective, context: dict[str, Any]) -> list[tuple[int, Subject]]:
    """Active accounts with their open snapshot, from the instance's one read (shared with the other hooks)."""
    db_type = shared.db_type
    return [
        (
            a.account_id,
            Subject.build(
                db_type=db_type,
                identity=a.identity,
                username=a.username,
                kind=a.kind,
                snapshot=a.snapshot,
                host=a.host,
                context=context,
            ),
        )
        for a in shared.accounts
    ]


def _needs_effective(subject: Subject) -> bool:
    """Accounts whose finding lists grants held through roles (GRANT_OPTION): others need only their snapshot."""
    return "GRANT_ADMIN" in subject.capabilities and "SUPERUSER" not in subject.capabilities and subject.active_login


def _with_effective_access(
    shared: effective_read.InstanceEffective, subjects: list[tuple[int, Subject]]
) -> list[tuple[int, Subject]]:
    """Give the subjects that need it their effective access, computed in one pass over the role graph.

    Why only some: the role accounts and the few accounts that can grant are enough to build
    the graph they reach (accountsync/effective.py computes each role's closure once), so the
    refresh of 10,000 plain accounts costs no more than before. The records come from the
    shared read (``effective_read.instance_effective``): no snapshot is decoded twice.
    """
    flagged = {subject.identity for _id, subject in subjects if _needs_effective(subject)}
    if not flagged:
        return subjects
    among = {s.identity for _id, s in subjects if s.kind == "role" or s.identity in flagged}
    access = shared.access(include_public=False, only=flagged, among=among)
    return [
        (account_id, replace(s, effective=tuple(g.as_dict() for g in access.get(s.identity, ()))))
        if s.identity in flagged
        else (account_id, s)
        for account_id, s in subjects
    ]


def findings_refresh(
    *,
    instance: Instance,
    session_id: uuid.UUID | str | None = None,
    policy: Policy | None = None,
    context: dict[str, Any] | None = None,
    now: datetime | None = None,
    memo: dict[Any, Any] | None = None,
) -> RefreshResult:
    """Open, update and resolve `instance`'s findings so they match its current snapshots.

    `context` carries instance-level facts a sync may know (e.g. MySQL's
    `default_password_lifetime`); `policy` defaults to the configured one. What the
    outcome was computed from is stored with it (RefreshState), in the same transaction,
    so a later no-change re-sync can prove it would get the same outcome and skip. `memo` is
    the post-sync event's (``PostSyncEvent.memo``): the snapshots read here are reused by the
    classification hook.
    """
    started = time.monotonic()
    policy = policy or policy_from_settings()
    context = context or {}
    now = now or timezone.now()
    session = uuid.UUID(str(session_id)) if session_id else None
    log = {
        "module": MODULE,
        "operation": "findings_refresh",
        "instance_id": instance.pk,
        "db_type": instance.db_type,
        "session_id": session,
    }
    # the digest is read before the snapshots: a sync applied in between can only make it older than
    # what is read (a later skip then fails the comparison), never newer
    shared = effective_read.instance_effective(instance, memo)
    catalog_digest = shared.catalog_digest
    inputs = refresh_inputs_digest(instance=instance, catalog_digest=catalog_digest, policy=policy, context=context)

    wanted: dict[tuple[int, str], tuple[str, dict[str, Any]]] = {}
    identities: dict[int, str] = {}
    result = RefreshResult()
    clock = timezone.now()  # the rules read the real clock (today's date), not `now`
    for account_id, subject in _with_effective_access(shared, _subjects(shared, context)):
        result.accounts += 1
        for code, hit in evaluate(subject, policy).items():
            wanted[(account_id, code)] = hit
            identities[account_id] = subject.identity
        for moment in _time_flips(subject, policy):
            if moment > clock and (result.valid_until is None or moment < result.valid_until):
                result.valid_until = moment

    result.open_total = len(wanted)
    _reconcile(
        instance,
        Finding.objects.filter(instance=instance, is_open=True, rule_code__in=EVALUATED_CODES),
        wanted,
        identities,
        result,
        session,
        now,
        log,
        # in the same transaction: the findings and what they were computed from commit together
        then=lambda: _state_save(instance, inputs if catalog_digest else "", result, now, session),
    )
    log_event(
        logger,
        logging.INFO,
        f"{instance.name}: findings refreshed ({result.opened} opened, {result.resolved} resolved, "
        f"{result.open_total} open over {result.accounts} accounts)",
        phase="refresh",
        duration_ms=int((time.monotonic() - started) * 1000),
        **log,
    )
    return result


# --- when a refresh can be skipped ------------------------------------------------------------

# bump when what the digest covers changes meaning; the code below is fingerprinted anyway
STATE_VERSION = 1


@functools.cache
def _code_fingerprint() -> bytes:
    """The code an outcome is a function of: the rule table, this module, the effective-access pass.

    Why the source and not a version number: a fix to a check changes the outcome without anyone
    remembering to bump a number; a deployment with other code simply refreshes once.
    """
    digest = hashlib.sha256()
    for path in (__file__, rule_table.__file__, effective.__file__, effective_read.__file__):
        digest.update(Path(str(path)).read_bytes())
    return digest.digest()


def refresh_inputs_digest(*, instance: Instance, catalog_digest: str, policy: Policy, context: dict[str, Any]) -> str:
    """sha256 of everything a refresh's outcome depends on except the clock (see RefreshState).

    The snapshots are stood for by the catalog digest they were applied from: every write of a
    snapshot or an account's activity is an apply, and an apply of other rows stores another
    digest. The rule table is read at call time (codes, severities, checks), so a rule added or
    re-graded changes the digest even without a code change.
    """
    policy_items = [
        (f.name, sorted(value) if isinstance(value, frozenset) else value)
        for f in fields(policy)
        for value in [getattr(policy, f.name)]
    ]
    rule_items = [
        (rule.code, str(rule.severity), rule.check.__module__, rule.check.__qualname__) for rule in rule_table.RULES
    ]
    parts = (
        STATE_VERSION,
        catalog_digest,
        instance.db_type,
        policy_items,
        sorted(context.items(), key=lambda kv: str(kv[0])),
        rule_items,
        sorted(EVALUATED_CODES),
    )
    digest = hashlib.sha256(_code_fingerprint())
    digest.update(repr(parts).encode("utf-8", errors="surrogatepass"))
    return digest.hexdigest()


def _moment(value: Any) -> datetime | None:
    """An ISO timestamp from a snapshot attribute (naive: UTC, as the adapters store them); None if not one."""
    if not value or not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _time_flips(subject: Subject, policy: Policy) -> Iterator[datetime]:
    """Moments at which the clock alone could change this account's findings; past ones are ignored by the caller.

    DORMANT_PRIVILEGED compares today's UTC date with the last login: under the rule's own
    time-independent conditions, it starts to hold at midnight UTC of `since + dormant_days`
    (and, once holding, keeps holding until a snapshot changes). Password expiry reaches the
    rules as the snapshot's EXPIRED, which the adapters' digests already decide at fetch time
    (accountsync/adapters/base.py rows_digest `moments`), so an expiry passing is a changed
    catalog; its moments are yielded as well so that a catalog digest that did not decide them
    still cannot make a refresh skip past one.
    """
    attrs = subject.attributes
    if (
        policy.dormant_days > 0
        and "last_login" in attrs
        and not attrs.get("last_login_partial")
        and subject.active_login
        and set(PRIVILEGED) & subject.capabilities
    ):
        since = rule_table._login_day(attrs.get("last_login") or attrs.get("created"))
        if since is not None:
            with_days = since + timedelta(days=policy.dormant_days)
            yield datetime.combine(with_days, day_start.min, tzinfo=UTC)
    for key in ("valid_until", "expiry_date"):
        if (moment := _moment(attrs.get(key))) is not None:
            yield moment
    lifetime = attrs.get("password_lifetime")
    if lifetime is None:
        lifetime = subject.context.get("default_password_lifetime")
    changed = _moment(attrs.get("password_last_changed"))
    if changed is not None and type(lifetime) is int and lifetime > 0:
        yield changed + timedelta(days=lifetime)


def _state_save(
    instance: Instance, inputs: str, result: RefreshResult, now: datetime, session: uuid.UUID | None
) -> None:
    """Record what this refresh was computed from; an empty digest (no catalog digest) never matches a skip."""
    state = RefreshState(
        instance_id=instance.pk,
        inputs_digest=inputs,
        valid_until=result.valid_until,
        refreshed_at=now,
        session_id=session,
        accounts=result.accounts,
        open_total=result.open_total,
    )
    RefreshState.objects.bulk_create(  # one upsert statement, first refresh or not
        [state], **upsert_options(unique_fields=["instance"], update_fields=STATE_FIELDS)
    )


STATE_FIELDS = ["inputs_digest", "valid_until", "refreshed_at", "session_id", "accounts", "open_total"]


def _skippable(instance: Instance, *, inputs: str, at: datetime) -> RefreshState | None:
    """The stored state when it proves a refresh now would reproduce the stored findings, else None."""
    state = RefreshState.objects.filter(instance_id=instance.pk).first()
    if state is None or not state.inputs_digest or state.inputs_digest != inputs:
        return None
    if state.valid_until is not None and at >= state.valid_until:
        return None
    return state


def _reconcile(
    instance: Instance,
    open_rows: Any,
    wanted: dict[tuple[int, str], tuple[str, dict[str, Any]]],
    identities: dict[int, str],
    result: RefreshResult,
    session: uuid.UUID | None,
    now: datetime,
    log: dict[str, Any],
    then: Callable[[], None] | None = None,
    among: set[int] | None = None,
) -> None:
    """Make the open findings among `open_rows` equal `wanted`: open, update, resolve; log each.

    `then` runs last inside the same transaction (the refresh records its state there).
    `among` limits the open rows to those accounts, in Python: an `IN` list of a large
    instance's accounts would pass SQLite's limit on parameters.
    """
    with transaction.atomic():
        current: dict[tuple[int, str], tuple[int, str, dict[str, Any]]] = {}
        for pk, account_id, identity, code, severity, detail in (
            open_rows.values_list("id", "account_id", "account__identity", "rule_code", "severity", "detail")
            .order_by()
            .iterator(chunk_size=2000)
        ):
            if among is not None and account_id not in among:
                continue
            current[(account_id, code)] = (pk, severity, detail)
            identities.setdefault(account_id, identity)
        to_resolve = [key for key in current if key not in wanted]
        to_open = [key for key in wanted if key not in current]
        to_update = [
            Finding(id=current[key][0], severity=wanted[key][0], detail=wanted[key][1])
            for key in wanted.keys() & current.keys()
            if (current[key][1], current[key][2]) != wanted[key]
        ]
        for batch in batches([current[key][0] for key in to_resolve]):
            Finding.objects.filter(id__in=batch, is_open=True).update(
                is_open=False, resolved_at=now, resolved_session_id=session
            )
        _insert(
            [
                (instance.pk, account_id, code, *wanted[(account_id, code)], now, True, session)
                for account_id, code in to_open
            ]
        )
        if to_update:
            Finding.objects.bulk_update(to_update, ["severity", "detail"], batch_size=BATCH_SIZE)
        if then is not None:
            then()

    result.opened, result.resolved, result.updated = len(to_open), len(to_resolve), len(to_update)
    for account_id, code in to_open:
        log_event(
            logger,
            logging.INFO,
            f"{instance.name}: finding {code} opened for {identities[account_id]}",
            phase="opened",
            rule=code,
            severity=wanted[(account_id, code)][0],
            account_id=account_id,
            **log,
        )
    for account_id, code in to_resolve:
        log_event(
            logger,
            logging.INFO,
            f"{instance.name}: finding {code} resolved for {identities[account_id]}",
            phase="resolved",
            rule=code,
            severity=current[(account_id, code)][1],
            account_id=account_id,
            **log,
        )


def findings_reconcile(
    *,
    instance: Instance,
    rule_code: str,
    wanted: dict[int, tuple[str, dict[str, Any]]],
    account_ids: Any = None,
    session_id: uuid.UUID | str | None = None,
    now: datetime | None = None,
) -> RefreshResult:
    """Open, update and resolve one feature rule's findings on `instance` so they equal `wanted`.

    For the rules of the features above findings (``feature_rule_register``): `wanted` maps an
    account id to (severity, detail). Only the open findings of `rule_code` among `account_ids`
    (all of the instance's when None) can be resolved, so a feature that could evaluate only some
    accounts (a scope it could not read, a directory it could not reach) leaves the others as they are.
    """
    if rule_code in EVALUATED_CODES:
        raise ValueError(f"{rule_code!r} is evaluated by findings_refresh, not reconciled by a feature")
    now = now or timezone.now()
    session = uuid.UUID(str(session_id)) if session_id else None
    log = {
        "module": MODULE,
        "operation": "findings_reconcile",
        "instance_id": instance.pk,
        "db_type": instance.db_type,
        "session_id": session,
    }
    rows = Finding.objects.filter(instance=instance, is_open=True, rule_code=rule_code)
    ids = None
    if account_ids is not None:
        ids = set(account_ids)
        wanted = {k: v for k, v in wanted.items() if k in ids}
    result = RefreshResult(accounts=len(wanted))
    identities: dict[int, str] = {}
    for chunk in batches(list(wanted)):
        identities.update(InstanceAccount.objects.filter(id__in=chunk).values_list("id", "identity"))
    keyed = {(account_id, rule_code): hit for account_id, hit in wanted.items()}
    _reconcile(instance, rows, keyed, identities, result, session, now, log, among=ids)
    result.open_total = len(wanted)
    return result


def findings_on_sync_applied(event: PostSyncEvent) -> None:
    """The post-sync hook (registered in ``FindingsConfig.ready``): refresh, summary into the details."""
    findings_after_sync(
        instance=event.instance,
        session_id=event.session_id,
        result=event.result,
        catalog_unchanged=bool(getattr(event, "catalog_unchanged", False)),
        memo=getattr(event, "memo", None),
    )


def findings_after_sync(
    *,
    instance: Instance,
    session_id: uuid.UUID | str | None,
    result: dict[str, Any],
    catalog_unchanged: bool = False,
    memo: dict[Any, Any] | None = None,
) -> dict[str, Any] | None:
    """The sync hook: refresh findings after a successful sync; never raises.

    A failed sync changed nothing, so its findings stand. A failure here must not
    turn a successful sync into a failed one: it is logged, and the next sync
    refreshes again. The summary goes into the result's details.

    A sync that found the catalog unchanged skips the refresh when the stored state proves
    the outcome would be the same (equal inputs digest, before its ``valid_until``): then the
    summary says ``skipped`` with the counts of the refresh it stands on.
    """
    if not result.get("success"):
        return None
    # server-wide facts: stored once per version, the details reference them (accountsync/facts.py)
    facts = record_server_facts(result.get("details"))
    context = {k: facts[k] for k in ("default_password_lifetime",) if k in facts}
    try:
        policy = policy_from_settings()
        summary = None
        if catalog_unchanged and instance.catalog_digest:
            # the unchanged apply checked the stored digest equals the one read: the snapshots are those of it
            inputs = refresh_inputs_digest(
                instance=instance, catalog_digest=instance.catalog_digest, policy=policy, context=context
            )
            state = _skippable(instance, inputs=inputs, at=timezone.now())
            if state is not None:
                summary = _skipped_summary(instance, state, session_id)
        if summary is None:
            summary = findings_refresh(
                instance=instance, session_id=session_id, context=context, policy=policy, memo=memo
            ).as_dict()
    except Exception as exc:
        log_event(
            logger,
            logging.ERROR,
            f"{instance.name}: findings refresh failed ({type(exc).__name__}: {exc})",
            module=MODULE,
            operation="findings_refresh",
            instance_id=instance.pk,
            db_type=instance.db_type,
            session_id=session_id,
            phase="error",
        )
        return None
    if isinstance(result.get("details"), dict):
        result["details"]["findings"] = summary
    return summary


def _skipped_summary(instance: Instance, state: RefreshState, session_id: uuid.UUID | str | None) -> dict[str, Any]:
    """The details of a skipped refresh: nothing opened or resolved, the counts it stands on, and why."""
    log_event(
        logger,
        logging.INFO,
        f"{instance.name}: findings unchanged (catalog and inputs as at {state.refreshed_at.isoformat()}; "
        f"{state.open_total} open over {state.accounts} accounts)",
        module=MODULE,
        operation="findings_refresh",
        instance_id=instance.pk,
        db_type=instance.db_type,
        session_id=session_id,
        phase="skipped",
    )
    return {
        "opened": 0,
        "resolved": 0,
        "updated": 0,
        "open": state.open_total,
        "accounts": state.accounts,
        "skipped": True,
        "reason": "catalog_and_inputs_unchanged",
        "refreshed_at": state.refreshed_at.isoformat(),
        "valid_until": state.valid_until.isoformat() if state.valid_until else None,
    }

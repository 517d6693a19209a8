"""Classification writes: materialize account facts, evaluate rules, save rules (versioned), manual decisions.

Why two steps after a sync: working out effective access needs the whole role graph of an
instance (accountsync/effective.py), so `facts_refresh` does it once per instance when its
snapshots changed and stores each account's compact facts (an unchanged account costs no
write). `classification_evaluate` then reads facts only: every rule is compiled once
(classification/rules.py) and answered for the whole population with set operations, and the
assignments are diffed against the stored ones, so a fleet-wide re-evaluation after a rule
change is a few queries plus set arithmetic.

Could not read is never revoked: the apply keeps the last known grants of a scope it could not
read in the open snapshot (accountsync/services.py, ``carry_forward``), so the facts, and the
classification, of such an account stay what they were. A deactivated account has no open
snapshot and no facts: it loses its classifications at the next evaluation.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from accountsync import effective_read
from accountsync.bulk import batches, insert_rows, upsert_options
from accountsync.models import InstanceAccount
from audit.services import audit_record
from classification.models import (
    AssignmentSource,
    Classification,
    ClassificationAssignment,
    ClassificationDailyCount,
    ClassificationInstanceState,
    ClassificationRule,
    ClassificationRuleVersion,
    InstanceFacts,
    ManualAction,
    ManualAssignment,
)
from classification.rules import (
    CompiledRule,
    InstancePart,
    Population,
    RuleError,
    Subject,
    facts_index,
    privilege_key,
    rule_compile,
)
from config.logging import log_event
from instances.models import Instance

logger = logging.getLogger(__name__)

MODULE = "classification"
EVALUATE_TASK = "classification.tasks.evaluate_all"
DAILY_TASK = "classification.tasks.store_daily_counts"


class ClassificationBrokerError(RuntimeError):
    """The task broker refused the re-evaluation task; the rule itself was saved."""


# --- facts ------------------------------------------------------------------------------------


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _role_resolver(records: dict[str, Any]) -> dict[str, str]:
    """A membership's role name → the role's identity (a grant may name a role by identity or by its name)."""
    resolve = {r.username: identity for identity, r in records.items() if r.kind == "role"}
    resolve.update({identity: identity for identity in records})
    return resolve


def _role_closure(records: dict[str, Any]) -> dict[str, set[str]]:
    """Every role identity each account reaches through memberships (any depth; cycles are cut)."""
    memo: dict[str, set[str]] = {}
    resolve = _role_resolver(records)

    def reach(identity: str, stack: frozenset[str]) -> set[str]:
        done = memo.get(identity)
        if done is not None:
            return done
        record = records.get(identity)
        found: set[str] = set()
        if record is not None:
            for grant in record.roles:
                role = resolve.get(grant.role, grant.role)
                if role in stack:
                    continue
                found.add(role)
                found |= reach(role, stack | {role})
        memo[identity] = found
        return found

    return {identity: reach(identity, frozenset({identity})) for identity in records}


@dataclass
class FactsResult:
    accounts: int = 0  # -1: not recomputed (the catalog was unchanged)
    written: bool = False
    digest: str = ""  # the stored facts' digest after the refresh (not in the summary)

    def as_dict(self) -> dict[str, Any]:
        return {"accounts": self.accounts, "written": self.written}


def instance_subjects(*, instance: Instance, memo: dict[Any, Any] | None = None) -> list[Subject]:
    """The instance's active accounts with their facts, worked out from the open snapshots.

    The whole instance at once because a change to one role changes every holder's facts; the
    effective-access pass computes each role's closure once, so this is linear in the grants.
    The snapshots come from ``effective_read.instance_effective``: in a post-sync hook `memo` is
    the event's, so the read (and the JSON decoding) the findings hook did is reused.
    """
    shared = effective_read.instance_effective(instance, memo)
    rows = shared.accounts
    records = shared.records
    effective = shared.access(include_public=True)
    closure = _role_closure(records)
    resolve = _role_resolver(records)
    held = {resolve.get(grant.role, grant.role) for record in records.values() for grant in record.roles}
    role_names = {identity: record.username for identity, record in records.items() if record.kind == "role"}
    subjects = []
    for row in rows:
        identity, snapshot = row.identity, row.snapshot
        keys = sorted(
            {
                privilege_key(g.scope, g.privilege, grantable=g.grantable, active=g.active)
                for g in effective.get(identity, ())
                if g.effect == "GRANT"
            }
        )
        roles = sorted({name for role in closure.get(identity, ()) for name in (role, role_names.get(role, role))})
        attributes = dict(snapshot.get("attributes") or {})
        attributes["is_held"] = identity in held
        subjects.append(
            Subject(
                account_id=row.account_id,
                username=row.username,
                host=row.host,
                kind=row.kind,
                is_locked=row.is_locked,
                capabilities=sorted(snapshot.get("capabilities") or ()),
                roles=roles,
                keys=keys,
                attributes=attributes,
            )
        )
    return subjects


def facts_refresh(
    *, instance: Instance, now: datetime | None = None, memo: dict[Any, Any] | None = None
) -> FactsResult:
    """Store the instance's facts index (classification.rules.facts_index); no write when nothing changed.

    `memo`: the post-sync event's, see `instance_subjects`.
    """
    now = now or timezone.now()
    subjects = instance_subjects(instance=instance, memo=memo)
    index = facts_index(subjects)
    digest = _digest(index)
    result = FactsResult(accounts=len(subjects), digest=digest)
    current = InstanceFacts.objects.filter(instance=instance).values_list("digest", flat=True).first()
    if current != digest:
        InstanceFacts.objects.update_or_create(
            instance=instance,
            defaults={"index": _compact(index), "accounts": len(subjects), "digest": digest, "computed_at": now},
        )
        result.written = True
    return result


# --- evaluation -------------------------------------------------------------------------------


@dataclass
class EvaluateResult:
    accounts: int = 0
    added: int = 0
    removed: int = 0
    changed: int = 0
    pairs_rewritten: int = 0
    rule_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "accounts": self.accounts,
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "rule_errors": self.rule_errors,
        }


def population_load(*, instance_ids: Iterable[int] | None = None, db_type: str = "") -> Population:
    """The active instances' facts (one row each) and their tags, as the rules' population."""
    rows = InstanceFacts.objects.filter(instance__is_active=True)
    if instance_ids is not None:
        rows = rows.filter(instance_id__in=list(instance_ids))
    if db_type:
        rows = rows.filter(instance__db_type=db_type)
    fields = ("instance_id", "instance__db_type", "instance__environment", "index")
    found = list(rows.order_by("instance_id").values_list(*fields))
    tags: dict[int, set[str]] = {}
    through = Instance.tags.through
    for iid, name in through.objects.filter(instance_id__in=[r[0] for r in found]).values_list(
        "instance_id", "tag__name"
    ):
        tags.setdefault(iid, set()).add(name)
    parts = [
        InstancePart(
            instance_id=iid, db_type=dbt, environment=env, tags=frozenset(tags.get(iid, ())), index=json.loads(text)
        )
        for iid, dbt, env, text in found
    ]
    return Population(parts=parts)


# compiled rules by (id, expression text): a compiled rule keeps no state between populations (the
# population caches its own indexes), and compiling every rule again for each instance's evaluation
# after a sync was ~15 ms of it
_COMPILED: dict[tuple[int, str], CompiledRule] = {}
_COMPILED_MAX = 2000


def _compiled_rules() -> tuple[list[tuple[ClassificationRule, CompiledRule]], list[str]]:
    compiled, errors = [], []
    for rule in ClassificationRule.objects.filter(is_enabled=True).order_by("classification_id", "pk"):
        key = (rule.pk, _compact(rule.expression))
        run = _COMPILED.get(key)
        if run is None:
            try:
                run = rule_compile(rule.expression)
            except RuleError as exc:  # saved before a language change: skipped, named in the summary
                errors.append(f"{rule.pk}: {exc}")
                continue
            if len(_COMPILED) >= _COMPILED_MAX:
                _COMPILED.clear()
            _COMPILED[key] = run
        compiled.append((rule, run))
    return compiled, errors


MANUAL = 0  # in `wanted`: the account is in by a manual decision, not by a rule


def _pair_digest(members: dict[int, int]) -> str:
    """A digest of exactly who is in a (classification, instance) pair and why (rule id, or MANUAL)."""
    return hashlib.sha256(repr(sorted(members.items())).encode()).hexdigest()


ASSIGNMENT_FIELDS = ("account", "classification", "instance", "source", "rule", "assigned_at")


def classification_evaluate(
    *, instance_ids: Iterable[int] | None = None, now: datetime | None = None
) -> EvaluateResult:
    """Evaluate every enabled rule over the active accounts (of some instances, else the fleet); store the result.

    What an account ends up in: the classifications whose rules match it, plus its manual
    "assign" decisions, minus its manual "exclude" decisions (a person's decision wins). Per
    (classification, instance) the wanted members are digested and compared with the stored
    digest (`ClassificationInstanceState`); only the pairs that differ have their assignments
    read and diffed, so only the rows that change are written. Today's daily counts are stored
    at the end, so the dashboard chart is never empty.
    """
    started = time.perf_counter()
    now = now or timezone.now()
    ids = None if instance_ids is None else list(instance_ids)
    pop = population_load(instance_ids=ids)
    compiled, errors = _compiled_rules()
    # per classification: account -> the rule that put it there (the first matching rule, by id)
    by_rule: dict[int, dict[int, int]] = {}
    for rule, run in compiled:
        matched = run(pop)
        if rule.db_type:
            matched &= pop.index("db_type").get(rule.db_type, set())
        target = by_rule.setdefault(rule.classification_id, {})
        for account_id in matched - target.keys():
            target[account_id] = rule.pk
    manual = ManualAssignment.objects.filter(account__is_active=True)
    if ids is not None:
        manual = manual.filter(account__instance_id__in=ids)
    included: dict[int, set[int]] = {}
    excluded: dict[int, set[int]] = {}
    extra_instance: dict[int, int] = {}  # manual includes of accounts that have no facts (yet)
    for account_id, classification_id, action, iid in manual.values_list(
        "account_id", "classification_id", "action", "account__instance_id"
    ):
        (excluded if action == ManualAction.EXCLUDE else included).setdefault(classification_id, set()).add(account_id)
        extra_instance[account_id] = iid
    instance_sets = {part.instance_id: pop.instance_ids(part.instance_id) for part in pop.parts}

    def instance_of(account_id: int) -> int:
        for iid, members in instance_sets.items():
            if account_id in members:
                return iid
        return extra_instance[account_id]

    # the wanted members of every (classification, instance) pair
    wanted: dict[tuple[int, int], dict[int, int]] = {}
    for classification_id in set(by_rule) | set(included):
        rules_of = by_rule.get(classification_id, {})
        manual_in = included.get(classification_id, set())
        members = (rules_of.keys() | manual_in) - excluded.get(classification_id, set())
        by_instance: dict[int, set[int]] = {}
        rest = set(members)
        for iid, accounts in instance_sets.items():
            inside = rest & accounts
            if inside:
                by_instance[iid] = inside
                rest -= inside
        for account_id in rest:
            by_instance.setdefault(instance_of(account_id), set()).add(account_id)
        for iid, accounts in by_instance.items():
            wanted[(classification_id, iid)] = {a: MANUAL if a in manual_in else rules_of[a] for a in accounts}
    states = ClassificationInstanceState.objects.all()
    if ids is not None:
        states = states.filter(instance_id__in=ids)
    stored = {
        (c, i): (pk, digest)
        for pk, c, i, digest in states.values_list("pk", "classification_id", "instance_id", "digest")
    }
    digests = {pair: _pair_digest(members) for pair, members in wanted.items()}
    dirty = [pair for pair in set(wanted) | set(stored) if pair not in stored or stored[pair][1] != digests.get(pair)]
    result = EvaluateResult(accounts=len(pop.all_ids), rule_errors=errors, pairs_rewritten=len(dirty))
    with transaction.atomic():
        gone_pairs: list[tuple[int, int]] = []
        if ids is None:  # instances no longer evaluated (inactive, no facts): their assignments go
            live = set(instance_sets)
            gone_pairs = [pair for pair in stored if pair[1] not in live and pair not in wanted]
        plan = _WritePlan()
        pairs = list(dict.fromkeys([*dirty, *gone_pairs]))
        have = _stored_assignments(pairs)
        for pair in pairs:
            plan.add(pair, wanted.get(pair, {}), have.get(pair, {}), now)
        plan.write(result)
        _states_write(pairs, wanted, digests, stored)
        if ids is None:  # rows a delete racing an evaluation left behind (the table has no FK constraints)
            existing = list(Classification.objects.values_list("pk", flat=True))
            result.removed += ClassificationAssignment.objects.exclude(classification_id__in=existing).delete()[0]
        daily_counts_store(day=timezone.localdate(now))
    result.seconds = time.perf_counter() - started
    return result


def _stored_assignments(pairs: list[tuple[int, int]]) -> dict[tuple[int, int], dict[int, tuple[int, int]]]:
    """The stored assignments of `pairs`: pair → account → (row id, rule id or MANUAL); a query per 1,000 instances.

    Read per classification over a batch of instances rather than per pair: a first evaluation of a
    fleet has hundreds of pairs, and one read each was most of its queries.
    """
    wanted_pairs = set(pairs)
    by_classification: dict[int, list[int]] = {}
    for classification_id, iid in pairs:
        by_classification.setdefault(classification_id, []).append(iid)
    found: dict[tuple[int, int], dict[int, tuple[int, int]]] = {}
    for classification_id, instance_ids in by_classification.items():
        for chunk in batches(instance_ids):
            rows = ClassificationAssignment.objects.filter(classification_id=classification_id, instance_id__in=chunk)
            for pk, account_id, iid, rid in rows.values_list("pk", "account_id", "instance_id", "rule_id"):
                pair = (classification_id, iid)
                if pair in wanted_pairs:
                    found.setdefault(pair, {})[account_id] = (pk, rid or MANUAL)
    return found


@dataclass
class _WritePlan:
    """The assignment rows to delete, re-point and insert, collected over every pair and written at once."""

    stale: list[int] = field(default_factory=list)
    moved: dict[int, list[int]] = field(default_factory=dict)  # rule id (or MANUAL) -> row ids
    new: list[tuple[Any, ...]] = field(default_factory=list)

    def add(
        self, pair: tuple[int, int], wanted: dict[int, int], have: dict[int, tuple[int, int]], now: datetime
    ) -> None:
        """Plan what makes the stored assignments of one (classification, instance) pair equal to `wanted`."""
        classification_id, instance_id = pair
        self.stale.extend(have[a][0] for a in have.keys() - wanted.keys())
        for account_id in have.keys() & wanted.keys():
            pk, rid = have[account_id]
            if rid != wanted[account_id]:
                self.moved.setdefault(wanted[account_id], []).append(pk)
        at = ClassificationAssignment._meta.get_field("assigned_at").get_db_prep_value(now, connection)
        rule, manual = AssignmentSource.RULE.value, AssignmentSource.MANUAL.value
        self.new.extend(
            (a, classification_id, instance_id, manual if rid == MANUAL else rule, rid or None, at)
            for a, rid in wanted.items()
            if a not in have
        )

    def write(self, result: EvaluateResult) -> None:
        rule, manual = AssignmentSource.RULE.value, AssignmentSource.MANUAL.value
        for chunk in batches(self.stale):
            ClassificationAssignment.objects.filter(pk__in=chunk).delete()
        for rid, pks in self.moved.items():
            source = manual if rid == MANUAL else rule
            for chunk in batches(pks):
                ClassificationAssignment.objects.filter(pk__in=chunk).update(source=source, rule_id=rid or None)
        insert_rows(ClassificationAssignment, ASSIGNMENT_FIELDS, self.new)
        result.added += len(self.new)
        result.removed += len(self.stale)
        result.changed += sum(len(p) for p in self.moved.values())


def _states_write(
    pairs: list[tuple[int, int]],
    wanted: dict[tuple[int, int], dict[int, int]],
    digests: dict[tuple[int, int], str],
    stored: dict[tuple[int, int], tuple[int, str]],
) -> None:
    """Store each written pair's count and digest (bulk: a first evaluation writes hundreds of them)."""
    gone = [stored[pair][0] for pair in pairs if pair not in wanted and pair in stored]
    for chunk in batches(gone):
        ClassificationInstanceState.objects.filter(pk__in=chunk).delete()
    changed = [
        ClassificationInstanceState(pk=stored[pair][0], count=len(wanted[pair]), digest=digests[pair])
        for pair in pairs
        if pair in wanted and pair in stored
    ]
    ClassificationInstanceState.objects.bulk_update(changed, ["count", "digest"], batch_size=500)
    ClassificationInstanceState.objects.bulk_create(
        [
            ClassificationInstanceState(
                classification_id=pair[0], instance_id=pair[1], count=len(wanted[pair]), digest=digests[pair]
            )
            for pair in pairs
            if pair in wanted and pair not in stored
        ],
        batch_size=500,
    )


def daily_counts_store(*, day: date | None = None) -> int:
    """Store (or update) each classification's count of active accounts for `day` (today by default).

    Three reads and at most one upsert whatever the number of classifications, none when nothing
    moved: it runs after every instance's evaluation, where per-row upserts were a dozen
    statements per sync.
    """
    day = day or timezone.localdate()
    counts = dict(
        ClassificationInstanceState.objects.values_list("classification_id")
        .annotate(n=Sum("count"))
        .values_list("classification_id", "n")
    )
    with transaction.atomic():
        stored = dict(ClassificationDailyCount.objects.filter(day=day).values_list("classification_id", "count"))
        rows = [
            ClassificationDailyCount(
                classification_id=classification_id, day=day, count=counts.get(classification_id, 0)
            )
            for classification_id in Classification.objects.values_list("pk", flat=True)
            if stored.get(classification_id) != counts.get(classification_id, 0)
        ]
        # an upsert: two workers evaluating two instances may both be first to store today's row
        ClassificationDailyCount.objects.bulk_create(
            rows,
            batch_size=500,
            **upsert_options(unique_fields=["classification", "day"], update_fields=["count"]),
        )
    return len(counts)


# --- the post-sync hook -----------------------------------------------------------------------

INPUTS_VERSION = 1  # bump when evaluation_inputs changes meaning


@functools.cache
def _code_fingerprint() -> bytes:
    """The rule language and the evaluation: a deployment that changes either evaluates once more."""
    from classification import rules

    digest = hashlib.sha256()
    for path in (__file__, rules.__file__):
        digest.update(Path(str(path)).read_bytes())
    return digest.digest()


def evaluation_inputs(*, instance: Instance, facts_digest: str) -> str:
    """sha256 of everything an evaluation of `instance` reads: facts, rules, manual decisions, environment, tags.

    Why: after a catalog-unchanged sync (the daily case) the facts are the stored ones; if the
    rules, the manual decisions of the instance's accounts and the instance's own environment,
    type and tags are the same as at its last evaluation, evaluating again would move nobody, and
    it was most of the classification hook's cost (13 queries, the facts decoded and every rule
    compiled). Three small reads instead.
    """
    rules = list(
        ClassificationRule.objects.filter(is_enabled=True)
        .order_by("pk")
        .values_list("pk", "classification_id", "db_type", "version", "expression")
    )
    manual = list(
        ManualAssignment.objects.filter(account__instance_id=instance.pk, account__is_active=True)
        .order_by("pk")
        .values_list("pk", "account_id", "classification_id", "action")
    )
    tags = sorted(Instance.tags.through.objects.filter(instance_id=instance.pk).values_list("tag__name", flat=True))
    parts = (
        INPUTS_VERSION,
        facts_digest,
        instance.db_type,
        instance.environment,
        instance.is_active,
        tags,
        [(pk, c, d, v, _compact(e)) for pk, c, d, v, e in rules],
        manual,
    )
    digest = hashlib.sha256(_code_fingerprint())
    digest.update(repr(parts).encode("utf-8", errors="surrogatepass"))
    return digest.hexdigest()


def classification_on_sync_applied(event: Any) -> None:
    """The post-sync hook (order 150, ``ClassificationConfig.ready``): facts, then the instance's assignments.

    Never raises into the sync: a failure is logged and the next sync or rule change tries again.
    """
    instance = event.instance
    if not (event.result or {}).get("success", True):
        return
    try:
        stored = InstanceFacts.objects.filter(instance=instance).values_list("digest", "evaluated_inputs").first()
        # an unchanged catalog wrote no snapshot, so the stored facts still hold (no effective-access pass)
        if getattr(event, "catalog_unchanged", False) and stored is not None:
            # read before the evaluation reads them: a rule edited meanwhile only makes it stale (evaluated next time)
            inputs = evaluation_inputs(instance=instance, facts_digest=stored[0])
            if stored[1] == inputs:  # nor did anything else the evaluation reads change: it would move nobody
                summary: dict[str, Any] = {"skipped": True, "reason": "inputs_unchanged"}
                details = (event.result or {}).get("details")
                if isinstance(details, dict):
                    details["classification"] = summary
                return
            facts = FactsResult(accounts=-1)
        else:
            facts = facts_refresh(instance=instance, memo=getattr(event, "memo", None))
            # the digest facts_refresh just compared with (and stored when it differed): no read back
            inputs = evaluation_inputs(instance=instance, facts_digest=facts.digest)
        summary = classification_evaluate(instance_ids=[instance.pk]).as_dict()
        summary["facts"] = facts.as_dict()
        InstanceFacts.objects.filter(instance=instance).update(evaluated_inputs=inputs)
    except Exception as exc:
        log_event(
            logger,
            logging.ERROR,
            f"{instance.name}: classification failed ({type(exc).__name__}: {exc}); the sync itself succeeded",
            exc_info=True,
            module=MODULE,
            operation="classification_evaluate",
            instance_id=instance.pk,
            db_type=instance.db_type,
            session_id=event.session_id,
            phase="error",
        )
        return
    details = (event.result or {}).get("details")
    if isinstance(details, dict):
        details["classification"] = summary


def facts_refresh_all() -> int:
    """Compute the facts of every active instance (the first evaluation, and `evaluate_all`'s catch-up)."""
    done = 0
    for instance in Instance.objects.filter(is_active=True).order_by("pk"):
        facts_refresh(instance=instance)
        done += 1
    return done


def evaluation_enqueue() -> str:
    """Queue the fleet-wide re-evaluation after a rule changed; `ClassificationBrokerError` when the broker refuses."""
    from django_q.tasks import async_task

    try:
        return str(async_task(EVALUATE_TASK, task_name="classification: re-evaluate"))
    except Exception as exc:
        log_event(
            logger,
            logging.ERROR,
            f"classification re-evaluation could not be queued ({type(exc).__name__}: {exc})",
            module=MODULE,
            operation="evaluation_enqueue",
            phase="broker",
        )
        raise ClassificationBrokerError(str(exc)) from exc


# --- rules ------------------------------------------------------------------------------------


def rule_validate(expression: Any) -> None:
    """Raise `django.core.exceptions.ValidationError` with the path to the bad part, or return."""
    from django.core.exceptions import ValidationError

    try:
        rule_compile(expression)
    except RuleError as exc:
        raise ValidationError(str(exc), code="invalid_rule") from exc


def rule_save(
    *,
    rule: ClassificationRule,
    user: Any = None,
    comment: str = "",
    now: datetime | None = None,
) -> ClassificationRule:
    """Validate and save a rule (new or edited) and append its version; nothing is saved when it is invalid.

    A save that changes none of name, family, expression or enabled writes no new version.
    """
    rule_validate(rule.expression)
    now = now or timezone.now()
    actor = user if getattr(user, "is_authenticated", False) else None
    with transaction.atomic():
        last = None
        if rule.pk:
            last = ClassificationRuleVersion.objects.filter(rule_id=rule.pk).order_by("-version").first()
        same = last is not None and (last.name, last.db_type, last.expression, last.is_enabled) == (
            rule.name,
            rule.db_type,
            rule.expression,
            rule.is_enabled,
        )
        if not same:
            rule.version = (last.version + 1) if last else 1
            rule.updated_at, rule.updated_by = now, actor
        elif rule.updated_at is None:
            rule.updated_at = now
        rule.save()
        if not same:
            ClassificationRuleVersion.objects.create(
                rule=rule,
                version=rule.version,
                name=rule.name,
                db_type=rule.db_type,
                expression=rule.expression,
                is_enabled=rule.is_enabled,
                comment=comment,
                created_at=now,
                created_by=actor,
            )
            audit_record(
                "classification_rule_saved",
                actor=actor,
                obj=rule,
                details={"version": rule.version, "classification": rule.classification.code, "comment": comment},
            )
    return rule


@dataclass
class Preview:
    count: int
    accounts: list[dict[str, Any]]


def rule_preview(*, expression: Any, db_type: str = "", limit: int = 50) -> Preview:
    """Which active accounts a rule would match now ("these 37 accounts would match"), without saving it."""
    run = rule_compile(expression)
    pop = population_load(db_type=db_type)
    matched = run(pop)
    sample_ids = sorted(matched)[:limit]
    rows = (
        InstanceAccount.objects.filter(pk__in=sample_ids)
        .select_related("instance")
        .order_by("instance__name", "identity")
    )
    accounts = [
        {"id": a.pk, "identity": a.identity, "instance_id": a.instance_id, "instance": a.instance.name, "kind": a.kind}
        for a in rows
    ]
    return Preview(count=len(matched), accounts=accounts)


# --- manual decisions -------------------------------------------------------------------------


def manual_assign(
    *,
    account: InstanceAccount,
    classification: Classification,
    action: str = ManualAction.INCLUDE,
    reason: str = "",
    user: Any = None,
    now: datetime | None = None,
) -> ManualAssignment:
    """Record a person's decision (assign or exclude) and apply it to the account at once; audited."""
    if action not in ManualAction.values:
        raise ValueError(_("unknown decision %(action)r (assign: include, unassign: exclude)") % {"action": action})
    if not account.is_active:
        raise ValueError(
            _("%(account)s is no longer active; only active accounts are classified") % {"account": account}
        )
    now = now or timezone.now()
    actor = user if getattr(user, "is_authenticated", False) else None
    with transaction.atomic():
        decision, _created = ManualAssignment.objects.update_or_create(
            account=account,
            classification=classification,
            defaults={"action": action, "reason": reason, "decided_at": now, "decided_by": actor},
        )
        classification_evaluate(instance_ids=[account.instance_id], now=now)
        audit_record(
            "classification_manual",
            actor=actor,
            obj=decision,
            object_repr=f"{account.identity} → {classification.code}",
            details={
                "account_id": account.pk,
                "classification": classification.code,
                "decision": action,
                "reason": reason,
            },
        )
    return decision


def manual_clear(*, account: InstanceAccount, classification: Classification, user: Any = None) -> bool:
    """Withdraw a manual decision: the rules decide again. Audited; False when there was none."""
    actor = user if getattr(user, "is_authenticated", False) else None
    with transaction.atomic():
        deleted, _rows = ManualAssignment.objects.filter(account=account, classification=classification).delete()
        if not deleted:
            return False
        classification_evaluate(instance_ids=[account.instance_id])
        audit_record(
            "classification_manual_cleared",
            actor=actor,
            object_type="classification.manualassignment",
            object_repr=f"{account.identity} → {classification.code}",
            details={"account_id": account.pk, "classification": classification.code},
        )
    return True

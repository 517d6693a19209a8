"""Approve current effective access as a baseline, and keep the DRIFT findings equal to the delta.

Why evaluation is per instance and set-based: a sync changes one instance, so the post-sync hook
(order 160, after findings and classification) loads that instance's current baseline entries
(one query), its current snapshots and everyone's effective access (one pass over the role graph,
``accountsync.effective``), compares, and hands the whole wanted set to
``findings.services.findings_reconcile``. An approval evaluates the instances it touched at once,
so approving again closes the finding without waiting for a sync.

Could not read is never revoked: a privilege that lies in a scope the last sync could not read
is last-known data (``accountsync.coverage``); it never counts as added or missing, and an account
whose only differences lie there is left out of the reconcile, so its finding neither opens nor closes.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from accountsync.bulk import batches
from accountsync.coverage import gaps_at, last_known_marker
from accountsync.effective_read import instance_effective_access
from accountsync.models import AccountPermission, InstanceAccount
from audit.services import audit_record
from baselines.canonical import access_delta, access_digest, bounded, canonical_access, delta_lines, has_drift
from baselines.models import Baseline, BaselineEntry, BaselineKind, BaselineVersion
from classification.models import Classification
from classification.selectors import classification_account_ids
from config.logging import log_event
from findings.models import Finding
from findings.rules import policy_from_settings
from findings.services import findings_reconcile
from instances.models import Instance

logger = logging.getLogger(__name__)

MODULE = "baselines"
RULE_CODE = "DRIFT"
SEVERITY = "high"
AUDIT_KIND = "baseline_approved"
MAX_COMMENT = 2000


class BaselineError(ValueError):
    """An approval that cannot be made (no comment, nothing to approve); the message says which, for a person."""


# --- reading the current access ------------------------------------------------------------------


def current_access(*, instance: Instance, account_ids: Iterable[int] | None = None) -> dict[int, dict[str, Any]]:
    """The canonical access of the instance's active accounts (only `account_ids` when given), by account id.

    One query for the snapshots, one pass for effective access; an account without an open
    snapshot (deactivated) is absent.
    """
    wanted = None if account_ids is None else set(account_ids)
    rows = AccountPermission.objects.filter(instance=instance, valid_to__isnull=True, account__is_active=True)
    # the whole instance, filtered here: effective access reads every snapshot anyway, and an IN list of
    # 100,000 ids would exceed SQLite's bound on query parameters
    snapshots = {
        account_id: (identity, snapshot or {})
        for account_id, identity, snapshot in rows.order_by()
        .values_list("account_id", "account__identity", "snapshot")
        .iterator(chunk_size=2000)
        if wanted is None or account_id in wanted
    }
    if not snapshots:
        return {}
    effective = instance_effective_access(
        instance_id=instance.pk, db_type=instance.db_type, identities={identity for identity, _s in snapshots.values()}
    )
    return {
        account_id: canonical_access(
            effective.get(identity, ()), snapshot.get("roles") or (), snapshot.get("capabilities") or ()
        )
        for account_id, (identity, snapshot) in snapshots.items()
    }


# --- approving -----------------------------------------------------------------------------------


def _subject_accounts(kind: str, subject: Any) -> dict[int, list[int]]:
    """Instance id -> active account ids the approval covers."""
    if kind == BaselineKind.ACCOUNT:
        if not subject.is_active:
            raise BaselineError(
                _("%(account)s is deactivated: there is no current access to approve.") % {"account": subject}
            )
        return {subject.instance_id: [subject.pk]}
    if kind == BaselineKind.INSTANCE:
        ids = list(InstanceAccount.objects.filter(instance=subject, is_active=True).values_list("id", flat=True))
        if not ids:
            raise BaselineError(
                _("%(instance)s has no active account: sync it before approving.") % {"instance": subject}
            )
        return {subject.pk: ids}
    if kind == BaselineKind.CLASSIFICATION:
        ids = classification_account_ids(classification_id=subject.pk)
        by_instance: dict[int, list[int]] = defaultdict(list)
        for batch in batches(sorted(ids)):
            for account_id, instance_id in InstanceAccount.objects.filter(id__in=batch).values_list(
                "id", "instance_id"
            ):
                by_instance[instance_id].append(account_id)
        return dict(by_instance)  # an empty classification may be approved: "nobody belongs here"
    raise BaselineError(_("Unknown baseline kind %(kind)r.") % {"kind": kind})


def _subject_filter(kind: str, subject: Any) -> dict[str, Any]:
    field = {
        BaselineKind.ACCOUNT: "account",
        BaselineKind.INSTANCE: "instance",
        BaselineKind.CLASSIFICATION: "classification",
    }[kind]
    return {"kind": kind, field: subject}


def baseline_approve(
    *,
    kind: str,
    subject: InstanceAccount | Instance | Classification,
    comment: str,
    user: Any = None,
    now: datetime | None = None,
) -> BaselineVersion:
    """Approve the subject's current effective access as a new version of its baseline, then evaluate drift.

    The first approval creates the baseline; each later one adds a version and makes it the
    current one (older versions and their entries stay, as evidence). Audited as a
    ``baseline_approved`` event and in the model history.
    """
    comment = (comment or "").strip()
    if not comment:
        raise BaselineError(_("A comment is required: say why this access is approved."))
    if len(comment) > MAX_COMMENT:
        raise BaselineError(_("The comment is longer than %(n)d characters.") % {"n": MAX_COMMENT})
    now = now or timezone.now()
    covered = _subject_accounts(kind, subject)
    instances = {i.pk: i for i in Instance.objects.filter(pk__in=list(covered))}
    gaps = sorted(
        {
            f"{instances[i].name}: {e.scope}"
            for i in covered
            for e in gaps_at(instance=instances[i])
            if e.kind == "unreadable"
        }
    )
    username = user.get_username() if user is not None and getattr(user, "is_authenticated", False) else ""
    with transaction.atomic():
        baseline, _created = Baseline.objects.select_for_update().get_or_create(
            **_subject_filter(kind, subject), defaults={"created_at": now, "updated_at": now}
        )
        number = baseline.version + 1
        BaselineVersion.objects.filter(baseline=baseline, is_current=True).update(is_current=False)
        version = BaselineVersion.objects.create(
            baseline=baseline,
            version=number,
            is_current=True,
            approved_at=now,
            approved_by=user if username else None,
            approved_by_username=username,
            comment=comment,
            gaps=gaps,
        )
        entries = []
        for instance_id, account_ids in covered.items():
            for account_id, access in current_access(instance=instances[instance_id], account_ids=account_ids).items():
                entries.append(
                    BaselineEntry(
                        version=version,
                        account_id=account_id,
                        instance_id=instance_id,
                        access=access,
                        digest=access_digest(access),
                    )
                )
        BaselineEntry.objects.bulk_create(entries, batch_size=500)
        version.account_count = len(entries)
        version.save(update_fields=["account_count"])
        baseline.version = number
        baseline.updated_at = now
        baseline.save(update_fields=["version", "updated_at"])
        audit_record(
            AUDIT_KIND,
            actor=user,
            obj=baseline,
            details={
                "baseline_id": baseline.pk,
                "kind": kind,
                "subject": baseline.subject_label(),
                "version": number,
                "accounts": len(entries),
                "comment": comment,
                "unreadable_scopes": gaps[:50],
            },
        )
    log_event(
        logger,
        logging.INFO,
        f"baseline {baseline.pk} ({kind} {baseline.subject_label()}) approved as version {number} "
        f"with {len(entries)} accounts",
        module=MODULE,
        operation="baseline_approve",
        phase="approved",
    )
    for instance in instances.values():
        _evaluate_logged(instance=instance, session_id=None)
    return version


# --- evaluating drift ----------------------------------------------------------------------------


def _baseline_ref(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["baseline_id"],
        "kind": row["kind"],
        "version": row["version"],
        "approved_at": row["approved_at"].isoformat() if row["approved_at"] else None,
        "approved_by": row["approved_by"],
    }


def _approved_entries(instance: Instance) -> dict[int, tuple[dict[str, Any], dict[str, Any]]]:
    """Account id -> (approved access, baseline reference) from the newest current version naming it."""
    rows = (
        BaselineEntry.objects.filter(instance=instance, version__is_current=True)
        .order_by("version__approved_at", "version_id")
        .values_list(
            "account_id",
            "access",
            "version__baseline_id",
            "version__baseline__kind",
            "version__version",
            "version__approved_at",
            "version__approved_by_username",
        )
    )
    found: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    for account_id, access, baseline_id, kind, number, approved_at, by in rows.iterator(chunk_size=2000):
        ref = {"baseline_id": baseline_id, "kind": kind, "version": number, "approved_at": approved_at}
        found[account_id] = (access, _baseline_ref({**ref, "approved_by": by}))  # later rows win
    return found


def _covering_baselines(instance: Instance) -> dict[int, dict[str, Any]]:
    """Active account id -> the instance or classification baseline it falls under (for "not in baseline")."""
    covering: dict[int, dict[str, Any]] = {}
    rows = (
        BaselineVersion.objects.filter(
            Q(baseline__kind=BaselineKind.INSTANCE, baseline__instance=instance)
            | Q(baseline__kind=BaselineKind.CLASSIFICATION),
            is_current=True,
        )
        .order_by("approved_at", "id")
        .values(
            "baseline_id",
            "baseline__kind",
            "baseline__classification_id",
            "version",
            "approved_at",
            "approved_by_username",
        )
    )
    for row in rows:
        ref = _baseline_ref(
            {
                "baseline_id": row["baseline_id"],
                "kind": row["baseline__kind"],
                "version": row["version"],
                "approved_at": row["approved_at"],
                "approved_by": row["approved_by_username"],
            }
        )
        if row["baseline__kind"] == BaselineKind.INSTANCE:
            ids: Iterable[int] = InstanceAccount.objects.filter(instance=instance, is_active=True).values_list(
                "id", flat=True
            )
        else:
            ids = classification_account_ids(
                classification_id=row["baseline__classification_id"], instance_ids=[instance.pk]
            )
        for account_id in ids:
            covering[account_id] = ref
    return covering


def baselines_evaluate(
    *, instance: Instance, session_id: uuid.UUID | str | None = None, now: datetime | None = None
) -> dict[str, int]:
    """Open, update and resolve the instance's DRIFT findings so each equals its account's delta.

    Accounts with an approved entry are compared with it; accounts under an instance or a
    classification baseline without an entry are "not in baseline". An account whose only
    differences lie in unreadable scopes is not evaluated: its finding (or its absence) stands.
    """
    now = now or timezone.now()
    approved = _approved_entries(instance)
    covering = _covering_baselines(instance)
    open_ids = set(
        Finding.objects.filter(instance=instance, rule_code=RULE_CODE, is_open=True).values_list(
            "account_id", flat=True
        )
    )
    summary = {"accounts": 0, "drifting": 0, "unverified": 0, "opened": 0, "resolved": 0, "updated": 0}
    if not approved and not covering and not open_ids:
        return summary
    subjects = set(approved) | set(covering)
    current = current_access(instance=instance, account_ids=subjects)
    marker = last_known_marker(instance=instance)

    def unreadable(scope: str) -> str | None:
        known = marker.mark(scope) if marker else None
        return known.scope if known else None

    wanted: dict[int, tuple[str, dict[str, Any]]] = {}
    skipped: set[int] = set()
    for account_id in sorted(subjects):
        entry = approved.get(account_id)
        if entry is None and account_id not in current:
            continue  # under a subject baseline, but deactivated since: nothing to approve, nothing drifts
        access = current.get(account_id) or {"grants": [], "roles": [], "capabilities": []}
        delta = access_delta(entry[0] if entry else None, access, unreadable)
        detail_ref = entry[1] if entry else covering[account_id]
        drifting = has_drift(delta) or entry is None
        if not drifting:
            if delta["unverified"]:
                skipped.add(account_id)
                summary["unverified"] += 1
            continue
        wanted[account_id] = (
            SEVERITY,
            {
                "baseline": detail_ref,
                "not_in_baseline": entry is None,
                "account_active": account_id in current,
                **bounded(delta),
                "lines": delta_lines(delta)[:200],
            },
        )
    summary["accounts"] = len(subjects)
    summary["drifting"] = len(wanted)
    account_ids = None if not skipped else (open_ids | set(wanted)) - skipped
    result = findings_reconcile(
        instance=instance, rule_code=RULE_CODE, wanted=wanted, account_ids=account_ids, session_id=session_id, now=now
    )
    summary.update(opened=result.opened, resolved=result.resolved, updated=result.updated)
    return summary


def _evaluate_logged(*, instance: Instance, session_id: uuid.UUID | str | None) -> dict[str, int] | None:
    """Evaluate in a savepoint; a failure is logged with its traceback and returns None (never raised).

    Why: after a sync the sync must stay successful, and after an approval the approval (already
    committed with its audit event) must stand; the next sync or approval evaluates again.
    """
    try:
        with transaction.atomic():
            return baselines_evaluate(instance=instance, session_id=session_id)
    except Exception as exc:
        log_event(
            logger,
            logging.ERROR,
            f"{instance.name}: drift evaluation failed ({type(exc).__name__}: {exc})",
            exc_info=True,
            module=MODULE,
            operation="baselines_evaluate",
            instance_id=instance.pk,
            db_type=instance.db_type,
            session_id=session_id,
            phase="error",
        )
        return None


def baselines_on_sync_applied(event: Any) -> None:
    """The post-sync hook (order 160, registered in ``BaselinesConfig.ready``)."""
    baselines_after_sync(instance=event.instance, session_id=event.session_id, result=event.result)


def baselines_after_sync(
    *, instance: Instance, session_id: uuid.UUID | str | None, result: dict[str, Any]
) -> dict[str, int] | None:
    """Evaluate drift after a successful sync; never raises (a failure is logged, the next sync evaluates again)."""
    if not result.get("success"):
        return None
    if RULE_CODE in policy_from_settings().disabled_rules:
        return None
    # nothing approved anywhere and no drift open here (most fleets, most syncs): nothing to compare or resolve
    if (
        not Baseline.objects.exists()
        and not Finding.objects.filter(instance=instance, rule_code=RULE_CODE, is_open=True).exists()
    ):
        summary: dict[str, int] | None = {
            "accounts": 0, "drifting": 0, "unverified": 0, "opened": 0, "resolved": 0, "updated": 0
        }  # fmt: skip
    else:
        summary = _evaluate_logged(instance=instance, session_id=session_id)
    if summary is None:
        return None
    if isinstance(result.get("details"), dict):
        result["details"]["baselines"] = summary
    return summary

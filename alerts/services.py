"""Detect privilege escalations in a finished sync, and deliver them to the alert channels.

Why after the sync and through django-q2: a sync must never wait for a slow webhook
or a mail server, nor fail because one is down. Detection reads only what the sync
just wrote (its change log entries and the findings it opened), writes one
`AlertDelivery` per (channel, escalation) and queues one task per delivery once the
transaction commits. The task sends, records the attempt and, on failure, schedules
its own retry with exponential backoff until `WHALEFALL_ALERT_MAX_ATTEMPTS`.
django-q2's own retry only re-runs tasks whose worker was lost, so it cannot do this.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Max
from django.urls import reverse
from django.utils import timezone

from accountsync.models import AccountChangeLog, ChangeType
from alerts.models import (
    AlertChannel,
    AlertDelivery,
    ChannelKindChoices,
    DeliveryStatusChoices,
    EventKindChoices,
)
from config.logging import log_event
from findings.models import SEVERITY_RANK, Finding, SeverityChoices
from findings.rules import RULES_BY_CODE
from instances.crypto import CredentialDecryptError
from instances.models import Instance
from sync.hooks import PostSyncEvent

logger = logging.getLogger(__name__)

MODULE = "alerts"
TASK = "alerts.tasks.deliver_alert"
BATCH_SIZE = 1000
ERROR_MAX = 500

# Capabilities whose appearance is an escalation, and how severe it is.
ESCALATION_CAPABILITIES = {"SUPERUSER": SeverityChoices.CRITICAL, "GRANT_ADMIN": SeverityChoices.HIGH}
# Findings on a new account that make it an escalation.
ALERT_FINDING_SEVERITIES = (SeverityChoices.HIGH, SeverityChoices.CRITICAL)
# Change types whose diff can carry a capability gain ("removed" never does).
SCANNED_CHANGES = (ChangeType.ADDED, ChangeType.REACTIVATED, ChangeType.PRIVILEGES_CHANGED)


@dataclass(frozen=True)
class Change:
    """The parts of one change log entry detection needs."""

    id: int
    account_id: int
    identity: str
    change_type: str
    diff: list[dict[str, Any]]
    summary: str
    detected_at: datetime | None = None


@dataclass(frozen=True)
class Escalation:
    """One account that gained power in one sync (one change log entry)."""

    change: Change
    kind: str
    severity: str
    capabilities: tuple[str, ...]
    findings: tuple[dict[str, str], ...] = field(default=())


def gained_capabilities(ops: Iterable[dict[str, Any]]) -> list[str]:
    """Escalation capabilities a diff turns on (`set` of a capability from false/absent to true)."""
    gained = {
        op.get("field")
        for op in ops
        if op.get("op") == "set"
        and op.get("scope") == "capability"
        and op.get("field") in ESCALATION_CAPABILITIES
        and op.get("new") is True
        and not op.get("old")
    }
    return sorted(str(cap) for cap in gained)


def _max_severity(severities: Iterable[str]) -> str:
    return max(severities, key=lambda s: SEVERITY_RANK.get(s, -1))


def escalation_from_change(change: Change, findings: Iterable[dict[str, str]] = ()) -> Escalation | None:
    """Is this change log entry a privilege escalation? Pure, so every case is a unit test.

    An existing account that gains SUPERUSER or GRANT_ADMIN escalates. A new account
    escalates when it arrives with one of those, or with a high/critical finding
    (`findings`: `{"rule", "severity", ...}` opened on it by the same sync). A new
    SELECT grant or a medium finding is not an escalation.
    """
    capabilities = tuple(gained_capabilities(change.diff or []))
    is_new = change.change_type == ChangeType.ADDED
    serious = tuple(f for f in findings if f.get("severity") in ALERT_FINDING_SEVERITIES) if is_new else ()
    if not capabilities and not serious:
        return None
    severity = _max_severity([ESCALATION_CAPABILITIES[c] for c in capabilities] + [f["severity"] for f in serious])
    kind = EventKindChoices.NEW_PRIVILEGED_ACCOUNT if is_new else EventKindChoices.CAPABILITY_GAINED
    return Escalation(change=change, kind=kind, severity=str(severity), capabilities=capabilities, findings=serious)


def _batches(items: list[Any], size: int = BATCH_SIZE) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _sync_changes(instance: Instance, session_id: uuid.UUID | None, result: dict[str, Any]) -> list[Change]:
    """The change log entries this sync wrote that can carry an escalation.

    Two syncs of one instance never overlap (the lease), and one apply stamps all its
    entries with the same `detected_at`; so a session sync's entries are those of its
    session id, and an untracked sync's are the instance's latest, provided the result
    says it changed something (otherwise the latest ones belong to an earlier sync).
    """
    details = result.get("details") or {}
    inventory, collection = details.get("inventory") or {}, details.get("collection") or {}
    if not (
        inventory.get("added")
        or collection.get("modified")
        or result.get("added_count")
        or result.get("modified_count")
    ):
        return []
    rows = AccountChangeLog.objects.filter(instance=instance, change_type__in=SCANNED_CHANGES)
    if session_id is not None:
        rows = rows.filter(session_id=session_id)
    else:
        latest = AccountChangeLog.objects.filter(instance=instance, session_id__isnull=True).aggregate(
            latest=Max("detected_at")
        )["latest"]
        if latest is None:
            return []
        rows = rows.filter(session_id__isnull=True, detected_at=latest)
    return [
        Change(
            id=pk,
            account_id=account_id,
            identity=identity,
            change_type=change_type,
            diff=diff or [],
            summary=summary,
            detected_at=detected_at,
        )
        for pk, account_id, identity, change_type, diff, summary, detected_at in rows.values_list(
            "id", "account_id", "account__identity", "change_type", "diff", "summary", "detected_at"
        )
        .order_by("id")
        .iterator(chunk_size=2000)
    ]


def _new_account_findings(instance: Instance, account_ids: list[int]) -> dict[int, list[dict[str, str]]]:
    """Open high/critical findings of accounts this sync added (so this sync opened them)."""
    found: dict[int, list[dict[str, str]]] = {}
    for batch in _batches(account_ids):
        rows = (
            Finding.objects.filter(
                instance=instance, account_id__in=batch, is_open=True, severity__in=ALERT_FINDING_SEVERITIES
            )
            .values_list("account_id", "rule_code", "severity")
            .order_by("account_id", "rule_code")
        )
        for account_id, code, severity in rows:
            rule = RULES_BY_CODE.get(code)
            found.setdefault(account_id, []).append(
                {"rule": code, "severity": severity, "title": rule.title if rule else code}
            )
    return found


def alerts_detect(
    *, instance: Instance, session_id: uuid.UUID | str | None, result: dict[str, Any]
) -> list[Escalation]:
    """Escalations in the successful sync that produced `result` (after its findings refresh)."""
    if not result.get("success"):
        return []
    session = uuid.UUID(str(session_id)) if session_id else None
    changes = _sync_changes(instance, session, result)
    added = [c.account_id for c in changes if c.change_type == ChangeType.ADDED]
    findings = _new_account_findings(instance, added) if added else {}
    escalations = []
    for change in changes:
        escalation = escalation_from_change(change, findings.get(change.account_id, ()))
        if escalation is not None:
            escalations.append(escalation)
    return escalations


def channel_accepts(channel: AlertChannel, *, instance: Instance, severity: str) -> bool:
    """The channel's filters: db types, environments (empty = all) and minimum severity."""
    if channel.db_types and instance.db_type not in channel.db_types:
        return False
    if channel.environments and instance.environment not in channel.environments:
        return False
    return SEVERITY_RANK.get(severity, -1) >= SEVERITY_RANK.get(channel.min_severity, 0)


def account_admin_path(account_id: int) -> str:
    """The account's admin page, as a path (or a full URL when WHALEFALL_ALERT_BASE_URL is set)."""
    path = reverse("admin:accountsync_instanceaccount_change", args=[account_id])
    base = (getattr(settings, "WHALEFALL_ALERT_BASE_URL", "") or "").rstrip("/")
    return f"{base}{path}"


def alert_payload(*, instance: Instance, escalation: Escalation, session_id: uuid.UUID | None) -> dict[str, Any]:
    """The JSON body a webhook receives (and an e-mail shows): no credential, no snapshot."""
    change = escalation.change
    return {
        "event": "privilege_escalation",
        "kind": escalation.kind,
        "severity": escalation.severity,
        "instance": {
            "id": instance.pk,
            "name": instance.name,
            "db_type": instance.db_type,
            "environment": instance.environment,
        },
        "account": {"id": change.account_id, "identity": change.identity},
        "escalation": {"capabilities": list(escalation.capabilities), "findings": list(escalation.findings)},
        "change": {
            "id": change.id,
            "change_type": change.change_type,
            "summary": change.summary,
            "detected_at": change.detected_at.isoformat() if change.detected_at else None,
        },
        "session_id": str(session_id) if session_id else None,
        "account_url": account_admin_path(change.account_id),
    }


def _log(
    level: int,
    message: str,
    *,
    instance: Instance | None = None,
    instance_id: int | None = None,
    db_type: str | None = None,
    session_id: Any = None,
    phase: str,
    operation: str = "alerts",
    **more: Any,
) -> None:
    log_event(
        logger,
        level,
        message,
        module=MODULE,
        operation=operation,
        instance_id=instance.pk if instance is not None else instance_id,
        db_type=instance.db_type if instance is not None else db_type,
        session_id=str(session_id) if session_id else None,
        phase=phase,
        **more,
    )


def alerts_on_sync_applied(event: PostSyncEvent) -> None:
    """The post-sync hook (registered in ``AlertsConfig.ready``): detect, record and queue alerts.

    Then the successful sync ends the instance's open operational alerts ("recovered",
    ``alerts.operational``), in a savepoint of its own: neither part can undo the other.
    Why the savepoint only when detection may have written: with nothing of ours in the
    hook's transaction, a failing close can only roll back its own writes, so it runs in that
    transaction (``savepoint=False`` marks it for rollback on an error, which it logs as
    before). A no-change re-sync (no channel, or nothing to alert) saves the SAVEPOINT/RELEASE.
    """
    _, may_have_written = _after_sync(instance=event.instance, session_id=event.session_id, result=event.result)
    from alerts.operational import operational_on_sync_applied  # it imports this module

    try:
        with transaction.atomic(savepoint=may_have_written):
            operational_on_sync_applied(event)
    except Exception as exc:
        _log(
            logging.ERROR,
            f"{event.instance.name}: closing operational alerts failed ({type(exc).__name__}: {exc}); "
            "the periodic check will close them",
            instance=event.instance,
            session_id=event.session_id,
            phase="error",
        )


def alerts_after_sync(
    *, instance: Instance, session_id: uuid.UUID | str | None, result: dict[str, Any]
) -> dict[str, int] | None:
    """The sync hook: detect escalations, record deliveries, queue them after commit; never raises.

    Costs one query when no channel is active. The first successful sync of an
    instance is its baseline (every account is "added"), so it alerts only when
    WHALEFALL_ALERT_ON_FIRST_SYNC is set. Any error is logged and swallowed: an
    alert problem must never turn a successful sync into a failed one.
    """
    return _after_sync(instance=instance, session_id=session_id, result=result)[0]


def _after_sync(
    *, instance: Instance, session_id: uuid.UUID | str | None, result: dict[str, Any]
) -> tuple[dict[str, int] | None, bool]:
    """``alerts_after_sync``, and whether it may have written (False only when it provably wrote nothing)."""
    if not result.get("success"):
        return None, False
    started = time.monotonic()
    may_have_written = False
    try:
        channels = list(AlertChannel.objects.filter(is_active=True).order_by("pk"))
        if not channels:
            return None, False
        may_have_written = True  # until proven otherwise below; an error from here on may follow a write
        details = result.get("details") or {}
        coverage_queued = _coverage_deliveries(
            instance=instance, session_id=session_id, coverage=details.get("coverage") or {}, channels=channels
        )
        inventory = details.get("inventory") or {}
        baseline = inventory.get("active_before") == 0 and inventory.get("added", 0) > 0
        if baseline and not settings.WHALEFALL_ALERT_ON_FIRST_SYNC:
            _log(
                logging.INFO,
                f"{instance.name}: first sync is the baseline; escalations are not alerted",
                instance=instance,
                session_id=session_id,
                phase="baseline",
            )
            escalations, queued = [], []
        else:
            escalations = alerts_detect(instance=instance, session_id=session_id, result=result)
            queued = (
                _deliveries_create(instance=instance, session_id=session_id, escalations=escalations, channels=channels)
                if escalations
                else []
            )
        if not escalations and not coverage_queued:  # no delivery was created: nothing written
            return None, False
    except Exception as exc:
        _log(
            logging.ERROR,
            f"{instance.name}: alert detection failed ({type(exc).__name__}: {exc}); the sync itself succeeded",
            instance=instance,
            session_id=session_id,
            phase="error",
        )
        return None, may_have_written
    summary = {"escalations": len(escalations), "deliveries": len(queued) + len(coverage_queued)}
    _log(
        logging.INFO,
        f"{instance.name}: {len(escalations)} escalation(s), {len(queued)} alert deliveries queued",
        instance=instance,
        session_id=session_id,
        phase="detect",
        duration_ms=int((time.monotonic() - started) * 1000),
        **summary,
    )
    if (queued or coverage_queued) and isinstance(result.get("details"), dict):
        result["details"]["alerts"] = summary
    return summary, True


def coverage_payload(
    *, instance: Instance, kind: str, gaps: list[dict[str, Any]], session_id: uuid.UUID | None
) -> dict[str, Any]:
    """The body of a coverage lost/regained alert: which scopes, why and the fix (no credential, no grant)."""
    base = (getattr(settings, "WHALEFALL_ALERT_BASE_URL", "") or "").rstrip("/")
    return {
        "event": "coverage",
        "kind": kind,
        "severity": SeverityChoices.HIGH if kind == EventKindChoices.COVERAGE_LOST else SeverityChoices.LOW,
        "instance": {
            "id": instance.pk,
            "name": instance.name,
            "db_type": instance.db_type,
            "environment": instance.environment,
        },
        "gaps": gaps[:DIGEST_ITEMS],
        "count": len(gaps),
        "session_id": str(session_id) if session_id else None,
        "instance_url": f"{base}{reverse('admin:instances_instance_change', args=[instance.pk])}",
    }


def _coverage_deliveries(
    *, instance: Instance, session_id: uuid.UUID | str | None, coverage: dict[str, Any], channels: list[AlertChannel]
) -> list[int]:
    """One delivery per subscribed channel for the scopes this sync lost sight of, one for those it sees again.

    Why one per sync and not per scope: losing a server's grant tables is one event to act
    on, whatever the number of scopes; the payload lists them with their fixes.
    """
    opened = set(coverage.get("opened") or ())
    closed = list(coverage.get("closed") or ())
    if not opened and not closed:
        return []
    subscribed = [
        c
        for c in channels
        if c.coverage_events
        and (not c.db_types or instance.db_type in c.db_types)
        and (not c.environments or instance.environment in c.environments)
    ]
    if not subscribed:
        return []
    session = uuid.UUID(str(session_id)) if session_id else None
    events = []
    if opened:
        lost = [g for g in coverage.get("gaps") or [] if g.get("scope") in opened]
        events.append(
            coverage_payload(instance=instance, kind=EventKindChoices.COVERAGE_LOST, gaps=lost, session_id=session)
        )
    if closed:
        back = [{"scope": scope} for scope in closed]
        events.append(
            coverage_payload(instance=instance, kind=EventKindChoices.COVERAGE_REGAINED, gaps=back, session_id=session)
        )
    rows = [
        AlertDelivery(
            channel=channel,
            channel_name=channel.name,
            event_kind=payload["kind"],
            severity=payload["severity"],
            instance=instance,
            account_identity=f"{payload['count']} scope(s)",
            session_id=session,
            payload=payload,
        )
        for channel in subscribed
        for payload in events
    ]
    with transaction.atomic():
        created = AlertDelivery.objects.bulk_create(rows, batch_size=BATCH_SIZE)
        ids = [row.pk for row in created if row.pk is not None]
        if len(ids) != len(rows):  # backends that do not return ids from a bulk insert
            ids = list(
                AlertDelivery.objects.filter(
                    instance=instance, session_id=session, event_kind__in=[p["kind"] for p in events], attempts=0
                ).values_list("id", flat=True)
            )
        enqueue_on_commit(ids)
    _log(
        logging.INFO,
        f"{instance.name}: coverage {'lost' if opened else ''}{' and ' if opened and closed else ''}"
        f"{'regained' if closed else ''}: {len(ids)} alert deliveries queued",
        instance=instance,
        session_id=session_id,
        phase="coverage",
    )
    return ids


def _deliveries_create(
    *,
    instance: Instance,
    session_id: uuid.UUID | str | None,
    escalations: list[Escalation],
    channels: list[AlertChannel],
) -> list[int]:
    """One pending delivery per (channel, escalation) the channel accepts; queue them on commit.

    A channel that would get more than WHALEFALL_ALERT_DIGEST_OVER escalations from this
    one sync (a role made superuser, inherited by hundreds of members) gets a single
    digest delivery instead, so nobody is paged hundreds of times for one GRANT.
    """
    session = uuid.UUID(str(session_id)) if session_id else None
    payloads = {e.change.id: alert_payload(instance=instance, escalation=e, session_id=session) for e in escalations}
    limit = max(int(settings.WHALEFALL_ALERT_DIGEST_OVER), 1)
    rows = []
    for channel in channels:
        accepted = [e for e in escalations if channel_accepts(channel, instance=instance, severity=e.severity)]
        if len(accepted) > limit:
            rows.append(
                _digest_delivery(channel, instance, session, accepted, [payloads[e.change.id] for e in accepted])
            )
            continue
        rows.extend(
            AlertDelivery(
                channel=channel,
                channel_name=channel.name,
                event_kind=e.kind,
                severity=e.severity,
                instance=instance,
                account_id=e.change.account_id,
                account_identity=e.change.identity[:512],
                change_log_id=e.change.id,
                session_id=session,
                payload=payloads[e.change.id],
            )
            for e in accepted
        )
    if not rows:
        return []
    change_ids = [e.change.id for e in escalations]
    with transaction.atomic():
        AlertDelivery.objects.bulk_create(rows, batch_size=BATCH_SIZE, ignore_conflicts=True)
        ids: list[int] = []
        for batch in _batches(change_ids):
            ids.extend(
                AlertDelivery.objects.filter(change_log_id__in=batch, status=DeliveryStatusChoices.PENDING, attempts=0)
                .values_list("id", flat=True)
                .order_by("id")
            )
        enqueue_on_commit(ids)
    return ids


DIGEST_ITEMS = 50


def _digest_delivery(
    channel: AlertChannel,
    instance: Instance,
    session: uuid.UUID | None,
    escalations: list[Escalation],
    payloads: list[dict[str, Any]],
) -> AlertDelivery:
    """One delivery standing for many escalations of one sync (the first DIGEST_ITEMS are listed)."""
    severity = _max_severity([e.severity for e in escalations])
    base = (getattr(settings, "WHALEFALL_ALERT_BASE_URL", "") or "").rstrip("/")
    payload = {
        "event": "privilege_escalation",
        "kind": EventKindChoices.DIGEST,
        "severity": severity,
        "instance": payloads[0]["instance"],
        "count": len(escalations),
        "escalations": [
            {key: p[key] for key in ("kind", "severity", "account", "escalation", "change", "account_url")}
            for p in payloads[:DIGEST_ITEMS]
        ],
        "truncated": max(len(escalations) - DIGEST_ITEMS, 0),
        "session_id": str(session) if session else None,
        "accounts_url": f"{base}{reverse('admin:accountsync_instanceaccount_changelist')}"
        f"?instance__id__exact={instance.pk}",
    }
    first = escalations[0].change
    return AlertDelivery(
        channel=channel,
        channel_name=channel.name,
        event_kind=EventKindChoices.DIGEST,
        severity=severity,
        instance=instance,
        account_identity=f"{len(escalations)} accounts",
        change_log_id=first.id,
        session_id=session,
        payload=payload,
    )


def enqueue_on_commit(delivery_ids: list[int]) -> None:
    """Queue one task per delivery once the surrounding transaction commits (nothing if it rolls back)."""
    if delivery_ids:
        transaction.on_commit(lambda: _enqueue(delivery_ids), robust=True)


def _enqueue(delivery_ids: list[int]) -> None:
    """Hand deliveries to django-q2; one whose queueing fails is marked failed, never lost silently."""
    from django_q.tasks import async_task

    for delivery_id in delivery_ids:
        try:
            async_task(TASK, delivery_id, task_name=f"alert delivery {delivery_id}", group="alerts")
        except Exception as exc:
            message = f"could not queue the delivery ({type(exc).__name__}: {exc})"[:ERROR_MAX]
            AlertDelivery.objects.filter(pk=delivery_id, status=DeliveryStatusChoices.PENDING).update(
                status=DeliveryStatusChoices.FAILED, last_error=message, updated_at=timezone.now()
            )
            _log(logging.ERROR, f"alert delivery {delivery_id}: {message}", phase="enqueue", delivery_id=delivery_id)


# --- sending -------------------------------------------------------------------------------


class AlertSendError(Exception):
    """A delivery attempt failed; the message is safe to store and show (no URL path, no secret)."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects is misconfigured: report it instead of re-sending the body elsewhere."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())


def webhook_signature_headers(key: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """HMAC-SHA256 over `<unix time>.<body>`, so a receiver can check origin and refuse stale replays."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(key.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-WhaleFall-Timestamp": stamp, "X-WhaleFall-Signature": f"sha256={digest}"}


def _post_webhook(channel: AlertChannel, delivery: AlertDelivery, timeout: float) -> None:
    where = channel.webhook_url_mask or "(no URL)"
    try:
        url = channel.get_webhook_url()
        key = channel.signing_key()
    except CredentialDecryptError:
        raise AlertSendError(
            f"the webhook URL or signing secret of channel {channel.name} cannot be decrypted "
            "(WHALEFALL_FIELD_KEYS does not hold the key it was encrypted with)"
        ) from None
    if not url:
        raise AlertSendError(f"channel {channel.name} has no webhook URL")
    body = json.dumps({**delivery.payload, "delivery_id": delivery.pk}, ensure_ascii=False).encode()
    request = urllib.request.Request(  # noqa: S310 - the URL's scheme is validated to http/https
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "WhaleFall-Alerts/1",
            "X-WhaleFall-Event": str(delivery.payload.get("event", delivery.event_kind)),
            "X-WhaleFall-Delivery": str(delivery.pk),
        },
    )
    if key:
        for name, value in webhook_signature_headers(key, body).items():
            request.add_header(name, value)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        raise AlertSendError(f"HTTP {exc.code} from {where}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = str(getattr(exc, "reason", exc)).replace(url, where)
        raise AlertSendError(f"cannot reach {where}: {type(exc).__name__}: {reason}") from None
    if not 200 <= status < 300:
        raise AlertSendError(f"HTTP {status} from {where}")


def _what(escalation: dict[str, Any]) -> str:
    return ", ".join(escalation.get("capabilities") or []) or ", ".join(
        f["rule"] for f in escalation.get("findings") or []
    )


def _item_lines(item: dict[str, Any]) -> list[str]:
    esc = item.get("escalation") or {}
    findings = ", ".join(f"{f['title']} ({f['severity']})" for f in esc.get("findings") or [])
    return [
        f"Account:     {(item.get('account') or {}).get('identity')}",
        f"Severity:    {item.get('severity')}",
        f"Gained:      {', '.join(esc.get('capabilities') or []) or '-'}",
        f"Findings:    {findings or '-'}",
        f"Change:      {(item.get('change') or {}).get('summary') or '-'}",
        f"Account page: {item.get('account_url')}",
    ]


def alert_email_text(payload: dict[str, Any]) -> tuple[str, str]:
    """Subject and plain-text body of an alert e-mail (single escalation, digest or test), JSON appended."""
    inst = payload.get("instance") or {}
    severity = str(payload.get("severity", "")).upper()
    kind = payload.get("kind")
    if kind == EventKindChoices.TEST:
        subject = "[WhaleFall] test alert"
        lines = [str((payload.get("change") or {}).get("summary", "Test alert"))]
    elif kind in (
        EventKindChoices.FAILURE_STREAK,
        EventKindChoices.FAILURE_STREAK_RECOVERED,
        EventKindChoices.STALE,
        EventKindChoices.STALE_RECOVERED,
    ):
        from alerts.operational import operational_email_text  # it imports this module

        subject, lines = operational_email_text(payload)
    elif kind in (EventKindChoices.COVERAGE_LOST, EventKindChoices.COVERAGE_REGAINED):
        lost = kind == EventKindChoices.COVERAGE_LOST
        subject = f"[WhaleFall] {inst.get('name', '?')}: " + (
            f"{payload.get('count')} scope(s) no longer readable"
            if lost
            else f"{payload.get('count')} scope(s) readable again"
        )
        where = f"{inst.get('name')} ({inst.get('db_type')}, {inst.get('environment')})"
        lines = [
            f"WhaleFall could not read part of {where}. The last known grants there are kept and shown "
            "as such; nothing is reported as revoked."
            if lost
            else f"WhaleFall reads these parts of {where} again.",
            f"Instance:    {payload.get('instance_url')}",
            f"Session:     {payload.get('session_id') or '-'}",
        ]
        for gap in payload.get("gaps") or []:
            lines += ["", f"Scope:       {gap.get('scope')}"]
            if gap.get("reason"):
                lines.append(f"Reason:      {gap.get('reason')}")
            if gap.get("fix"):
                lines.append(f"Fix:         {gap.get('fix')}")
    elif kind == EventKindChoices.DIGEST:
        subject = f"[WhaleFall] {severity}: {payload.get('count')} privilege escalations on {inst.get('name', '?')}"
        lines = [
            f"WhaleFall detected {payload.get('count')} privilege escalations in one sync of "
            f"{inst.get('name')} ({inst.get('db_type')}, {inst.get('environment')}).",
            f"Session:     {payload.get('session_id') or '-'}",
            f"Accounts:    {payload.get('accounts_url')}",
        ]
        for item in payload.get("escalations") or []:
            lines += ["", *_item_lines(item)]
        if payload.get("truncated"):
            lines += ["", f"... and {payload['truncated']} more (see the change log)."]
    else:
        identity = (payload.get("account") or {}).get("identity", "?")
        what = _what(payload.get("escalation") or {})
        subject = f"[WhaleFall] {severity}: {identity} on {inst.get('name', '?')}" + (f" ({what})" if what else "")
        lines = [
            f"Privilege escalation detected by WhaleFall ({kind}).",
            "",
            f"Instance:    {inst.get('name')} ({inst.get('db_type')}, {inst.get('environment')})",
            *_item_lines(payload),
            f"Session:     {payload.get('session_id') or '-'}",
        ]
    lines += ["", "JSON:", json.dumps(payload, indent=2, ensure_ascii=False)]
    return subject.replace("\n", " ")[:250], "\n".join(lines)


def _send_email(channel: AlertChannel, delivery: AlertDelivery) -> None:
    subject, body = alert_email_text(delivery.payload)
    sender = getattr(settings, "WHALEFALL_ALERT_FROM_EMAIL", "") or settings.DEFAULT_FROM_EMAIL
    try:
        send_mail(subject, body, sender, channel.recipients, fail_silently=False)
    except Exception as exc:
        raise AlertSendError(f"mail backend refused: {type(exc).__name__}: {exc}") from None


def retry_delay(attempt: int) -> timedelta:
    """Backoff after failed attempt number `attempt` (1-based): base, 2 * base, 4 * base... capped at one day."""
    base = float(settings.WHALEFALL_ALERT_BACKOFF_SECONDS)
    return timedelta(seconds=min(base * 2 ** max(attempt - 1, 0), 86400.0))


def _schedule_retry(delivery_id: int, when: datetime) -> None:
    """A one-off django-q2 schedule that re-runs the task at `when` (deleted by django-q2 once run)."""
    from django_q.models import Schedule
    from django_q.tasks import schedule

    schedule(
        TASK,
        delivery_id,
        schedule_type=Schedule.ONCE,
        next_run=when,
        repeats=-1,
        name=f"alert delivery {delivery_id} retry {uuid.uuid4().hex[:8]}",
    )


def alert_delivery_attempt(*, delivery_id: int) -> str:
    """One attempt of one delivery; returns the delivery's status afterwards.

    Idempotent under django-q2's at-least-once delivery: only a pending delivery is
    sent, and the attempt is claimed with a conditional UPDATE on the attempt count,
    so two workers holding the same task cannot both send it.
    """
    delivery = AlertDelivery.objects.select_related("channel").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != DeliveryStatusChoices.PENDING:
        return delivery.status if delivery else "missing"
    now = timezone.now()
    claimed = AlertDelivery.objects.filter(
        pk=delivery.pk, status=DeliveryStatusChoices.PENDING, attempts=delivery.attempts
    ).update(attempts=F("attempts") + 1, last_attempt_at=now, next_attempt_at=None, updated_at=now)
    if not claimed:
        return "busy"
    attempt = delivery.attempts + 1
    channel = delivery.channel
    log = {
        "instance_id": delivery.instance_id,
        "db_type": (delivery.payload.get("instance") or {}).get("db_type"),
        "session_id": delivery.session_id,
        "delivery_id": delivery.pk,
        "attempt": attempt,
        "operation": "alert_deliver",
    }
    started = time.monotonic()
    error = ""
    retryable = True
    if channel is None or not channel.is_active:
        error, retryable = f"channel {delivery.channel_name} was deleted or deactivated", False
    else:
        try:
            if channel.kind == ChannelKindChoices.WEBHOOK:
                _post_webhook(channel, delivery, float(settings.WHALEFALL_ALERT_TIMEOUT))
            else:
                _send_email(channel, delivery)
        except AlertSendError as exc:
            error = str(exc)[:ERROR_MAX]
    duration = int((time.monotonic() - started) * 1000)
    done = timezone.now()
    if not error:
        AlertDelivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatusChoices.SENT, sent_at=done, last_error="", updated_at=done
        )
        _log(
            logging.INFO,
            f"alert {delivery.pk} sent to {delivery.channel_name} (attempt {attempt})",
            phase="sent",
            duration_ms=duration,
            **log,
        )
        return DeliveryStatusChoices.SENT
    max_attempts = max(int(settings.WHALEFALL_ALERT_MAX_ATTEMPTS), 1)
    if not retryable or attempt >= max_attempts:
        AlertDelivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatusChoices.FAILED, last_error=error, updated_at=done
        )
        _log(
            logging.ERROR,
            f"alert {delivery.pk} to {delivery.channel_name} failed for good after {attempt} attempt(s): {error}",
            phase="failed",
            duration_ms=duration,
            **log,
        )
        return DeliveryStatusChoices.FAILED
    when = done + retry_delay(attempt)
    AlertDelivery.objects.filter(pk=delivery.pk).update(last_error=error, next_attempt_at=when, updated_at=done)
    try:
        _schedule_retry(delivery.pk, when)
    except Exception as exc:
        AlertDelivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatusChoices.FAILED, last_error=f"{error}; retry not scheduled ({type(exc).__name__})"
        )
        _log(
            logging.ERROR,
            f"alert {delivery.pk}: could not schedule its retry ({type(exc).__name__})",
            phase="failed",
            **log,
        )
        return DeliveryStatusChoices.FAILED
    _log(
        logging.WARNING,
        f"alert {delivery.pk} to {delivery.channel_name} failed (attempt {attempt} of "
        f"{max_attempts}): {error}; retry at {when.isoformat()}",
        phase="retry",
        duration_ms=duration,
        **log,
    )
    return DeliveryStatusChoices.PENDING


# --- operator actions ----------------------------------------------------------------------


def alert_send_test(*, channel: AlertChannel) -> AlertDelivery:
    """Queue a test alert to `channel` so an operator can check the wiring end to end."""
    now = timezone.now()
    payload = {
        "event": "test",
        "kind": EventKindChoices.TEST,
        "severity": SeverityChoices.INFO,
        "instance": None,
        "account": None,
        "escalation": {"capabilities": [], "findings": []},
        "change": {"summary": f"Test alert from WhaleFall to channel {channel.name}", "detected_at": now.isoformat()},
        "session_id": None,
        "account_url": None,
    }
    with transaction.atomic():
        delivery = AlertDelivery.objects.create(
            channel=channel,
            channel_name=channel.name,
            event_kind=EventKindChoices.TEST,
            severity=SeverityChoices.INFO,
            payload=payload,
        )
        enqueue_on_commit([delivery.pk])
    return delivery


def alert_channel_create(*, channel: AlertChannel) -> str:
    """Save a new channel and return its signing secret, the only time anyone sees it."""
    channel.new_signing_secret = None
    if not channel.signing_secret_encrypted:
        channel.rotate_signing_secret()
    channel.save()
    return str(channel.new_signing_secret or "")


def alert_channel_rotate_secret(*, channel: AlertChannel) -> str:
    """Give `channel` a new signing secret (the environment key no longer applies to it); return it once."""
    secret = channel.rotate_signing_secret()
    channel.save(update_fields=["signing_secret_encrypted", "updated_at"])
    _log(
        logging.INFO,
        f"alert channel {channel.name}: signing secret rotated",
        phase="rotate_secret",
        operation="alert_channel",
        channel_id=channel.pk,
    )
    return secret


def alert_deliveries_resend(*, deliveries: Iterable[AlertDelivery]) -> int:
    """Put failed deliveries back to pending with a fresh attempt budget and queue them."""
    ids = [d.pk for d in deliveries if d.status == DeliveryStatusChoices.FAILED]
    with transaction.atomic():
        AlertDelivery.objects.filter(pk__in=ids, status=DeliveryStatusChoices.FAILED).update(
            status=DeliveryStatusChoices.PENDING, attempts=0, next_attempt_at=None, updated_at=timezone.now()
        )
        enqueue_on_commit(ids)
    return len(ids)

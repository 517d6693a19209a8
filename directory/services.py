"""Read the directory, keep people and groups, link accounts to them, and reconcile the directory findings.

Why the read and the apply are apart: the read (network, minutes on a large forest) holds no local
transaction; the apply is one transaction that only runs when the read was complete. A read that
failed changes nothing but its own ``DirectoryRead`` row: every person keeps the flags of the last
good read, nobody becomes deleted, and no finding is opened or resolved from it ("could not read is
not gone"). Links and findings are re-evaluated after each directory read that succeeded and after
each account sync (post-sync hook ``directory``, order 170), always from the stored people.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from accountsync.models import InstanceAccount
from config.logging import log_event
from directory.conf import DirectoryConf, directory_conf
from directory.ldapread import DirectoryReadError, DirectorySnapshot, read_directory
from directory.linking import Candidate, Decision, Index, Mapping, decide
from directory.models import (
    AccountGroupLink,
    AccountMapping,
    AccountPersonLink,
    DirectoryGroup,
    DirectoryRead,
    Person,
    PersonStatus,
    ReadOutcome,
)
from directory.selectors import group_members
from findings.models import SeverityChoices
from findings.rules import DETAIL_ITEMS, feature_rule_register
from findings.services import findings_reconcile
from instances.models import Instance

logger = logging.getLogger(__name__)
MODULE = "directory"
HOOK_ORDER = 170

# One code for the orphaned access of a disabled and of a deleted person, the status in the detail: AD
# disables a leaver first and deletes the entry weeks later; two codes would resolve one finding and
# open another for the same unremoved access, losing its "open since" and anyone's acknowledgement.
RULE_ORPHANED = "DIRECTORY_ORPHANED_ACCESS"
RULE_GROUP_MEMBER = "DIRECTORY_GROUP_DISABLED_MEMBER"


def register_rules() -> None:
    """Declare the directory's finding rules (from ``DirectoryConfig.ready``).

    Titles and descriptions are marked for the catalog only: the findings admin translates them when it
    shows them, in the reader's language (as baselines' DRIFT does).
    """
    feature_rule_register(
        code=RULE_ORPHANED,
        severity=SeverityChoices.HIGH,
        title=gettext_noop("Account of a disabled or deleted person"),
        description=gettext_noop(
            "The account belongs (by a linking rule or the mapping table) to a person the directory lists as "
            "disabled, or no longer lists at all in a complete read: access nobody is responsible for. "
            "See docs/directory.md."
        ),
    )
    feature_rule_register(
        code=RULE_GROUP_MEMBER,
        severity=SeverityChoices.MEDIUM,
        title=gettext_noop("Windows group login with disabled members"),
        description=gettext_noop(
            "A SQL Server Windows group login lets in the members of a directory group, and some of them are "
            "disabled: the group's membership was not cleaned up when they left. See docs/directory.md."
        ),
    )


# --- the directory read ----------------------------------------------------------------------


@dataclass
class ApplyResult:
    added: int = 0
    changed: int = 0
    disabled: int = 0
    deleted: int = 0
    reactivated: int = 0
    groups: int = 0
    instances: int = 0
    links: int = 0
    findings: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "changed": self.changed,
            "disabled": self.disabled,
            "deleted": self.deleted,
            "reactivated": self.reactivated,
            "groups": self.groups,
            "instances": self.instances,
            "links": self.links,
            "findings": dict(self.findings),
        }


def _server(conf: DirectoryConf) -> str:
    return conf.uri.split()[0] if conf.uri else ""


def directory_sync(
    *, via: str = "system", conf: DirectoryConf | None = None, now: datetime | None = None
) -> DirectoryRead:
    """Read the directory once and, only when the read is complete, apply it and re-evaluate every instance."""
    started = now or timezone.now()
    log = {"module": MODULE, "operation": "directory_sync", "phase": "read"}
    try:
        conf = conf or directory_conf()
    except ImproperlyConfigured as exc:  # recorded like any failed read, so the status says what to fix
        read = DirectoryRead.objects.create(started_at=started, via=via[:16])
        return _read_failed(read, DirectoryReadError("configuration", str(exc)), log)
    read = DirectoryRead.objects.create(started_at=started, server=_server(conf), via=via[:16])
    if not conf.enabled:
        return _read_failed(read, DirectoryReadError("configuration", "WHALEFALL_DIRECTORY_URI is not set"), log)
    try:
        snapshot = read_directory(conf)
        _plausible(snapshot)
    except DirectoryReadError as exc:
        return _read_failed(read, exc, log)
    result = directory_apply(snapshot=snapshot, now=timezone.now(), conf=conf)
    read.outcome = ReadOutcome.OK
    read.finished_at = timezone.now()
    read.people = len(snapshot.people)
    read.groups = len(snapshot.groups)
    read.pages = snapshot.pages
    read.details = result.as_dict()
    read.save(update_fields=["outcome", "finished_at", "people", "groups", "pages", "details"])
    log_event(
        logger,
        logging.INFO,
        f"directory read OK: {read.people} people, {read.groups} groups in {read.pages} pages; "
        f"{result.disabled} disabled, {result.deleted} deleted, {result.links} links",
        **{**log, "phase": "applied"},
    )
    return read


def _plausible(snapshot: DirectorySnapshot) -> None:
    """A read that found nobody while people are known is a wrong base or filter, not everyone leaving."""
    if not snapshot.people and Person.objects.exclude(status=PersonStatus.DELETED).exists():
        raise DirectoryReadError(
            "partial", "the read returned no people at all; refusing to mark every known person deleted"
        )


def _read_failed(read: DirectoryRead, exc: DirectoryReadError, log: dict[str, Any]) -> DirectoryRead:
    read.outcome = ReadOutcome.FAILED
    read.finished_at = timezone.now()
    read.error_kind = exc.kind
    read.error = exc.message[:2000]
    read.save(update_fields=["outcome", "finished_at", "error_kind", "error"])
    log_event(
        logger,
        logging.WARNING,
        f"directory read failed ({exc.kind}): {exc.message}; every person keeps the last known flags",
        **{**log, "phase": "failed"},
        error_kind=exc.kind,
    )
    return read


def directory_apply(*, snapshot: DirectorySnapshot, now: datetime, conf: DirectoryConf | None = None) -> ApplyResult:
    """Store a COMPLETE read: people and groups upserted, the missing ones deleted, then every instance relinked."""
    result = ApplyResult()
    with transaction.atomic():
        by_guid = {p.guid: p for p in Person.objects.all()}
        seen: set[str] = set()
        unchanged: list[int] = []
        dn_to_id: dict[str, int] = {}
        for entry in snapshot.people:
            if entry.guid in seen:
                continue
            seen.add(entry.guid)
            status = PersonStatus.DISABLED if entry.disabled else PersonStatus.ACTIVE
            values = {
                "dn": entry.dn[:1024],
                "uid": entry.uid[:255],
                "name": entry.name[:255],
                "mail": entry.mail[:255],
                "department": entry.department[:255],
                "manager_dn": entry.manager_dn[:1024],
            }
            person = by_guid.get(entry.guid)
            if person is None:
                person = Person.objects.create(
                    guid=entry.guid, status=status, status_changed_at=now, first_seen_at=now, last_seen_at=now, **values
                )
                result.added += 1
            else:
                changed = [k for k, v in values.items() if getattr(person, k) != v]
                for k in changed:
                    setattr(person, k, values[k])
                if person.status != status:
                    if status == PersonStatus.DISABLED:
                        result.disabled += 1
                    elif person.status == PersonStatus.DELETED or person.status == PersonStatus.DISABLED:
                        result.reactivated += 1
                    person.status = status
                    person.status_changed_at = now
                    changed += ["status", "status_changed_at"]
                if changed:
                    result.changed += 1
                    person.last_seen_at = now
                    person.save(update_fields=[*changed, "last_seen_at"])
                else:
                    unchanged.append(person.pk)
            dn_to_id[entry.dn.lower()] = person.pk
        # in chunks, by primary key: a forest of 100k people must not become one statement of 100k parameters
        for chunk in _chunks(unchanged):
            Person.objects.filter(pk__in=chunk).update(last_seen_at=now)
        gone = [p.pk for guid, p in by_guid.items() if guid not in seen and p.status != PersonStatus.DELETED]
        for chunk in _chunks(gone):
            result.deleted += Person.objects.filter(pk__in=chunk).update(
                status=PersonStatus.DELETED, status_changed_at=now
            )
        _resolve_managers(dn_to_id)
        result.groups = _apply_groups(snapshot, dn_to_id, now)
    summary = relink_all(now=now, conf=conf)
    result.instances, result.links, result.findings = summary
    return result


def _resolve_managers(dn_to_id: dict[str, int]) -> None:
    for person in Person.objects.exclude(status=PersonStatus.DELETED).only("pk", "manager_dn", "manager_id"):
        wanted = dn_to_id.get(person.manager_dn.lower()) if person.manager_dn else None
        if wanted == person.pk:
            wanted = None
        if person.manager_id != wanted:
            Person.objects.filter(pk=person.pk).update(manager_id=wanted)


def _apply_groups(snapshot: DirectorySnapshot, dn_to_id: dict[str, int], now: datetime) -> int:
    by_guid = {g.guid: g for g in DirectoryGroup.objects.all()}
    seen: dict[str, DirectoryGroup] = {}
    for entry in snapshot.groups:
        if entry.guid in seen:
            continue
        group = by_guid.get(entry.guid)
        if group is None:
            group = DirectoryGroup.objects.create(
                guid=entry.guid, dn=entry.dn[:1024], name=entry.name[:255], first_seen_at=now, last_seen_at=now
            )
        else:
            group.dn, group.name, group.is_deleted, group.last_seen_at = entry.dn[:1024], entry.name[:255], False, now
            group.save(update_fields=["dn", "name", "is_deleted", "last_seen_at"])
        seen[entry.guid] = group
    group_dn = {g.dn.lower(): g.pk for g in seen.values()}
    for entry in snapshot.groups:
        group = seen[entry.guid]
        members = {dn_to_id[m.lower()] for m in entry.member_dns if m.lower() in dn_to_id}
        nested = {group_dn[m.lower()] for m in entry.member_dns if m.lower() in group_dn} - {group.pk}
        group.members.set(members)
        group.subgroups.set(nested)
    gone = [g.pk for guid, g in by_guid.items() if guid not in seen and not g.is_deleted]
    for chunk in _chunks(gone):
        DirectoryGroup.objects.filter(pk__in=chunk).update(is_deleted=True)
    return len(seen)


CHUNK = 500


def _chunks(ids: list[int]) -> list[list[int]]:
    return [ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK)]


# --- links and findings ----------------------------------------------------------------------


def directory_ever_read() -> bool:
    return DirectoryRead.objects.filter(outcome=ReadOutcome.OK).exists()


def _index() -> Index:
    people = [Candidate(p[0], p[1], p[2], p[3]) for p in Person.objects.values_list("pk", "uid", "mail", "status")]
    groups = list(DirectoryGroup.objects.filter(is_deleted=False).values_list("pk", "name"))
    mappings = [
        Mapping(person_id=m.person_id, account_id=m.account_id, pattern=m.pattern, instance_id=m.instance_id)
        for m in AccountMapping.objects.order_by("priority", "pk")
    ]
    return Index.build(people, groups, mappings)


def relink_all(*, now: datetime | None = None, conf: DirectoryConf | None = None) -> tuple[int, int, dict[str, int]]:
    """Relink and reconcile every instance that has accounts: (instances, links, findings summary)."""
    now = now or timezone.now()
    conf = conf or directory_conf()
    index = _index()
    links = 0
    totals: dict[str, int] = {}
    instances = Instance.objects.filter(pk__in=InstanceAccount.objects.values("instance_id"))
    count = 0
    for instance in instances:
        count += 1
        summary = instance_relink(instance=instance, conf=conf, index=index, now=now)
        links += summary["links"]
        for key in ("opened", "resolved"):
            totals[key] = totals.get(key, 0) + summary["findings"].get(key, 0)
    return count, links, totals


def instance_relink(
    *,
    instance: Instance,
    conf: DirectoryConf | None = None,
    index: Index | None = None,
    session_id: uuid.UUID | str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Rebuild the instance's account links from the stored people, then reconcile its directory findings."""
    conf = conf or directory_conf()
    index = index or _index()
    now = now or timezone.now()
    accounts = list(
        InstanceAccount.objects.filter(instance=instance).values_list("pk", "username", "kind", "attributes")
    )
    decisions: dict[int, Decision] = {}
    for account_id, username, kind, attributes in accounts:
        decision = decide(
            account_id=account_id,
            instance_id=instance.pk,
            db_type=instance.db_type,
            username=username,
            kind=kind,
            attributes=attributes or {},
            index=index,
            conf=conf,
        )
        if decision is not None:
            decisions[account_id] = decision
    with transaction.atomic():
        _store_links(instance, decisions, now)
        findings = findings_evaluate(instance=instance, session_id=session_id, now=now)
    return {"links": len(decisions), "findings": findings}


def _store_links(instance: Instance, decisions: dict[int, Decision], now: datetime) -> None:
    person_links = {a: d for a, d in decisions.items() if d.person_id is not None}
    group_links = {a: d for a, d in decisions.items() if d.group_id is not None}
    current = {link.account_id: link for link in AccountPersonLink.objects.filter(account__instance=instance)}
    AccountPersonLink.objects.filter(account__instance=instance).exclude(account_id__in=person_links).delete()
    for account_id, d in person_links.items():
        link = current.get(account_id)
        if link is None:
            AccountPersonLink.objects.create(
                account_id=account_id, person_id=d.person_id, rule=d.rule, matched=d.matched[:512], linked_at=now
            )
        elif (link.person_id, link.rule, link.matched) != (d.person_id, d.rule, d.matched[:512]):
            link.person_id, link.rule, link.matched, link.linked_at = d.person_id, d.rule, d.matched[:512], now
            link.save(update_fields=["person", "rule", "matched", "linked_at"])
    gcurrent = {link.account_id: link for link in AccountGroupLink.objects.filter(account__instance=instance)}
    AccountGroupLink.objects.filter(account__instance=instance).exclude(account_id__in=group_links).delete()
    for account_id, d in group_links.items():
        glink = gcurrent.get(account_id)
        if glink is None:
            AccountGroupLink.objects.create(
                account_id=account_id, group_id=d.group_id, matched=d.matched[:512], linked_at=now
            )
        elif glink.group_id != d.group_id:
            glink.group_id, glink.matched, glink.linked_at = d.group_id, d.matched[:512], now
            glink.save(update_fields=["group", "matched", "linked_at"])


def _can_log_in(account: InstanceAccount) -> bool:
    """Accounts that are no route in (removed, locked, disabled, roles) are not orphaned access."""
    attrs = account.attributes or {}
    return account.is_active and not account.is_locked and account.kind != "role" and not attrs.get("disabled")


def findings_evaluate(
    *, instance: Instance, session_id: uuid.UUID | str | None = None, now: datetime | None = None
) -> dict[str, int]:
    """Reconcile both directory rules on the instance from its stored links and people."""
    now = now or timezone.now()
    orphaned: dict[int, tuple[str, dict[str, Any]]] = {}
    links = AccountPersonLink.objects.filter(account__instance=instance).select_related("account", "person")
    for link in links:
        person = link.person
        if person.status == PersonStatus.ACTIVE or not _can_log_in(link.account):
            continue
        orphaned[link.account_id] = (
            str(SeverityChoices.HIGH),
            {
                "person": person.uid or person.dn,
                "name": person.name,
                "status": person.status,
                "since": person.status_changed_at.isoformat(),
                "rule": link.rule,
                "matched": link.matched,
            },
        )
    groups: dict[int, tuple[str, dict[str, Any]]] = {}
    glinks = AccountGroupLink.objects.filter(account__instance=instance).select_related("account", "group")
    for glink in glinks:
        if not _can_log_in(glink.account):
            continue
        disabled = [p.uid or p.dn for p in group_members(group=glink.group) if p.status != PersonStatus.ACTIVE]
        if disabled:
            groups[glink.account_id] = (
                str(SeverityChoices.MEDIUM),
                {
                    "group": glink.group.name,
                    "disabled_members": {"count": len(disabled), "examples": disabled[:DETAIL_ITEMS]},
                },
            )
    a = findings_reconcile(instance=instance, rule_code=RULE_ORPHANED, wanted=orphaned, session_id=session_id, now=now)
    b = findings_reconcile(
        instance=instance, rule_code=RULE_GROUP_MEMBER, wanted=groups, session_id=session_id, now=now
    )
    return {"opened": a.opened + b.opened, "resolved": a.resolved + b.resolved, "open": a.open_total + b.open_total}


def directory_on_sync_applied(event: Any) -> None:
    """The post-sync hook: relink the synced instance against the stored people (never the network)."""
    if not event.result.get("success") or not directory_ever_read():
        return
    summary = instance_relink(instance=event.instance, session_id=event.session_id)
    details = event.result.get("details")
    if isinstance(details, dict):
        details["directory"] = summary


def mapping_changed() -> None:
    """After the mapping table changed: relink every instance (a pattern can match on any of them)."""
    if directory_ever_read():
        relink_all()

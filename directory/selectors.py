"""Reads of the directory cross-check: who owns an account, who a group login lets in, and the read status."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from directory.models import (
    AccountGroupLink,
    AccountPersonLink,
    DirectoryGroup,
    DirectoryRead,
    Person,
    PersonStatus,
    ReadOutcome,
)


def account_managers(*, account_ids: Iterable[int]) -> dict[int, str]:
    """Account id -> the username its owner's manager signs in with (their uid/sAMAccountName).

    For routing access-review items: only accounts linked to a person whose manager is known and has a
    username are in the answer, so a caller falls back to its own default for the others. The manager's
    status is not filtered: a review routed to a disabled manager is visible as such, not silently lost.
    """
    ids = {int(i) for i in account_ids}
    if not ids:
        return {}
    rows = (
        AccountPersonLink.objects.filter(account_id__in=ids, person__manager__isnull=False)
        .exclude(person__manager__uid="")
        .values_list("account_id", "person__manager__uid")
    )
    return {account_id: uid for account_id, uid in rows}


def person_dict(person: Person | None) -> dict[str, Any] | None:
    """The person as the account page, the API and the exports show it."""
    if person is None:
        return None
    manager = person.manager
    return {
        "id": person.pk,
        "uid": person.uid,
        "name": person.name,
        "mail": person.mail,
        "department": person.department,
        "dn": person.dn,
        "status": person.status,
        "status_changed_at": person.status_changed_at,
        "last_directory_sync": person.last_seen_at,
        "manager": (
            {"id": manager.pk, "uid": manager.uid, "name": manager.name, "status": manager.status} if manager else None
        ),
    }


def account_people(*, account_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Account id -> {"person": ..., "rule": ..., "group": ...} for the linked accounts (two queries).

    ``group`` is set for a Windows group login: the group and the people it lets in (nested groups
    expanded), each with their status, because "who can log in" includes them.
    """
    ids = {int(i) for i in account_ids}
    if not ids:
        return {}
    found: dict[int, dict[str, Any]] = {}
    links = AccountPersonLink.objects.filter(account_id__in=ids).select_related("person", "person__manager")
    for link in links:
        found[link.account_id] = {
            "person": person_dict(link.person),
            "rule": link.rule,
            "matched": link.matched,
            "group": None,
        }
    group_links = AccountGroupLink.objects.filter(account_id__in=ids).select_related("group")
    for glink in group_links:
        members = group_members(group=glink.group)
        found[glink.account_id] = {
            "person": None,
            "rule": "windows_group",
            "matched": glink.matched,
            "group": {
                "id": glink.group.pk,
                "name": glink.group.name,
                "dn": glink.group.dn,
                "deleted": glink.group.is_deleted,
                "members": [
                    {"id": p.pk, "uid": p.uid, "name": p.name, "status": p.status, "department": p.department}
                    for p in members
                ],
            },
        }
    return found


def group_members(*, group: DirectoryGroup) -> list[Person]:
    """Every person the group lets in, through nested groups too (a cycle in the directory is read once)."""
    seen_groups = {group.pk}
    frontier = [group.pk]
    while frontier:
        nested = list(
            DirectoryGroup.subgroups.through.objects.filter(from_directorygroup_id__in=frontier)
            .exclude(to_directorygroup_id__in=seen_groups)
            .values_list("to_directorygroup_id", flat=True)
        )
        frontier = [g for g in set(nested) if g not in seen_groups]
        seen_groups.update(frontier)
    return list(Person.objects.filter(directory_groups__in=seen_groups).distinct().order_by("uid", "pk"))


@dataclass(frozen=True)
class DirectoryStatus:
    """What the directory status line says: when it last read OK, and the last attempt if that failed."""

    last_ok_at: datetime | None
    last_attempt_at: datetime | None
    last_failed_at: datetime | None
    error_kind: str
    error: str
    people: int

    @property
    def never_read(self) -> bool:
        return self.last_ok_at is None

    @property
    def failing(self) -> bool:
        return self.last_failed_at is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "last_ok_at": self.last_ok_at,
            "last_attempt_at": self.last_attempt_at,
            "last_failed_at": self.last_failed_at,
            "error_kind": self.error_kind,
            "error": self.error,
            "people": self.people,
        }


def directory_status() -> DirectoryStatus:
    """The last successful read and, when the latest finished attempt failed, that failure."""
    last_ok = DirectoryRead.objects.filter(outcome=ReadOutcome.OK).order_by("-started_at", "-pk").first()
    last = DirectoryRead.objects.exclude(outcome=ReadOutcome.RUNNING).order_by("-started_at", "-pk").first()
    failed = last if last is not None and last.outcome == ReadOutcome.FAILED else None
    return DirectoryStatus(
        last_ok_at=last_ok.finished_at if last_ok else None,
        last_attempt_at=last.started_at if last else None,
        last_failed_at=failed.finished_at if failed else None,
        error_kind=failed.error_kind if failed else "",
        error=failed.error if failed else "",
        people=Person.objects.exclude(status=PersonStatus.DELETED).count() if last_ok else 0,
    )


def status_text(status: DirectoryStatus | None = None) -> str:
    """The one status line every page shows: last good read, and the failed attempt after it (with the reason)."""
    from django.utils import formats
    from django.utils.timezone import localtime
    from django.utils.translation import gettext

    status = status or directory_status()

    def when(value: datetime) -> str:
        return formats.date_format(localtime(value), "DATETIME_FORMAT")

    if status.never_read and not status.failing:
        from django.core.exceptions import ImproperlyConfigured

        from directory.conf import directory_conf

        try:
            enabled = directory_conf().enabled
        except ImproperlyConfigured:  # set, but wrong: the read will say why; here it counts as on
            enabled = True
        if not enabled:  # not an outage: nobody switched the cross-check on
            return gettext("The directory cross-check is off: set WHALEFALL_DIRECTORY_URI (docs/directory.md).")
    if status.never_read:
        text = gettext("The directory has never been read successfully.")
    else:
        text = gettext("Directory last read OK at %(at)s.") % {"at": when(status.last_ok_at)}
    if status.failing:
        failed = gettext("Last attempt failed at %(at)s (%(kind)s: %(reason)s); people keep their last known status.")
        text += " " + failed % {"at": when(status.last_failed_at), "kind": status.error_kind, "reason": status.error}
    return text


STATUS_BADGE = {PersonStatus.ACTIVE: "ok", PersonStatus.DISABLED: "failed", PersonStatus.DELETED: "removed"}


def account_section(*, account_id: int) -> dict[str, Any]:
    """The account page's person section (template directory/_account_person.html) as context variables."""
    from directory.models import LinkRule

    status = directory_status()
    link = account_people(account_ids=[account_id]).get(account_id) or {}
    labels = dict(PersonStatus.choices)
    context: dict[str, Any] = {
        "directory_panel": True,
        "directory_status": status,
        "directory_status_text": status_text(status),
        "directory_link": link,
    }
    person = link.get("person")
    if person:
        context["directory_badge"] = STATUS_BADGE.get(person["status"], "none")
        context["directory_status_label"] = labels.get(person["status"], person["status"])
        context["directory_rule_label"] = dict(LinkRule.choices).get(link["rule"], link["rule"])
    for member in (link.get("group") or {}).get("members", []):
        member["badge"] = STATUS_BADGE.get(member["status"], "none")
        member["status_label"] = labels.get(member["status"], member["status"])
    return context


# --- the person columns of the accounts export (exports/columns.py) ----------------------------

PERSON_COLUMNS = ("person_uid", "person_name", "person_department", "person_manager", "person_status")
# joined into the export's one query (a reverse one-to-one: a LEFT JOIN, so unlinked accounts stay)
PERSON_JOINS = ("person_link__person", "person_link__person__manager")


def person_columns(account: Any) -> dict[str, Any]:
    """The export's person columns of one account whose link was joined (``PERSON_JOINS``); empty when unlinked."""
    try:
        person = account.person_link.person
    except AccountPersonLink.DoesNotExist:
        return dict.fromkeys(PERSON_COLUMNS)
    return {
        "person_uid": person.uid,
        "person_name": person.name,
        "person_department": person.department,
        "person_manager": person.manager.uid if person.manager else None,
        "person_status": person.status,
    }

"""Replayable grant scripts (issue 23 part 4): what the admin, the API and access reviews call.

Why here and not in the views: a script is built from stored snapshots alone (current, or
the one valid at `at`), so reviews (revoke decisions), the admin and the API share one
function per question, and every script says the same things in the same order.

Nothing is executed anywhere: a script is text for a DBA to review and run.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from django.db.models import Q

from accountsync.models import AccountPermission, InstanceAccount
from audit.models import AuditKind
from audit.services import audit_record
from grantscripts.scripts import (
    GrantScriptError,
    Line,
    Options,
    Renderer,
    Subject,
    account_lines,
    comment,
    generator,
    revoke_lines,
    script_header,
    subject_lines,
)
from instances.models import Instance

__all__ = [
    "GrantScriptError",
    "account_script",
    "grant_script_audit",
    "instance_account_ids",
    "instance_script",
    "revoke_script",
    "selection_script",
]

CHUNK = 500  # accounts whose snapshots are read per query while a selection streams


def _snapshots(account_ids: list[int], at: datetime | None) -> dict[int, dict[str, Any]]:
    """account id -> its snapshot (open, or valid at `at`), in one query."""
    rows = AccountPermission.objects.filter(account_id__in=account_ids)
    if at is None:
        rows = rows.filter(valid_to__isnull=True)
    else:
        rows = rows.filter(valid_from__lte=at).filter(Q(valid_to__isnull=True) | Q(valid_to__gt=at))
    found: dict[int, dict[str, Any]] = {}
    for account_id, snapshot in rows.order_by("account_id", "valid_from").values_list("account_id", "snapshot"):
        found[account_id] = snapshot  # the latest valid_from wins, as account_permission_at
    return found


def _subject(account: InstanceAccount, snapshot: dict[str, Any] | None) -> Subject:
    instance = account.instance
    return Subject(
        db_type=instance.db_type,
        identity=account.identity,
        username=account.username,
        host=account.host,
        kind=account.kind,
        snapshot=snapshot,
        server_version=instance.version or "",
    )


def _when(at: datetime | None) -> str:
    return f"as of {at.isoformat()}" if at is not None else "current access"


def account_script(*, account: InstanceAccount, at: datetime | None = None, options: Options | None = None) -> str:
    """The replay DDL of one account: CREATE, its GRANTs and memberships (roles it holds must exist on the target)."""
    options = options or Options()
    subject = _subject(account, _snapshots([account.pk], at).get(account.pk))
    writer = generator(subject.db_type, options)
    title = f"grant script for {account.identity} on {account.instance.name} ({_when(at)})"
    return Renderer(subject.db_type).render(
        [*script_header(subject.db_type, title, writer), *account_lines(writer, subject)]
    )


def selection_script(
    *, accounts: Iterable[InstanceAccount], at: datetime | None = None, options: Options | None = None
) -> Iterator[str]:
    """The replay DDL of several accounts, streamed: per instance, every CREATE, then every GRANT, then memberships.

    Why in three passes: a membership or a default privilege names other accounts, which must
    exist first; a pass reads snapshots `CHUNK` accounts at a time, so a large selection never
    sits in memory whole. Accounts of several instances (even families) give one section each.
    """
    options = options or Options()
    ids = [a.pk if isinstance(a, InstanceAccount) else int(a) for a in accounts]
    by_instance: dict[int, list[int]] = {}
    for instance_id, account_id in (
        InstanceAccount.objects.filter(pk__in=ids)
        .order_by("instance_id", "kind", "identity")
        .values_list("instance_id", "pk")
    ):
        by_instance.setdefault(instance_id, []).append(account_id)
    instances = Instance.objects.in_bulk(list(by_instance))
    if not by_instance:
        yield "-- no accounts selected\n"
        return
    for instance_id, account_ids in by_instance.items():
        instance = instances[instance_id]
        writer = generator(instance.db_type, options)
        renderer = Renderer(instance.db_type)
        title = f"grant script for {len(account_ids)} account(s) on {instance.name} ({_when(at)})"
        yield renderer.render(script_header(instance.db_type, title, writer))
        for phase in ("create", "grants", "members"):
            yield renderer.render([comment(f"--- {phase} ---")])
            for subject in _subjects(account_ids, at, roles_first=phase == "create"):
                lines = subject_lines(writer, subject, phase)
                if lines:
                    yield renderer.render(lines)


def _subjects(account_ids: list[int], at: datetime | None, *, roles_first: bool) -> Iterator[Subject]:
    order = sorted(account_ids)
    for start in range(0, len(order), CHUNK):
        chunk = order[start : start + CHUNK]
        snapshots = _snapshots(chunk, at)
        accounts = list(InstanceAccount.objects.filter(pk__in=chunk).select_related("instance").order_by("identity"))
        if roles_first:
            accounts.sort(key=lambda a: (a.kind != "role", a.identity))
        for account in accounts:
            yield _subject(account, snapshots.get(account.pk))


def instance_script(*, instance: Instance, at: datetime | None = None, options: Options | None = None) -> Iterator[str]:
    """Every account of an instance: the active ones, or at `at` every one that had a snapshot then."""
    return selection_script(accounts=instance_account_ids(instances=[instance], at=at), at=at, options=options)


def instance_account_ids(*, instances: Iterable[Instance], at: datetime | None = None) -> Any:
    """The ids of the instances' accounts a script covers: the active ones, or those with a snapshot valid at `at`."""
    condition = Q(is_active=True) if at is None else Q(pk__in=accounts_valid_at(at))
    return InstanceAccount.objects.filter(instance__in=list(instances)).filter(condition).values_list("pk", flat=True)


def accounts_valid_at(at: datetime) -> Any:
    """The ids of accounts that had a snapshot valid at `at` (one row's interval holds it), as a subquery."""
    valid = AccountPermission.objects.filter(valid_from__lte=at).filter(Q(valid_to__isnull=True) | Q(valid_to__gt=at))
    return valid.values("account_id")


def revoke_script(
    *,
    account: InstanceAccount,
    privileges: Iterable[tuple[str, str]] = (),
    roles: Iterable[str] = (),
    options: Options | None = None,
) -> str:
    """REVOKE statements for chosen (scope, privilege) pairs, as stored in the snapshot, and role memberships.

    Raises GrantScriptError for a malformed pair, an unknown scope or nothing chosen. A pair the
    current snapshot no longer holds is still revoked, with a comment saying so: a review decided
    on the access at its start, and revoking what is already gone is harmless.
    """
    options = options or Options()
    subject = _subject(account, _snapshots([account.pk], None).get(account.pk))
    writer = generator(subject.db_type, options)
    lines: list[Line] = [
        comment(f"revoke script for {account.identity} on {account.instance.name}"),
        comment("generated by WhaleFall; review before running, nothing was executed"),
        *revoke_lines(writer, subject, list(privileges), list(roles)),
    ]
    return Renderer(subject.db_type).render(lines)


def grant_script_audit(
    *, request: Any, what: str, obj: Any = None, at: datetime | None = None, details: dict[str, Any] | None = None
) -> None:
    """Record that someone exported a grant or revoke script (an export: who, of what, at which time)."""
    audit_record(
        AuditKind.EXPORT,
        request=request,
        obj=obj,
        details={"kind": what, "format": "sql", "at": at.isoformat() if at else None, **(details or {})},
    )

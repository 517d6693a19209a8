"""Which person owns an account: the configured rules, tried in order, on names only (no database access).

Why pure: the rules decide findings an auditor signs on, so they are tested on plain values (every
family's names, SQL Server's recorded Windows logins) without a directory or a database. The service
builds the index from the stored people and applies the decisions.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from directory.conf import WELL_KNOWN_DOMAINS, DirectoryConf


@dataclass(frozen=True)
class Candidate:
    """A person as the rules see it."""

    id: int
    uid: str
    mail: str
    status: str


@dataclass(frozen=True)
class Mapping:
    """An explicit mapping row (``account_id`` or ``pattern``), already in priority order."""

    person_id: int
    account_id: int | None = None
    pattern: str = ""
    instance_id: int | None = None


@dataclass(frozen=True)
class Decision:
    """A link: to a person (``person_id``) or, for a Windows group login, to a group (``group_id``)."""

    rule: str
    matched: str
    person_id: int | None = None
    group_id: int | None = None


@dataclass
class Index:
    by_uid: dict[str, list[Candidate]] = field(default_factory=dict)
    by_mail_local: dict[str, list[Candidate]] = field(default_factory=dict)
    groups_by_name: dict[str, list[int]] = field(default_factory=dict)
    mappings: list[Mapping] = field(default_factory=list)

    @classmethod
    def build(
        cls, people: Iterable[Candidate], groups: Iterable[tuple[int, str]] = (), mappings: Iterable[Mapping] = ()
    ) -> Index:
        index = cls(mappings=list(mappings))
        for person in people:
            if person.uid:
                index.by_uid.setdefault(person.uid.lower(), []).append(person)
            local = person.mail.rsplit("@", 1)[0].lower() if "@" in person.mail else ""
            if local:
                index.by_mail_local.setdefault(local, []).append(person)
        for group_id, name in groups:
            if name:
                index.groups_by_name.setdefault(name.lower(), []).append(group_id)
        return index


def _one(candidates: list[Candidate]) -> Candidate | None:
    """The one person a name points to; a name shared by several live people links to nobody (ambiguous).

    A deleted person only counts when nobody live has the name: a uid reused by a new hire is the new hire's.
    """
    live = [c for c in candidates if c.status != "deleted"]
    pool = live or candidates
    return pool[0] if len(pool) == 1 else None


def windows_name(username: str) -> tuple[str, str] | None:
    """``DOMAIN\\name`` split in two (domain upper-cased), or None for any other name."""
    if "\\" not in username:
        return None
    domain, _, name = username.partition("\\")
    if not domain or not name:
        return None
    return domain.upper(), name


def _mapping(index: Index, *, account_id: int, instance_id: int, username: str) -> Decision | None:
    for m in index.mappings:
        if m.account_id is not None and m.account_id == account_id:
            return Decision("mapping", f"account #{account_id}", person_id=m.person_id)
    lowered = username.lower()
    for m in index.mappings:
        if m.account_id is not None or (m.instance_id is not None and m.instance_id != instance_id):
            continue
        if m.pattern and fnmatch.fnmatchcase(lowered, m.pattern.lower()):
            return Decision("mapping", m.pattern, person_id=m.person_id)
    return None


def decide(
    *,
    account_id: int,
    instance_id: int,
    db_type: str,
    username: str,
    kind: str,
    attributes: dict[str, Any],
    index: Index,
    conf: DirectoryConf,
) -> Decision | None:
    """The first rule (in ``conf.link_rules`` order) that names exactly one person or group; None: unlinked.

    Roles are not people (a PostgreSQL group role, an Oracle role): only users and logins are linked,
    except by an explicit mapping. A Windows name is only ever linked by the Windows rule (or a mapping):
    ``CORP\\alice`` is not the local account ``alice`` of another family.
    """
    win = windows_name(username)
    for rule in conf.link_rules:
        if rule == "mapping":
            found = _mapping(index, account_id=account_id, instance_id=instance_id, username=username)
            if found:
                return found
            continue
        if kind == "role":
            continue
        if rule == "windows":
            if win is None:
                continue
            domain, name = win
            if domain in WELL_KNOWN_DOMAINS or (conf.windows_domains and domain not in conf.windows_domains):
                return None
            if str(attributes.get("type") or "") == "G":  # a Windows group login (sys.server_principals type G)
                groups = index.groups_by_name.get(name.lower(), [])
                return Decision("windows", username, group_id=groups[0]) if len(groups) == 1 else None
            person = _one(index.by_uid.get(name.lower(), []))
            if person is not None:
                return Decision("windows", username, person_id=person.id)
            continue
        if win is not None:
            continue
        if rule == "username":
            person = _one(index.by_uid.get(username.lower(), []))
            if person is not None:
                return Decision("username", username, person_id=person.id)
        elif rule == "mail":
            person = _one(index.by_mail_local.get(username.lower(), []))
            if person is not None:
                return Decision("mail", username, person_id=person.id)
    return None

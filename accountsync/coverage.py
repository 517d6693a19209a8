"""Reading an instance's coverage: which scopes its syncs could not read, since when, and what that means for grants.

Why its own module: the admin, the API, the exports and the point-in-time answer all
mark a grant that lies in an unreadable scope as "last known at <time>" rather than as
current fact, and they must mark the same grants. The episodes are written by the apply
(accountsync/services.py, ``_coverage``); this module only reads them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from accountsync.adapters.base import CoverageGap, GapKind
from accountsync.models import CoverageGapEpisode


def gap_episodes(*, instance: Any, open_only: bool = False) -> QuerySet[CoverageGapEpisode]:
    """An instance's coverage history, newest first (open episodes only with `open_only`)."""
    rows = CoverageGapEpisode.objects.filter(instance=instance)
    if open_only:
        rows = rows.filter(closed_at__isnull=True)
    return rows.order_by("-opened_at", "scope", "kind")


def gaps_at(*, instance: Any, at: datetime | None = None) -> list[CoverageGapEpisode]:
    """The episodes open at `at` (now when None): what the picture of that moment could not see."""
    rows = CoverageGapEpisode.objects.filter(instance=instance)
    if at is None:
        rows = rows.filter(closed_at__isnull=True)
    else:
        rows = rows.filter(Q(opened_at__lte=at), Q(closed_at__isnull=True) | Q(closed_at__gt=at))
    return list(rows.order_by("scope", "kind"))


@dataclass(frozen=True)
class LastKnown:
    """Why a grant is shown as last known: the gap it lies in and when its scope was last read."""

    scope: str
    since: datetime
    last_read_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "gap_scope": self.scope,
            "unreadable_since": self.since.isoformat(),
            "last_read_at": self.last_read_at.isoformat() if self.last_read_at else None,
        }


class LastKnownMarker:
    """Marks the privileges of a snapshot that lie in an unreadable gap (built once per instance and moment)."""

    def __init__(self, episodes: Iterable[CoverageGapEpisode]) -> None:
        self._gaps = [
            (CoverageGap(scope=e.scope, reason=e.reason, kind=e.kind, inclusive=e.inclusive), e)
            for e in episodes
            if e.kind == GapKind.UNREADABLE
        ]

    def __bool__(self) -> bool:
        return bool(self._gaps)

    def mark(self, scope: str) -> LastKnown | None:
        for gap, episode in self._gaps:
            if gap.covers(scope):
                return LastKnown(episode.scope, episode.opened_at, episode.last_read_at)
        return None

    def privileges(self, privileges: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each privilege as a new dict, with ``last_known`` (a LastKnown dict) where it lies in a gap."""
        out = []
        for privilege in privileges:
            known = self.mark(privilege.get("scope", "")) if self._gaps else None
            out.append({**privilege, "last_known": known.as_dict() if known else None})
        return out


def last_known_marker(*, instance: Any, at: datetime | None = None) -> LastKnownMarker:
    return LastKnownMarker(gaps_at(instance=instance, at=at))


def last_known_privileges(marker: LastKnownMarker, snapshot: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The privileges of `snapshot` shown as last known (scope, privilege, since, last read), for the API."""
    if not marker or not snapshot:
        return []
    out = []
    for privilege in snapshot.get("privileges") or []:
        known = marker.mark(privilege.get("scope", ""))
        if known is not None:
            out.append({"scope": privilege.get("scope"), "privilege": privilege.get("privilege"), **known.as_dict()})
    return out


def episode_dict(episode: CoverageGapEpisode) -> dict[str, Any]:
    """An open episode as a sync result's ``details["coverage"]["gaps"]`` (and so the record) stores it."""
    return {
        "scope": episode.scope,
        "kind": episode.kind,
        "reason": episode.reason,
        "fix": episode.fix,
        "inclusive": episode.inclusive,
        "since": episode.opened_at.isoformat() if episode.opened_at else None,
        "last_read_at": episode.last_read_at.isoformat() if episode.last_read_at else None,
    }


def gap_dict(episode: CoverageGapEpisode) -> dict[str, Any]:
    """An episode as the API shows it: the stored shape, with when it closed instead of `inclusive`."""
    shown = episode_dict(episode)
    del shown["inclusive"]
    shown["closed_at"] = episode.closed_at.isoformat() if episode.closed_at else None
    return shown


def result_gaps(details: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The gaps a sync result's (or record's) details list, unreadable and out of scope alike."""
    return list(((details or {}).get("coverage") or {}).get("gaps") or ())


def unreadable_count(gaps: Iterable[dict[str, Any]]) -> int:
    """How many of `gaps` are unreadable: what makes a sync "completed with gaps" (out of scope is a choice)."""
    return sum(1 for gap in gaps if gap.get("kind") == GapKind.UNREADABLE)


class EpisodeCache:
    """Every unreadable episode, loaded once, for marking many snapshots (an export) in one pass.

    Why all at once: an export streams snapshots of many instances; one query in all (the
    table holds a few rows per instance) keeps the export's query count independent of
    the number of instances and accounts.
    """

    def __init__(self) -> None:
        self._episodes: dict[int, list[CoverageGapEpisode]] | None = None

    def marker(self, instance_id: int, at: datetime | None) -> LastKnownMarker:
        """The marker for a snapshot valid at `at` (None: the current one, so the gaps open now)."""
        if self._episodes is None:
            self._episodes = {}
            for episode in CoverageGapEpisode.objects.filter(kind=GapKind.UNREADABLE).order_by("instance_id", "scope"):
                self._episodes.setdefault(episode.instance_id, []).append(episode)
        episodes = self._episodes.get(instance_id, [])
        if at is None:
            return LastKnownMarker(e for e in episodes if e.closed_at is None)
        return LastKnownMarker(e for e in episodes if e.opened_at <= at and (e.closed_at is None or e.closed_at > at))

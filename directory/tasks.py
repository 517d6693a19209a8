"""django-q2 entry point: the scheduled directory read ("whalefall: directory sync")."""

from __future__ import annotations

from typing import Any


def run_directory_sync() -> dict[str, Any]:
    """One read; a failed read is recorded on its row and returned, never raised (the next run tries again)."""
    from directory.services import directory_sync

    read = directory_sync(via="schedule")
    return {"outcome": read.outcome, "error_kind": read.error_kind, "people": read.people, "groups": read.groups}

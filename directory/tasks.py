"""django-q2 entry point: the scheduled directory read ("whalefall: directory sync")."""

from __future__ import annotations

from typing import Any


def run_directory_sync() -> dict[str, Any]:
    """One read; a failed read is recorded on its row and returned, never raised (the next run tries again).

    With the cross-check off (no WHALEFALL_DIRECTORY_URI) the schedule does nothing and records
    nothing: switched off is not an outage, and the account page says "off", not "failed".
    The ``directory_sync`` command still refuses loudly, since someone asked for a read.
    """
    from django.core.exceptions import ImproperlyConfigured

    from directory.conf import directory_conf
    from directory.services import directory_sync

    try:
        enabled = directory_conf().enabled
    except ImproperlyConfigured:
        enabled = True  # set but wrong: the read records why
    if not enabled:
        return {"outcome": "off"}
    read = directory_sync(via="schedule")
    return {"outcome": read.outcome, "error_kind": read.error_kind, "people": read.people, "groups": read.groups}

"""django-q2 entry point of the history retention schedule ("whalefall: history retention", daily).

Why so thin: the service decides everything (off, what is old, the archive first); the task only
says it runs on the schedule, so the audit event names the schedule as its origin. With
WHALEFALL_RETENTION_DAYS=0 (the default) it returns at once having read and written nothing.
"""

from __future__ import annotations

from typing import Any


def run_history_retention() -> dict[str, Any]:
    """Archive then prune history older than WHALEFALL_RETENTION_DAYS; ``{"enabled": False}`` when off."""
    from audit.models import AuditVia
    from exports.retention import history_prune

    return history_prune(via=AuditVia.SCHEDULE).as_dict()

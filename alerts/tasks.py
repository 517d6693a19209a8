"""django-q2 entry points for alerts: take a delivery id, call the service, stay idempotent.

Why so thin: django-q2 delivers at least once and pickles arguments; the service
re-reads the delivery and sends only a pending one (see alert_delivery_attempt).
"""

from __future__ import annotations

from typing import Any


def deliver_alert(delivery_id: int) -> str:
    """One attempt of one alert delivery; schedules its own retry on failure."""
    from alerts.services import alert_delivery_attempt

    return alert_delivery_attempt(delivery_id=delivery_id)


def check_operational_alerts() -> dict[str, Any]:
    """The periodic operational check (schedule "whalefall: operational alert check"): staleness, failure streaks.

    Idempotent: an alert already open is not sent again, so a duplicate run sends nothing.
    """
    from alerts.operational import operational_check

    return operational_check().as_dict()

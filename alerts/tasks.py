"""django-q2 entry points for alerts: take a delivery id, call the service, stay idempotent.

Why so thin: django-q2 delivers at least once and pickles arguments; the service
re-reads the delivery and sends only a pending one (see alert_delivery_attempt).
"""

from __future__ import annotations


def deliver_alert(delivery_id: int) -> str:
    """One attempt of one alert delivery; schedules its own retry on failure."""
    from alerts.services import alert_delivery_attempt

    return alert_delivery_attempt(delivery_id=delivery_id)

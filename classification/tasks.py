"""django-q2 entry points for classifications: thin, idempotent (a repeat evaluates to the same result)."""

from __future__ import annotations

from typing import Any


def evaluate_all() -> dict[str, Any]:
    """Re-evaluate the fleet after a rule changed (facts first, for instances never refreshed)."""
    from classification.models import InstanceFacts
    from classification.services import classification_evaluate, facts_refresh_all

    if not InstanceFacts.objects.exists():
        facts_refresh_all()
    return classification_evaluate().as_dict()


def store_daily_counts() -> int:
    """The daily schedule: today's count per classification (the dashboard's 30-day chart)."""
    from classification.services import daily_counts_store

    return daily_counts_store()

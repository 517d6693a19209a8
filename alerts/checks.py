"""System check of the operational alert thresholds (``manage.py check``, and every command that runs checks).

Why an error and not a warning: a typo in WHALEFALL_ALERT_THRESHOLDS ("prod" for
"production", a string for a number) would otherwise silently keep the defaults, and
nobody learns that the production threshold they set is not the one in force.
"""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, register

from alerts.thresholds import EXAMPLE, threshold_errors


@register()
def alert_thresholds_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    return [
        Error(
            message,
            hint=f"Environment variables: WHALEFALL_ALERT_FAILURE_STREAK=3, WHALEFALL_ALERT_STALE_HOURS=26, "
            f"WHALEFALL_ALERT_THRESHOLDS='{EXAMPLE}' (0 turns an alert off; see docs/alerts.md).",
            id="alerts.E001",
        )
        for message in threshold_errors()
    ]

"""Thresholds of the operational alerts, per environment (docs/alerts.md, "Operational alerts").

Why a table per environment: a production database failing twice or unsynced for six hours
is news, a development one is not. ``WHALEFALL_ALERT_FAILURE_STREAK`` and
``WHALEFALL_ALERT_STALE_HOURS`` are the defaults; ``WHALEFALL_ALERT_THRESHOLDS`` (a JSON
object, e.g. ``{"production": {"failure_streak": 2, "stale_hours": 6}}``) overrides either of
them per environment, and 0 turns that alert off there. ``threshold_errors`` is what the
system check (``alerts.checks``) reports at start-up; at run time a table with errors falls
back to the defaults for every environment and logs why (a WSGI server runs no checks).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from config.logging import log_event
from instances.models import Environment

logger = logging.getLogger(__name__)

KEYS = ("failure_streak", "stale_hours")
DEFAULT = "*"  # the table's entry for an environment it does not name
EXAMPLE = '{"production": {"failure_streak": 2, "stale_hours": 6}, "development": {"failure_streak": 0}}'


@dataclass(frozen=True)
class Thresholds:
    """What opens the operational alerts of one environment; 0 means that alert is off."""

    failure_streak: int
    stale_hours: float


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _defaults() -> tuple[Thresholds | None, list[str]]:
    streak = getattr(settings, "WHALEFALL_ALERT_FAILURE_STREAK", 3)
    hours = getattr(settings, "WHALEFALL_ALERT_STALE_HOURS", 26.0)
    errors = []
    if not _is_int(streak) or streak < 0:
        errors.append(f"WHALEFALL_ALERT_FAILURE_STREAK must be a whole number of syncs, 0 or more (got {streak!r}).")
    if not _is_number(hours) or hours < 0:
        errors.append(f"WHALEFALL_ALERT_STALE_HOURS must be a number of hours, 0 or more (got {hours!r}).")
    return (None if errors else Thresholds(failure_streak=streak, stale_hours=float(hours))), errors


def _overrides() -> tuple[dict[str, dict[str, Any]], list[str]]:
    raw = getattr(settings, "WHALEFALL_ALERT_THRESHOLDS", "")
    if isinstance(raw, str):
        if not raw.strip():
            return {}, []
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            return {}, [f"WHALEFALL_ALERT_THRESHOLDS is not valid JSON ({exc})."]
    if not isinstance(raw, dict):
        return {}, [f"WHALEFALL_ALERT_THRESHOLDS must be a JSON object of environments (got {type(raw).__name__})."]
    errors = []
    known = list(Environment.values)
    for environment, values in raw.items():
        where = f"WHALEFALL_ALERT_THRESHOLDS[{environment!r}]"
        if environment not in known:
            errors.append(
                f"WHALEFALL_ALERT_THRESHOLDS names an unknown environment {environment!r} ({', '.join(known)})."
            )
            continue
        if not isinstance(values, dict):
            errors.append(f"{where} must be an object with failure_streak and/or stale_hours (got {values!r}).")
            continue
        for key, value in values.items():
            if key not in KEYS:
                errors.append(f"{where} has an unknown key {key!r} ({', '.join(KEYS)}).")
            elif key == "failure_streak" and (not _is_int(value) or value < 0):
                errors.append(f"{where}['failure_streak'] must be a whole number of syncs, 0 or more (got {value!r}).")
            elif key == "stale_hours" and (not _is_number(value) or value < 0):
                errors.append(f"{where}['stale_hours'] must be a number of hours, 0 or more (got {value!r}).")
    return raw, errors


def threshold_errors() -> list[str]:
    """Every problem with the three settings, worded for the person who set them (empty: all valid)."""
    return _defaults()[1] + _overrides()[1]


def threshold_table() -> dict[str, Thresholds]:
    """The thresholds of every environment (and ``DEFAULT``); invalid settings fall back to 3 and 26 (logged)."""
    defaults, default_errors = _defaults()
    overrides, errors = _overrides()
    if default_errors or errors:
        log_event(
            logger,
            logging.ERROR,
            "operational alert thresholds are invalid, using failure_streak=3 and stale_hours=26 everywhere: "
            + " ".join(default_errors + errors),
            module="alerts",
            operation="alert_thresholds",
            phase="error",
        )
        defaults, overrides = Thresholds(failure_streak=3, stale_hours=26.0), {}
    assert defaults is not None
    table = {DEFAULT: defaults}
    for environment in Environment.values:
        values = overrides.get(environment) or {}
        table[environment] = Thresholds(
            failure_streak=int(values.get("failure_streak", defaults.failure_streak)),
            stale_hours=float(values.get("stale_hours", defaults.stale_hours)),
        )
    return table


def limits_for(table: dict[str, Thresholds], environment: str) -> Thresholds:
    """The thresholds of one environment (one the table does not know gets the defaults)."""
    return table.get(environment) or table[DEFAULT]

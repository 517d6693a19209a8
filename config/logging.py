"""Structured log formatting.

Why: operators grep and ship logs; every sync event must carry the same keys
(`module`, `operation`, `instance_id`, `db_type`, `session_id`, `phase`,
`duration_ms`) whether the output is JSON (`WHALEFALL_LOG_JSON=1`) or text.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

CONTEXT_KEYS = ("module", "operation", "instance_id", "db_type", "session_id", "phase", "duration_ms")


def log_event(logger: logging.Logger, level: int, message: str, *, exc_info: bool = False, **context: Any) -> None:
    """Log `message` with structured context under the agreed keys; `exc_info` adds the current traceback."""
    logger.log(level, message, exc_info=exc_info, extra={"wf": context})


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in getattr(record, "wf", {}).items():
            data[key] = str(value) if key == "session_id" and value is not None else value
        if record.exc_info:
            data["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            data["traceback"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """Human text with the structured keys appended as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        base = f"{record.levelname} {record.name}: {record.getMessage()}"
        ctx = getattr(record, "wf", {})
        if ctx:
            base += " " + " ".join(f"{k}={v}" for k, v in ctx.items() if v is not None)
        if record.exc_info:
            base += "\n" + self.formatException(record.exc_info)
        return base

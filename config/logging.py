"""Structured log formatting, with secrets scrubbed from every emitted line.

Why: operators grep and ship logs; every sync event must carry the same keys
(`module`, `operation`, `instance_id`, `db_type`, `session_id`, `phase`,
`duration_ms`) whether the output is JSON (`WHALEFALL_LOG_JSON=1`) or text.

Internal errors are logged with their traceback, and a traceback repeats the
exception's message, which is driver text that may hold the monitoring password.
So both formatters scrub the message, the traceback and the context values of:

* the secrets given to the record (``log_event(..., secrets=(password,))``: the
  values are used for scrubbing only and never emitted);
* the secrets live in the current context (``with secret_scope(password): ...``
  around code that handles a credential: a ContextVar, so threads and tasks do
  not see each other's);
* anything that looks like a credential in text: ``password=...``/``PWD=...``
  (also quoted), ``IDENTIFIED BY '...'`` and the password of ``scheme://user:pass@host``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

CONTEXT_KEYS = ("module", "operation", "instance_id", "db_type", "session_id", "phase", "duration_ms")
MASK = "***"

_LIVE_SECRETS: ContextVar[tuple[str, ...]] = ContextVar("whalefall_live_secrets", default=())

_PATTERNS = (
    # password=..., pwd: ..., "password": "..." (quoted values keep their quotes)
    re.compile(
        r"""(?P<key>\b(?:password|passwd|pwd)["']?\s*[=:]\s*)"""
        r"""(?P<value>"[^"]*"|'[^']*'|[^\s;,&'"}\])]+)""",
        re.IGNORECASE,
    ),
    # IDENTIFIED BY 'x' / IDENTIFIED BY "x" / PASSWORD 'x' in SQL echoed by a driver
    re.compile(r"""(?P<key>\b(?:identified\s+by|password)\s+)(?P<value>"[^"]*"|'[^']*')""", re.IGNORECASE),
    # scheme://user:password@host
    re.compile(r"""(?P<key>[a-z][a-z0-9+.-]*://[^\s:/@]*:)(?P<value>[^\s@/]+)(?=@)""", re.IGNORECASE),
)


def _mask(match: re.Match[str]) -> str:
    value = match.group("value")
    quote = value[0] if value[:1] in {'"', "'"} and value[-1:] == value[0] and len(value) > 1 else ""
    return f"{match.group('key')}{quote}{MASK}{quote}"


def scrub_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` without the given and live secrets and without credential-looking values."""
    known = {s for s in (*secrets, *_LIVE_SECRETS.get()) if s}
    for secret in sorted(known, key=len, reverse=True):  # longest first: a secret containing another
        text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(_mask, text)
    return text


@contextmanager
def secret_scope(*secrets: str | None) -> Iterator[None]:
    """Scrub these values from every line logged in this context until the block ends."""
    token = _LIVE_SECRETS.set(_LIVE_SECRETS.get() + tuple(s for s in secrets if s))
    try:
        yield
    finally:
        _LIVE_SECRETS.reset(token)


def log_event(
    logger: logging.Logger,
    level: int,
    message: str,
    *,
    exc_info: bool = False,
    secrets: Iterable[str | None] = (),
    **context: Any,
) -> None:
    """Log `message` with structured context under the agreed keys; `exc_info` adds the current traceback.

    `secrets` are scrubbed from the line (message, traceback, context) and never emitted.
    """
    extra = {"wf": context, "wf_secrets": tuple(s for s in secrets if s)}
    logger.log(level, message, exc_info=exc_info, extra=extra)


def _secrets(record: logging.LogRecord) -> tuple[str, ...]:
    return tuple(getattr(record, "wf_secrets", ()))


def _clean(value: Any, secrets: tuple[str, ...]) -> Any:
    return scrub_text(value, secrets) if isinstance(value, str) else value


class JsonFormatter(logging.Formatter):
    """One JSON object per line; every string in it is scrubbed."""

    def format(self, record: logging.LogRecord) -> str:
        secrets = _secrets(record)
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub_text(record.getMessage(), secrets),
        }
        for key, value in getattr(record, "wf", {}).items():
            data[key] = str(value) if key == "session_id" and value is not None else _clean(value, secrets)
        if record.exc_info:
            data["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            data["traceback"] = scrub_text(self.formatException(record.exc_info), secrets)
        return json.dumps(data, default=lambda v: scrub_text(str(v), secrets), ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """Human text with the structured keys appended as key=value; the whole text is scrubbed."""

    def format(self, record: logging.LogRecord) -> str:
        base = f"{record.levelname} {record.name}: {record.getMessage()}"
        ctx = getattr(record, "wf", {})
        if ctx:
            base += " " + " ".join(f"{k}={v}" for k, v in ctx.items() if v is not None)
        if record.exc_info:
            base += "\n" + self.formatException(record.exc_info)
        return scrub_text(base, _secrets(record))

"""One retry on a fresh connection for state writes that must not be lost.

Why: a worker whose database connection dies (server restart, ``pg_terminate_backend``,
a network blip) right after an apply committed would otherwise leave its record
``running`` until the reaper calls it "worker lost", and history would contradict the
data. Each write retried here is a conditional UPDATE (idempotent), so running it twice
is harmless. Inside a transaction nothing is retried: the transaction is gone with the
connection, and the caller's rollback handling decides.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection

logger = logging.getLogger(__name__)

T = TypeVar("T")


def on_fresh_connection(write: Callable[[], T], *, what: str) -> T:
    """Run ``write``; if the connection was lost, reconnect and run it once more."""
    try:
        return write()
    except (OperationalError, InterfaceError):
        if connection.in_atomic_block:
            raise
        logger.warning(
            "database connection lost during %s; retrying on a fresh connection",
            what,
            exc_info=True,
            extra={"wf": {"module": "config.db", "operation": what, "phase": "retry"}},
        )
        connection.close()
        return write()

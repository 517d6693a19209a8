"""Database helpers: one retry on a fresh connection for state writes that must not be lost, and streamed reads.

Why: a worker whose database connection dies (server restart, ``pg_terminate_backend``,
a network blip) right after an apply committed would otherwise leave its record
``running`` until the reaper calls it "worker lost", and history would contradict the
data. Each write retried here is a conditional UPDATE (idempotent), so running it twice
is harmless. Inside a transaction nothing is retried: the transaction is gone with the
connection, and the caller's rollback handling decides.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection, transaction

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


def read_in_transaction(rows: Iterable[T]) -> Iterator[T]:
    """Iterate ``rows`` (a lazy queryset read) inside one transaction, opened at the first row.

    Why: on PostgreSQL, ``QuerySet.iterator()`` outside a transaction declares its server-side
    cursor ``WITH HOLD``, and the server computes the whole result before the first row comes
    back (a 10-million-row change log export waited 114 s for its first byte). Inside a
    transaction the cursor streams. The transaction is read-only in effect, gives the export
    one consistent snapshot, and ends when the rows end or the consumer closes this generator
    (close it before writing anything else on the connection: that write would otherwise land
    in this transaction, which a close then rolls back).
    """
    with transaction.atomic():
        yield from rows

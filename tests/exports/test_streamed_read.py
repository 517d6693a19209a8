"""An export reads its rows inside one transaction, so PostgreSQL streams them instead of computing all first.

Outside a transaction Django declares the server-side cursor of ``QuerySet.iterator()`` WITH HOLD,
and PostgreSQL then materialises the whole result before the first row (#19: 114 s to the first
megabyte of a 10-million-row change log). The stream must also end that transaction before the
export's audit event is written, or closing the stream early would roll the event back.
"""

from __future__ import annotations

import pytest
from django.db import connection

from accountsync.models import AccountChangeLog, InstanceAccount
from audit.exporting import stream_rows
from audit.models import AuditEvent
from exports.writers import export_observed, stream_export

pytestmark = pytest.mark.django_db(transaction=True)  # as in production: no test transaction around the export


def _cursors() -> list[tuple[str, bool]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, is_holdable FROM pg_cursors")
        return list(cursor.fetchall())


@pytest.mark.parametrize("kind", ["accounts", "change_logs"])
def test_the_rows_are_read_in_one_transaction_by_a_cursor_that_streams(bulk_accounts, kind) -> None:
    bulk_accounts(450, instances=2)
    queryset = {"accounts": InstanceAccount.objects.all(), "change_logs": AccountChangeLog.objects.all()}[kind]
    chunks, _, _ = stream_export(kind, queryset, "ndjson", chunk_size=5)
    assert not connection.in_atomic_block
    first = next(chunks)
    assert first.startswith("{")
    assert connection.in_atomic_block  # the read runs inside its transaction...
    if connection.vendor == "postgresql":  # ...so its server-side cursor is not WITH HOLD: it streams
        cursors = _cursors()
        assert cursors and not any(holdable for _name, holdable in cursors), cursors
    rest = "".join(chunks)
    assert len((first + rest).splitlines()) == 450
    assert not connection.in_atomic_block  # and the transaction ended with the rows


def test_an_export_closed_early_still_leaves_its_audit_event(bulk_accounts) -> None:
    bulk_accounts(450, instances=2)
    told: list[tuple[int, bool]] = []
    with export_observed(lambda rows, complete: told.append((rows, complete))):
        chunks, _, _ = stream_export("accounts", InstanceAccount.objects.all(), "ndjson", chunk_size=5)
    next(chunks)
    chunks.close()  # the client went away
    assert told[0][0] < 450 and told[0][1] is False and not connection.in_atomic_block

    response = stream_rows(
        AccountChangeLog.objects.all(),
        [("id", lambda row: row.pk)],
        kind="model_history",
        fmt="ndjson",
        actor=None,
        via="api",
        request=None,
        filters={},
    )
    content = iter(response.streaming_content)
    next(content)
    response.close()  # what the WSGI server does when the client goes
    assert not connection.in_atomic_block
    event = AuditEvent.objects.get(kind="export")  # committed, not rolled back with the read
    assert event.details["complete"] is False

"""accountsync.bulk.insert_rows: COPY on PostgreSQL stores exactly what executemany stores.

Why: from COPY_MIN_ROWS rows PostgreSQL inserts stream through COPY FROM STDIN, which adapts
values in its own text format; hostile text (tabs, newlines, backslashes, NUL-free control
characters, quotes, non-ASCII), JSON text, NULLs, UUIDs and aware datetimes must come back equal to
the executemany path, and the queries Django logs must still show one entry per chunk.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accountsync import bulk
from accountsync.codec import json_text
from accountsync.models import AccountChangeLog, ChangeType, InstanceAccount

pytestmark = pytest.mark.django_db

HOSTILE = [
    "tab\there",
    "line\nbreak\r\nand CR",
    "back\\slash \\N \\. end",
    "quote ' \" ` ;DROP TABLE x;--",
    "中文 naïve ☃ \u200b",
    "",
    "\\",
    "x" * 20000,
]

DETECTED = datetime(2026, 12, 2, 1, 2, 3, 456789, tzinfo=UTC)
COLUMNS = ("instance", "account", "session_id", "change_type", "diff", "summary", "detected_at")


def _rows(instance, account, n: int) -> list[tuple]:
    """Rows in database form, as the engine hands them over (JSON as text, the UUID and time adapted)."""
    field = AccountChangeLog._meta.get_field
    session = field("session_id").get_db_prep_value(uuid.uuid4(), connection)
    at = field("detected_at").get_db_prep_value(DETECTED, connection)
    rows = []
    for i in range(n):
        text = HOSTILE[i % len(HOSTILE)]
        diff = json_text([{"op": "add", "path": f"/privileges/{i}", "value": text}])
        rows.append(
            (
                instance.pk,
                account.pk,
                None if i % 3 == 0 else session,
                ChangeType.PRIVILEGES_CHANGED.value,
                diff,
                text,
                at,
            )
        )
    return rows


def _stored(ids: list[int]) -> list[tuple]:
    return list(
        AccountChangeLog.objects.filter(pk__in=ids)
        .order_by("pk")
        .values_list("instance_id", "account_id", "session_id", "change_type", "diff", "summary", "detected_at")
    )


@pytest.fixture
def account(make_instance):
    instance = make_instance(name="bulk-copy")
    now = datetime.now(UTC)
    return InstanceAccount.objects.create(
        instance=instance, identity="bulk", username="bulk", kind="user", first_seen_at=now, last_seen_at=now
    )


@pytest.mark.parametrize("prepare", [False, True])
def test_large_insert_equals_small_inserts(account, monkeypatch, prepare):
    n = bulk.COPY_MIN_ROWS + 7
    rows = _rows(account.instance, account, n)
    if prepare:  # plain Python values, each adapted by its field (Jsonb wrappers on psycopg)
        rows = [(i, a, uuid.UUID(str(s)) if s else None, c, json.loads(d), t, DETECTED) for i, a, s, c, d, t, _ in rows]
    before = set(AccountChangeLog.objects.values_list("pk", flat=True))
    with CaptureQueriesContext(connection) as large:
        bulk.insert_rows(AccountChangeLog, COLUMNS, rows, prepare=prepare)
    large_ids = sorted(set(AccountChangeLog.objects.values_list("pk", flat=True)) - before)
    monkeypatch.setattr(bulk, "COPY_MIN_ROWS", 10**9)  # the executemany path, on every backend
    before = set(AccountChangeLog.objects.values_list("pk", flat=True))
    bulk.insert_rows(AccountChangeLog, COLUMNS, rows, prepare=prepare)
    small_ids = sorted(set(AccountChangeLog.objects.values_list("pk", flat=True)) - before)

    assert len(large_ids) == len(small_ids) == n
    copied, inserted = _stored(large_ids), _stored(small_ids)
    assert copied == inserted
    assert copied[1][5] == "line\nbreak\r\nand CR" and copied[2][5] == "back\\slash \\N \\. end"
    assert copied[0][4] == [{"op": "add", "path": "/privileges/0", "value": "tab\there"}]
    assert copied[0][2] is None and isinstance(copied[1][2], uuid.UUID)
    assert copied[0][6] == DETECTED
    logged = [q["sql"] for q in large.captured_queries]
    if connection.vendor == "postgresql":
        assert len(logged) == 1 and logged[0].startswith("COPY ") and f"{n} rows" in logged[0]
    else:
        assert len(logged) == 1 and f"{n} times: INSERT INTO" in logged[0]


def test_copy_failure_rolls_back_with_the_transaction(account):
    """A bad row (an account that does not exist) fails the whole insert and leaves nothing behind."""
    from django.db import IntegrityError, transaction

    rows = _rows(account.instance, account, bulk.COPY_MIN_ROWS)
    rows[-1] = (account.instance.pk, account.pk + 10**6, *rows[-1][2:])
    before = AccountChangeLog.objects.count()
    with pytest.raises(IntegrityError), transaction.atomic():
        bulk.insert_rows(AccountChangeLog, COLUMNS, rows)
        connection.check_constraints(table_names=[AccountChangeLog._meta.db_table])
    assert AccountChangeLog.objects.count() == before

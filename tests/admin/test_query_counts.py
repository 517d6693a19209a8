"""Every list page costs the same number of queries whatever the number of rows (big histories stay fast)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from instances.models import Tag
from sync.models import SyncSession
from sync.services import sync_session_start

from .conftest import account, apply

pytestmark = pytest.mark.django_db

PAGES = {
    "instances": ("admin:instances_instance_changelist", {}),
    "sessions": ("admin:sync_syncsession_changelist", {}),
    "sessions filtered": ("admin:sync_syncsession_changelist", {"status__exact": "running", "started": "7d"}),
    "records": ("admin:sync_syncinstancerecord_changelist", {}),
    "accounts": ("admin:accountsync_instanceaccount_changelist", {}),
    "accounts by capability": ("admin:accountsync_instanceaccount_changelist", {"grant_admin": "1"}),
    "snapshots": ("admin:accountsync_accountpermission_changelist", {}),
    "changes": ("admin:accountsync_accountchangelog_changelist", {}),
    "changes filtered": ("admin:accountsync_accountchangelog_changelist", {"detected": "today"}),
}


def grow(make_instance, user, start: int, count: int) -> None:
    """`count` more instances, each tagged, with accounts, change logs and two sessions (one still running)."""
    for i in range(start, start + count):
        inst = make_instance(name=f"q{i}")
        inst.tags.add(Tag.objects.get_or_create(name=f"t{i % 3}")[0])
        apply(
            inst,
            account(f"a{i}"),
            account(f"g{i}", privileges=[], capabilities={"GRANT_ADMIN"}),
            account(f"w{i}", "%", capabilities={"WILDCARD_HOST"}),
        )
        done = sync_session_start(instances=[inst], sync_type="manual_batch", created_by=user, enqueue=False)
        record = done.records.get()
        record.mark_running()
        record.mark_completed(synced=3, created=3, updated=0, deleted=0, details={})
        done.finalize()
        sync_session_start(instances=[inst], sync_type="manual_task", created_by=user, enqueue=False)


def count_queries(client, name: str, params: dict[str, str]) -> int:
    with CaptureQueriesContext(connection) as ctx:
        resp = client.get(reverse(name), params)
    assert resp.status_code == 200, name
    return len(ctx.captured_queries)


def test_list_pages_query_count_is_constant_in_rows(client_for, make_instance, alice):
    client = client_for("alice")
    grow(make_instance, alice, 0, 2)
    small = {label: count_queries(client, name, params) for label, (name, params) in PAGES.items()}
    grow(make_instance, alice, 2, 12)
    assert SyncSession.objects.count() == 28
    large = {label: count_queries(client, name, params) for label, (name, params) in PAGES.items()}
    assert large == small
    assert max(small.values()) <= 12, small


def test_session_page_and_progress_json_query_count_is_constant_in_records(client_for, make_instance, alice):
    client = client_for("alice")
    few = sync_session_start(
        instances=[make_instance(name=f"s{i}") for i in range(2)],
        sync_type="manual_batch",
        created_by=alice,
        enqueue=False,
    )
    many = sync_session_start(
        instances=[make_instance(name=f"m{i}") for i in range(15)],
        sync_type="manual_batch",
        created_by=alice,
        enqueue=False,
    )
    for view in ("admin:sync_syncsession_change", "admin:sync_syncsession_progress"):
        with CaptureQueriesContext(connection) as small:
            assert client.get(reverse(view, args=[few.pk])).status_code == 200
        with CaptureQueriesContext(connection) as large:
            assert client.get(reverse(view, args=[many.pk])).status_code == 200
        assert len(large.captured_queries) == len(small.captured_queries), view

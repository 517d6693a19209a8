"""History (accounts, snapshots, change logs, sessions) is browsable and read-only in the admin."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from accountsync.adapters.base import AccountRecord, Catalog, Privilege
from accountsync.models import AccountChangeLog, AccountPermission, InstanceAccount
from accountsync.services import account_sync_apply
from sync.models import SyncSession
from sync.services import sync_session_run, sync_session_start

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_client(client):
    client.force_login(get_user_model().objects.create_superuser("alice", "a@example.com", "pw-alice-123"))
    return client


def catalog(n: int) -> Catalog:
    return Catalog(
        accounts=[
            AccountRecord(
                identity=f"'u{i}'@'%'",
                username=f"u{i}",
                host="%",
                privileges=[Privilege(scope="database:app", privilege="SELECT")],
            )
            for i in range(n)
        ]
    ).finalize()


def test_history_pages_render_read_only_with_constant_queries(
    alice_client, make_instance, django_assert_max_num_queries
):
    inst = make_instance(port=1)
    account_sync_apply(instance=inst, catalog=catalog(3))
    session = sync_session_start(
        instances=[inst], sync_type="manual_batch", created_by=None or get_user_model().objects.get(), enqueue=False
    )
    sync_session_run(session=session)
    pages = {
        "accountsync_instanceaccount": InstanceAccount.objects.first(),
        "accountsync_accountpermission": AccountPermission.objects.first(),
        "accountsync_accountchangelog": AccountChangeLog.objects.first(),
        "sync_syncsession": SyncSession.objects.first(),
    }
    for name, obj in pages.items():
        resp = alice_client.get(reverse(f"admin:{name}_changelist"))
        assert resp.status_code == 200, name
        assert alice_client.get(reverse(f"admin:{name}_add")).status_code == 403, name
        detail = alice_client.get(reverse(f"admin:{name}_change", args=[obj.pk]))
        assert detail.status_code == 200 and b'name="_save"' not in detail.content, name
        assert alice_client.post(reverse(f"admin:{name}_delete", args=[obj.pk])).status_code == 403, name
    html = alice_client.get(reverse("admin:sync_syncsession_change", args=[session.pk])).content.decode()
    assert inst.name in html and "connection" in html  # the record's classified error is shown

    url = reverse("admin:accountsync_instanceaccount_changelist")
    with django_assert_max_num_queries(12) as few:
        alice_client.get(url)
    account_sync_apply(instance=inst, catalog=catalog(60))
    with django_assert_max_num_queries(len(few.captured_queries)):
        alice_client.get(url)

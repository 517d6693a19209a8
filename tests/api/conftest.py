"""API fixtures: token clients for alice/bob/charlie and instances that fail fast.

Instances point at a closed port on 127.0.0.1 with a one-second connect
timeout, so a sync or connection test started through the API fails for real
(connection refused) and quickly.
"""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.livedb import MARIADB, mariadb_admin  # noqa: F401
from tests.sync.conftest import closed_port

SECRET = "s3cr3t-Pa55"  # the password tests/conftest.py's make_credential stores


@pytest.fixture
def api_client():
    """``api_client(user)``: a client authenticated with the user's API token (None: anonymous)."""

    def make(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


@pytest.fixture
def unreachable_instance(make_instance):
    """An active instance on a closed local port: its syncs fail with a connection error at once."""

    def make(name: str = "unreachable", **kw):
        kw.setdefault("options", {"connect_timeout": 1})
        return make_instance(name=name, port=closed_port(), **kw)

    return make


@pytest.fixture
def make_history(make_instance):
    """``make_history(instance, n)``: n accounts with a current snapshot and an ``added`` change log each.

    Rows are written directly: the list endpoints only read them, and the real
    sync path that writes them is covered by the live test in test_syncs.py.
    """
    from django.utils import timezone

    from accountsync.models import AccountChangeLog, AccountPermission, InstanceAccount

    def make(instance, n: int = 1, *, superuser: bool = False, prefix: str = "user"):
        now = timezone.now()
        accounts = []
        for i in range(n):
            account = InstanceAccount.objects.create(
                instance=instance,
                identity=f"'{prefix}{i}'@'%'",
                username=f"{prefix}{i}",
                host="%",
                is_superuser=superuser,
                first_seen_at=now,
                last_seen_at=now,
            )
            AccountPermission.objects.create(
                account=account,
                instance=instance,
                snapshot={"schema_version": 1, "privileges": [], "roles": [], "capabilities": []},
                digest=f"{i:064d}",
                collected_at=now,
                valid_from=now,
            )
            AccountChangeLog.objects.create(
                instance=instance, account=account, change_type="added", summary=f"{prefix}{i} added", detected_at=now
            )
            accounts.append(account)
        return accounts

    return make


@pytest.fixture
def make_session(alice):
    """``make_session(instances, statuses)``: a manual_batch session whose records are in the given states."""
    from sync.models import SyncInstanceRecord
    from sync.services import sync_session_start

    def make(instances, statuses=None, **kw):
        session = sync_session_start(instances=instances, sync_type="manual_batch", created_by=alice, enqueue=False)
        for record, state in zip(session.records.order_by("pk"), statuses or [], strict=False):
            fields = {"status": state}
            if state == "failed":
                fields.update(error_kind="connection", error_message=f"{record.instance_name}: cannot connect")
            if state == "completed":
                fields.update(items_synced=5)
            SyncInstanceRecord.objects.filter(pk=record.pk).update(**fields)
        if kw:
            type(session).objects.filter(pk=session.pk).update(**kw)
        session.refresh_from_db()
        return session

    return make


@pytest.fixture
def live_mariadb_instance(mariadb_admin, make_instance, make_credential):  # noqa: F811
    """The local MariaDB as root (skips, or fails under WHALEFALL_REQUIRE_LIVE=1, when it is absent)."""
    cred = make_credential(name="live-root", username="root", password="")
    return make_instance(name="live-mariadb", port=MARIADB["port"], credential=cred)

"""Issue 16: "Last seen" is the last successful sync that saw the account, the same in admin, API and exports.

An unchanged account costs a sync no write, so the stored ``last_seen_at`` keeps
the time its row was last written. What every page shows instead is
``accountsync.selectors.last_seen_expression``: for an active account its
instance's last successful sync (the stored time while the instance has none
recorded), for a removed one the stored time (the last successful sync that
still listed it).

The end-to-end tests sync through ``sync.services.sync_accounts`` against the
registered stand-in adapter (tests/chosen.py); the first sync is then moved two
days back (account rows and the instance's success time together, as if it had
run then), so the second sync's time is plainly different on every page. The
ordering and filtering tests set ``Instance.last_success_at`` directly, as the
engine would.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.dateparse import parse_datetime

from accountsync import selectors
from accountsync.adapters.base import AccountRecord, Privilege
from accountsync.models import InstanceAccount
from exports.writers import stream_export
from instances.models import Instance
from sync.services import sync_accounts
from tests.api.conftest import api_client  # noqa: F401

pytestmark = pytest.mark.django_db

ACCOUNTS = reverse("admin:accountsync_instanceaccount_changelist")
FIRST_SYNC = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
T0 = datetime(2026, 4, 1, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def role_groups(db) -> None:
    """The role groups (a transactional test elsewhere may have flushed them)."""
    from sync.roles import ensure_role_groups

    ensure_role_groups()


def record(name: str) -> AccountRecord:
    return AccountRecord(
        identity=f"'{name}'@'%'", username=name, host="%", privileges=[Privilege("database:app", "SELECT")]
    )


def admin_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def shown(value: datetime) -> str:
    """How the admin renders a date-time (as it renders any model date-time field)."""
    return formats.localize(timezone.template_localtime(value))


def when(text: str) -> datetime:
    value = parse_datetime(text)
    assert value is not None, text
    return value


def as_utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def admin_row(html: str, account: InstanceAccount) -> str:
    rows = [row for row in html.split("<tr") if f"/{account.pk}/change/" in row]
    assert len(rows) == 1, f"no single changelist row for {account.identity}"
    return rows[0]


def last_seen_cell(html: str) -> str:
    match = re.search(r'class="[^"]*field-last_seen[^"]*">(.*?)</(td|div)>', html, re.S)
    assert match, "no last seen cell"
    return match.group(1)


def body(response) -> str:
    return b"".join(response.streaming_content).decode("utf-8")


def export_values(text: str, fmt: str) -> dict[str, datetime]:
    """identity -> last_seen_at of an accounts export in any format."""
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    elif fmt == "json":
        rows = json.loads(text)
    else:
        rows = [json.loads(line) for line in text.splitlines() if line]
    return {row["identity"]: when(row["last_seen_at"]) for row in rows}


@pytest.fixture
def synced_twice(chosen_server, make_instance):
    """app and svc listed by both syncs (unchanged: no row write), gone only by the first (removed by the second).

    Returns the second sync's time (the instance's last success).
    """
    instance = make_instance(name="my-prod")
    chosen_server.accounts = [record("app"), record("svc"), record("gone")]
    first = sync_accounts(instance=instance, sync_type="manual_single")
    assert first["success"], first["message"]
    # the first sync ran two days ago: its rows and its success time move back together
    InstanceAccount.objects.filter(instance=instance).update(first_seen_at=FIRST_SYNC, last_seen_at=FIRST_SYNC)
    Instance.objects.filter(pk=instance.pk).update(last_success_at=FIRST_SYNC, last_sync_at=FIRST_SYNC)

    chosen_server.accounts = [record("app"), record("svc")]
    second = sync_accounts(instance=instance, sync_type="manual_single", force=True)
    assert second["success"], second["message"]
    instance.refresh_from_db()
    assert instance.last_success_at > FIRST_SYNC + timedelta(days=1)
    stored = dict(InstanceAccount.objects.filter(instance=instance).values_list("username", "last_seen_at"))
    assert stored == {"app": FIRST_SYNC, "svc": FIRST_SYNC, "gone": FIRST_SYNC}, "unchanged rows are not rewritten"
    assert not InstanceAccount.objects.get(username="gone").is_active
    return instance.last_success_at


# --- the rule ------------------------------------------------------------------------------


def test_the_annotation_and_the_python_form_agree(make_instance):
    synced = make_instance(name="synced", last_success_at=T0 + timedelta(days=3))
    never = make_instance(name="never")

    def make(instance, name: str, stored: datetime, *, active: bool = True) -> InstanceAccount:
        return InstanceAccount.objects.create(
            instance=instance,
            identity=name,
            username=name,
            first_seen_at=T0,
            last_seen_at=stored,
            is_active=active,
        )

    make(synced, "active", T0)
    make(synced, "removed", T0 + timedelta(days=2), active=False)
    make(never, "not-synced-since-upgrade", T0 + timedelta(hours=6))
    # written by a sync whose success was not recorded: it was seen then, later than the last success
    make(synced, "written-later", T0 + timedelta(days=4))
    expected = {
        "active": T0 + timedelta(days=3),
        "removed": T0 + timedelta(days=2),
        "not-synced-since-upgrade": T0 + timedelta(hours=6),
        "written-later": T0 + timedelta(days=4),
    }
    annotated = selectors.with_last_seen(InstanceAccount.objects.all())
    assert {a.username: a.last_seen for a in annotated} == expected
    assert {a.username: selectors.account_last_seen(a) for a in InstanceAccount.objects.all()} == expected
    assert selectors.with_last_seen(annotated) is annotated


# --- end to end: two real syncs, every page --------------------------------------------------


def test_admin_list_and_page_show_the_second_sync(synced_twice, charlie):
    second = synced_twice
    app, gone = InstanceAccount.objects.get(username="app"), InstanceAccount.objects.get(username="gone")
    client = admin_client(charlie)
    html = client.get(ACCOUNTS).content.decode()
    assert shown(second) != shown(FIRST_SYNC)
    assert shown(second) in last_seen_cell(admin_row(html, app))
    assert shown(FIRST_SYNC) in last_seen_cell(admin_row(html, gone))

    page = client.get(reverse("admin:accountsync_instanceaccount_change", args=[app.pk])).content.decode()
    assert shown(second) in last_seen_cell(page)
    assert "Last seen" in page
    page = client.get(reverse("admin:accountsync_instanceaccount_change", args=[gone.pk])).content.decode()
    assert shown(FIRST_SYNC) in last_seen_cell(page)


def test_admin_sorts_by_the_true_last_seen(make_instance, charlie):
    ordered = ordering_fleet(make_instance)
    client = admin_client(charlie)
    response = client.get(ACCOUNTS)
    column = response.context["cl"].list_display.index("last_seen")
    up = client.get(ACCOUNTS, {"o": str(column)}).context["cl"].result_list
    down = client.get(ACCOUNTS, {"o": f"-{column}"}).context["cl"].result_list
    assert [a.username for a in up] == ordered
    assert [a.username for a in down] == ordered[::-1]


def test_api_list_and_detail_give_the_second_sync(synced_twice, api_client, charlie):  # noqa: F811
    second = synced_twice
    client = api_client(charlie)
    listed = {row["username"]: when(row["last_seen_at"]) for row in client.get("/api/v1/accounts/").json()["results"]}
    assert listed == {"app": second, "svc": second, "gone": FIRST_SYNC}
    app = InstanceAccount.objects.get(username="app")
    assert when(client.get(f"/api/v1/accounts/{app.pk}/").json()["last_seen_at"]) == second


@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson"])
def test_api_exports_give_the_second_sync(fmt, synced_twice, api_client, charlie):  # noqa: F811
    second = synced_twice
    response = api_client(charlie).get("/api/v1/accounts/export/", {"format": fmt})
    assert response.status_code == 200
    assert export_values(body(response), fmt) == {"'app'@'%'": second, "'svc'@'%'": second, "'gone'@'%'": FIRST_SYNC}


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_admin_export_actions_give_the_second_sync(fmt, synced_twice, charlie):
    second = synced_twice
    ids = [str(pk) for pk in InstanceAccount.objects.values_list("pk", flat=True)]
    response = admin_client(charlie).post(
        ACCOUNTS, {"action": f"export_accounts_{fmt}", "_selected_action": ids, "index": "0"}
    )
    assert response.status_code == 200 and response.streaming
    assert export_values(body(response), fmt) == {"'app'@'%'": second, "'svc'@'%'": second, "'gone'@'%'": FIRST_SYNC}


def test_an_unchanged_catalog_writes_nothing_yet_moves_last_seen(chosen_server, make_instance, api_client, charlie):  # noqa: F811
    """The adapter answers "unchanged" (same digest): the apply is skipped, the success time still moves."""
    instance = make_instance(name="quiet")
    chosen_server.digests = True
    chosen_server.accounts = [record("app")]
    assert sync_accounts(instance=instance, sync_type="manual_single")["success"]
    InstanceAccount.objects.filter(instance=instance).update(first_seen_at=FIRST_SYNC, last_seen_at=FIRST_SYNC)
    Instance.objects.filter(pk=instance.pk).update(last_success_at=FIRST_SYNC)
    again = sync_accounts(instance=instance, sync_type="manual_single")
    assert again["success"] and again["details"]["inventory"].get("catalog_unchanged"), again
    instance.refresh_from_db()
    assert InstanceAccount.objects.get().last_seen_at == FIRST_SYNC
    row = api_client(charlie).get("/api/v1/accounts/").json()["results"][0]
    assert when(row["last_seen_at"]) == instance.last_success_at > FIRST_SYNC


def test_the_stream_export_alone_gives_the_true_value(synced_twice):
    """exports.writers.stream_export on a plain queryset (as any caller hands it) adds the annotation itself."""
    second = synced_twice
    chunks, _, _ = stream_export("accounts", InstanceAccount.objects.all(), "ndjson")
    assert export_values("".join(chunks), "ndjson")["'app'@'%'"] == second


# --- ordering and filtering on the true value -------------------------------------------------


def ordering_fleet(make_instance) -> list[str]:
    """Accounts whose stored order differs from their true order; returns the usernames in true order.

    stored: a1 (T0) < c1 (+6h) < b1 (+12h) < a_gone (+2d)
    true:   c1 (+6h, never synced since the upgrade) < b1 (+1d) < a_gone (+2d, removed) < a1 (+3d)
    """
    a = make_instance(name="a", last_success_at=T0 + timedelta(days=3))
    b = make_instance(name="b", last_success_at=T0 + timedelta(days=1))
    c = make_instance(name="c")
    for instance, name, stored, active in (
        (a, "a1", T0, True),
        (a, "a_gone", T0 + timedelta(days=2), False),
        (b, "b1", T0 + timedelta(hours=12), True),
        (c, "c1", T0 + timedelta(hours=6), True),
    ):
        InstanceAccount.objects.create(
            instance=instance,
            identity=f"'{name}'@'%'",
            username=name,
            host="%",
            first_seen_at=T0,
            last_seen_at=stored,
            is_active=active,
        )
    return ["c1", "b1", "a_gone", "a1"]


def test_api_orders_by_the_true_last_seen(make_instance, api_client, charlie):  # noqa: F811
    ordered = ordering_fleet(make_instance)
    client = api_client(charlie)

    def names(**params) -> list[str]:
        response = client.get("/api/v1/accounts/", params)
        assert response.status_code == 200, response.json()
        return [row["username"] for row in response.json()["results"]]

    assert names(ordering="last_seen_at") == ordered
    assert names(ordering="-last_seen_at") == ordered[::-1]
    assert names(ordering="-last_seen_at,username") == ordered[::-1]
    assert names(ordering="username") == sorted(ordered)


def test_api_filters_on_the_true_last_seen(make_instance, api_client, charlie):  # noqa: F811
    ordering_fleet(make_instance)
    client = api_client(charlie)

    def names(**params) -> set[str]:
        response = client.get("/api/v1/accounts/", params)
        assert response.status_code == 200, response.json()
        return {row["username"] for row in response.json()["results"]}

    day = as_utc(T0 + timedelta(days=1))
    assert names(last_seen_after=day) == {"b1", "a_gone", "a1"}
    assert names(last_seen_before=day) == {"c1"}
    assert names(last_seen_after=as_utc(T0 + timedelta(days=2)), active="true") == {"a1"}
    bad = client.get("/api/v1/accounts/", {"last_seen_after": "yesterday"})
    assert bad.status_code == 400 and "last_seen_after" in bad.json()


def test_api_export_filters_and_orders_on_the_true_last_seen(make_instance, api_client, charlie):  # noqa: F811
    ordered = ordering_fleet(make_instance)
    response = api_client(charlie).get(
        "/api/v1/accounts/export/",
        {"format": "json", "ordering": "-last_seen_at", "last_seen_after": as_utc(T0 + timedelta(hours=12))},
    )
    assert response.status_code == 200
    rows = json.loads(body(response))
    assert [row["username"] for row in rows] == ordered[::-1][:3]
    assert [when(row["last_seen_at"]) for row in rows] == [
        T0 + timedelta(days=3),
        T0 + timedelta(days=2),
        T0 + timedelta(days=1),
    ]


# --- no query per row --------------------------------------------------------------------------


def test_query_counts_do_not_grow_with_the_rows(make_instance, api_client, charlie):  # noqa: F811
    api, admin = api_client(charlie), admin_client(charlie)

    def grow(start: int, count: int) -> None:
        for i in range(start, start + count):
            instance = make_instance(name=f"q{i}", last_success_at=T0 + timedelta(days=i))
            for name, active in ((f"u{i}", True), (f"old{i}", False)):
                InstanceAccount.objects.create(
                    instance=instance,
                    identity=name,
                    username=name,
                    first_seen_at=T0,
                    last_seen_at=T0,
                    is_active=active,
                )

    def counts() -> tuple[int, int, int]:
        column = admin.get(ACCOUNTS).context["cl"].list_display.index("last_seen")
        result = []
        for get in (
            lambda: admin.get(ACCOUNTS, {"o": str(column)}),
            lambda: api.get("/api/v1/accounts/", {"ordering": "last_seen_at"}),
            lambda: body(api.get("/api/v1/accounts/export/", {"format": "csv", "ordering": "-last_seen_at"})),
        ):
            with CaptureQueriesContext(connection) as ctx:
                get()
            result.append(len(ctx.captured_queries))
        return tuple(result)

    grow(0, 2)
    counts()  # per-process caches (content types, permissions)
    small = counts()
    grow(2, 8)
    assert counts() == small

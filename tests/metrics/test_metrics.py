"""GET /metrics: who may scrape, what the values are, and a bounded cost per scrape."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from accountsync.models import AccountChangeLog, CoverageGapEpisode, InstanceAccount
from alerts.models import AlertDelivery
from instances.models import Instance
from metrics import collectors
from metrics.collectors import DURATION_BUCKETS, QUERIES_PER_SCRAPE
from sync.models import SyncInstanceRecord, SyncSession

pytestmark = pytest.mark.django_db

URL = "/metrics"
OUTSIDE = "198.51.100.7"
TOKEN = "t0ken-for-the-scraper-0123456789abcdef"


def scrape(client, **extra) -> str:
    response = client.get(URL, REMOTE_ADDR="127.0.0.1", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    assert "no-cache" in response["Cache-Control"]
    return response.content.decode()


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, frozenset of labels): value} of a text exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(values: dict, name: str, **labels) -> float:
    return values[(name, frozenset(labels.items()))]


def names(values: dict) -> set[str]:
    return {name for name, _labels in values}


# --- who may scrape -------------------------------------------------------------------


def test_refused_from_an_address_outside_the_allow_list(client):
    response = client.get(URL, REMOTE_ADDR=OUTSIDE)
    assert response.status_code == 403
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content.startswith(b"403 Forbidden") and b"whalefall_" not in response.content


def test_loopback_is_allowed_by_default(client, settings):
    for name in ("WHALEFALL_METRICS_TOKEN", "WHALEFALL_METRICS_ALLOW"):
        if hasattr(settings, name):
            delattr(settings, name)
    assert client.get(URL, REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get(URL, REMOTE_ADDR="::1").status_code == 200
    assert client.get(URL, REMOTE_ADDR=OUTSIDE).status_code == 403


def test_the_token_lets_any_address_in(client, settings):
    settings.WHALEFALL_METRICS_TOKEN = TOKEN
    ok = client.get(URL, REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert ok.status_code == 200 and b"whalefall_instances" in ok.content
    assert client.get(URL, REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION=f"bearer {TOKEN}").status_code == 200
    for wrong in (f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Token {TOKEN}", TOKEN, "Bearer ", ""):
        assert client.get(URL, REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION=wrong).status_code == 403, wrong


def test_no_token_configured_means_no_bearer_gets_in(client, settings):
    settings.WHALEFALL_METRICS_TOKEN = ""
    assert client.get(URL, REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION="Bearer ").status_code == 403
    assert client.get(URL, REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION="Bearer x").status_code == 403


def test_allow_list_of_networks(client, settings):
    settings.WHALEFALL_METRICS_ALLOW = "10.20.0.0/16, 2001:db8::/32, not-a-network"
    assert client.get(URL, REMOTE_ADDR="10.20.3.4").status_code == 200
    assert client.get(URL, REMOTE_ADDR="::ffff:10.20.3.4").status_code == 200  # dual-stack listener
    assert client.get(URL, REMOTE_ADDR="2001:db8::5").status_code == 200
    assert client.get(URL, REMOTE_ADDR="10.21.0.1").status_code == 403
    assert client.get(URL, REMOTE_ADDR="127.0.0.1").status_code == 403  # the list replaces the default
    settings.WHALEFALL_METRICS_ALLOW = ["192.0.2.1"]  # a list, and a bare address, work too
    assert client.get(URL, REMOTE_ADDR="192.0.2.1").status_code == 200
    settings.WHALEFALL_METRICS_ALLOW = ""  # no address at all: the token only
    assert client.get(URL, REMOTE_ADDR="127.0.0.1").status_code == 403


def test_a_forwarded_request_is_not_let_in_as_loopback(client, settings):
    """A proxy on the same host makes everyone 127.0.0.1: without a proxy count, only the token helps."""
    settings.WHALEFALL_LOGIN_PROXY_COUNT = 0
    for header in ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP"):
        assert client.get(URL, REMOTE_ADDR="127.0.0.1", **{header: OUTSIDE}).status_code == 403, header
    settings.WHALEFALL_METRICS_TOKEN = TOKEN
    response = client.get(
        URL, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=OUTSIDE, HTTP_AUTHORIZATION=f"Bearer {TOKEN}"
    )
    assert response.status_code == 200


def test_behind_declared_proxies_the_forwarded_client_counts(client, settings):
    settings.WHALEFALL_LOGIN_PROXY_COUNT = 1
    settings.WHALEFALL_METRICS_ALLOW = "10.0.0.0/8"
    assert client.get(URL, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.1.2.3").status_code == 200
    # the client wrote the first entry itself; the proxy appended the address it really came from
    assert client.get(URL, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.1.2.3, 203.0.113.9").status_code == 403
    # not through the proxy: REMOTE_ADDR is the client
    assert client.get(URL, REMOTE_ADDR="10.9.9.9").status_code == 200


def test_only_get_and_head(client):
    assert client.post(URL, REMOTE_ADDR="127.0.0.1").status_code == 405
    assert client.head(URL, REMOTE_ADDR="127.0.0.1").status_code == 200


# --- what it says -------------------------------------------------------------------------


@pytest.fixture
def fleet(make_instance):
    """Two active instances (one synced an hour ago, one never), an inactive one, and their history."""
    now = timezone.now()
    ago = lambda **kw: now - timedelta(**kw)  # noqa: E731
    db1 = make_instance("mysql", name="db1", host="db1-secret.internal.example.com", last_success_at=ago(hours=1))
    db1.last_sync_status, db1.sync_count = "completed", 7
    db1.save()
    pg = make_instance("postgresql", name="pg", port=5432, environment="staging", last_sync_status="failed")
    Instance.objects.filter(pk=pg.pk).update(created_at=ago(hours=2))
    make_instance("oracle", name="ora", port=1521, is_active=False)

    session = SyncSession.objects.create(sync_type="manual_batch", started_at=ago(minutes=10))
    SyncInstanceRecord.objects.create(
        session=session,
        instance=db1,
        instance_name="db1",
        status="completed",
        queued_at=ago(seconds=605),
        started_at=ago(seconds=600),
        completed_at=ago(seconds=590),
        coverage_gaps=1,
    )
    SyncInstanceRecord.objects.create(
        session=session,
        instance=pg,
        instance_name="pg",
        status="failed",
        error_kind="connection",
        started_at=ago(seconds=300),
        completed_at=ago(seconds=299),
    )
    live = SyncSession.objects.create(sync_type="manual_task", started_at=ago(minutes=1))
    SyncInstanceRecord.objects.create(session=live, instance=db1, instance_name="db1", status="pending")
    SyncInstanceRecord.objects.create(
        session=live,
        instance=pg,
        instance_name="pg",
        status="running",
        started_at=ago(seconds=30),
        heartbeat_at=ago(seconds=5),
    )
    old = SyncSession.objects.create(sync_type="scheduled_task", started_at=ago(days=3))
    SyncInstanceRecord.objects.create(
        session=old,
        instance=db1,
        instance_name="db1",
        status="failed",
        error_kind="timeout",
        started_at=ago(days=3),
        completed_at=ago(days=3) + timedelta(seconds=900),
    )

    CoverageGapEpisode.objects.create(instance=db1, scope="db:app", kind="unreadable", opened_at=ago(hours=5))
    CoverageGapEpisode.objects.create(
        instance=db1, scope="db:old", kind="unreadable", opened_at=ago(days=2), closed_at=ago(days=1)
    )
    CoverageGapEpisode.objects.create(instance=db1, scope="db:skip", kind="out_of_scope", opened_at=ago(days=2))

    accounts = [
        InstanceAccount.objects.create(
            instance=inst,
            identity=f"{inst.name}-{i}",
            username=f"u{i}",
            is_active=active,
            first_seen_at=ago(days=9),
            last_seen_at=now,
        )
        for inst, i, active in ((db1, 1, True), (db1, 2, True), (db1, 3, False), (pg, 1, True))
    ]
    for change_type, when in (
        ("added", ago(hours=1)),
        ("added", ago(hours=2)),
        ("removed", ago(hours=3)),
        ("added", ago(days=3)),
    ):
        AccountChangeLog.objects.create(instance=db1, account=accounts[0], change_type=change_type, detected_at=when)

    for status, created in (
        ("sent", ago(hours=1)),
        ("sent", ago(days=3)),
        ("failed", ago(hours=2)),
        ("pending", ago(days=2)),
    ):
        delivery = AlertDelivery.objects.create(
            channel_name="ops", event_kind="capability_gained", severity="high", status=status
        )
        AlertDelivery.objects.filter(pk=delivery.pk).update(created_at=created)

    from django_q.conf import Conf
    from django_q.models import OrmQ, Schedule

    OrmQ.objects.create(key=Conf.CLUSTER_NAME, payload="x", lock=ago(seconds=1))
    OrmQ.objects.create(key=Conf.CLUSTER_NAME, payload="y", lock=ago(seconds=1))
    OrmQ.objects.create(key=Conf.CLUSTER_NAME, payload="z", lock=now + timedelta(minutes=20))
    OrmQ.objects.create(key="another-cluster", payload="w", lock=ago(seconds=1))
    reaper = Schedule.objects.create(name="whalefall: reap stale sync records", func="sync.tasks.reap_stale_records")
    Schedule.objects.filter(pk=reaper.pk).update(next_run=ago(seconds=120))
    Schedule.objects.create(name="alert delivery 1 retry ab", func="x", next_run=ago(days=1))
    return now


def test_values_for_a_small_fleet(client, fleet):
    text = scrape(client)
    assert "db1-secret" not in text and "3306" not in text  # names yes, hosts and ports never
    v = samples(text)

    age = value(
        v, "whalefall_instance_last_success_age_seconds", instance_name="db1", db_type="mysql", environment="production"
    )
    assert 3600 <= age < 3700
    pg = {"instance_name": "pg", "db_type": "postgresql", "environment": "staging"}
    assert 7200 <= value(v, "whalefall_instance_last_success_age_seconds", **pg) < 7300  # never: since registered
    assert value(v, "whalefall_instance_never_synced", **pg) == 1
    assert value(v, "whalefall_instance_last_sync_failed", **pg) == 1
    db1 = {"instance_name": "db1", "db_type": "mysql", "environment": "production"}
    assert value(v, "whalefall_instance_never_synced", **db1) == 0
    assert value(v, "whalefall_instance_last_sync_failed", **db1) == 0
    assert value(v, "whalefall_instance_coverage_gaps", **db1) == 1  # open unreadable only
    assert value(v, "whalefall_instance_coverage_gaps", **pg) == 0
    assert value(v, "whalefall_instance_syncs_total", **db1) == 7
    assert not any(dict(labels).get("instance_name") == "ora" for _n, labels in v)  # inactive: no per-instance series
    assert value(v, "whalefall_instances", db_type="oracle", environment="production", active="false") == 1
    assert value(v, "whalefall_instances", db_type="mysql", environment="production", active="true") == 1

    assert value(v, "whalefall_accounts", db_type="mysql", active="true") == 2
    assert value(v, "whalefall_accounts", db_type="mysql", active="false") == 1
    assert value(v, "whalefall_accounts", db_type="postgresql", active="true") == 1

    assert value(v, "whalefall_sync_records", status="pending") == 1
    assert value(v, "whalefall_sync_records", status="running") == 1
    assert 30 <= value(v, "whalefall_sync_records_oldest_age_seconds", status="running") < 90
    assert (
        5
        <= value(
            v,
            "whalefall_sync_running_heartbeat_age_seconds",
        )
        < 60
    )

    # the window (one day) holds the two ended records of the recent session, not the 3-day-old timeout
    assert value(v, "whalefall_sync_results", db_type="mysql", status="completed", error_kind="none") == 1
    assert value(v, "whalefall_sync_results", db_type="postgresql", status="failed", error_kind="connection") == 1
    assert (
        "whalefall_sync_results",
        frozenset({"db_type": "mysql", "status": "failed", "error_kind": "timeout"}.items()),
    ) not in v
    assert value(v, "whalefall_sync_results_with_gaps", db_type="mysql") == 1

    run = {"db_type": "mysql", "phase": "run"}
    assert value(v, "whalefall_sync_duration_seconds_bucket", le="5.0", **run) == 0
    assert value(v, "whalefall_sync_duration_seconds_bucket", le="10.0", **run) == 1
    assert value(v, "whalefall_sync_duration_seconds_bucket", le="+Inf", **run) == 1
    assert value(v, "whalefall_sync_duration_seconds_gcount", **run) == 1
    assert value(v, "whalefall_sync_duration_seconds_gsum", **run) == pytest.approx(10, abs=0.01)
    queue = {"db_type": "mysql", "phase": "queue"}
    assert value(v, "whalefall_sync_duration_seconds_bucket", le="2.5", **queue) == 0
    assert value(v, "whalefall_sync_duration_seconds_bucket", le="5.0", **queue) == 1
    assert value(v, "whalefall_sync_duration_seconds_gsum", **queue) == pytest.approx(5, abs=0.01)
    pg_run = {"db_type": "postgresql", "phase": "run"}
    assert value(v, "whalefall_sync_duration_seconds_bucket", le="1.0", **pg_run) == 1
    # pg's running record started in the window but has not ended: in no run bucket, and it was never queued
    assert value(v, "whalefall_sync_duration_seconds_gcount", **pg_run) == 1
    assert (
        "whalefall_sync_duration_seconds_gcount",
        frozenset({"db_type": "postgresql", "phase": "queue"}.items()),
    ) not in v
    buckets = [value(v, "whalefall_sync_duration_seconds_bucket", le=str(b), **run) for b in DURATION_BUCKETS]
    assert buckets == sorted(buckets)  # cumulative

    assert value(v, "whalefall_account_changes", change_type="added") == 2
    assert value(v, "whalefall_account_changes", change_type="removed") == 1
    assert value(v, "whalefall_account_changes", change_type="reactivated") == 0

    assert value(v, "whalefall_alert_deliveries", status="sent") == 1
    assert value(v, "whalefall_alert_deliveries", status="failed") == 1
    assert value(v, "whalefall_alert_deliveries", status="pending") == 0  # created before the window
    assert value(v, "whalefall_alert_deliveries_pending") == 1  # but still pending
    assert 2 * 86400 <= value(v, "whalefall_alert_deliveries_oldest_pending_age_seconds") < 2 * 86400 + 60

    assert value(v, "whalefall_queue_depth", broker="orm") == 2
    assert value(v, "whalefall_queue_taken", broker="orm") == 1
    assert value(v, "whalefall_queue_up", broker="orm") == 1
    assert 120 <= value(v, "whalefall_schedule_overdue_seconds", schedule="whalefall: reap stale sync records") < 180
    assert not any(dict(labels).get("schedule", "").startswith("alert") for _n, labels in v)

    assert value(v, "whalefall_metrics_window_seconds") == 86400
    assert value(v, "whalefall_metrics_scrape_duration_seconds") >= 0


def test_the_window_is_a_setting(client, fleet, settings):
    settings.WHALEFALL_METRICS_WINDOW_SECONDS = 4 * 86400
    v = samples(scrape(client))
    assert value(v, "whalefall_metrics_window_seconds") == 4 * 86400
    assert value(v, "whalefall_sync_results", db_type="mysql", status="failed", error_kind="timeout") == 1
    assert value(v, "whalefall_account_changes", change_type="added") == 3
    assert value(v, "whalefall_sync_duration_seconds_bucket", db_type="mysql", phase="run", le="600.0") == 1
    assert value(v, "whalefall_sync_duration_seconds_bucket", db_type="mysql", phase="run", le="1800.0") == 2


def test_openmetrics_when_asked(client, fleet):
    response = client.get(URL, REMOTE_ADDR="127.0.0.1", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    families = {f.name: f for f in parse_openmetrics(response.content.decode())}
    assert families["whalefall_sync_duration_seconds"].type == "gaugehistogram"
    assert families["whalefall_instance_syncs"].type == "counter"
    assert families["whalefall_sync_results"].type == "gauge"


def test_a_deleted_instance_records_are_unknown(client, fleet):
    record = SyncInstanceRecord.objects.filter(instance_name="db1", status="completed").get()
    SyncInstanceRecord.objects.filter(pk=record.pk).update(instance=None)
    v = samples(scrape(client))
    assert value(v, "whalefall_sync_results", db_type="unknown", status="completed", error_kind="none") == 1
    assert value(v, "whalefall_sync_duration_seconds_gcount", db_type="unknown", phase="run") == 1


def test_an_empty_database(client):
    v = samples(scrape(client))
    assert value(v, "whalefall_sync_records", status="pending") == 0
    assert value(v, "whalefall_sync_records", status="running") == 0
    assert value(v, "whalefall_alert_deliveries_pending") == 0
    assert value(v, "whalefall_queue_depth", broker="orm") == 0
    assert "whalefall_instance_last_success_age_seconds" not in names(v)


# --- another broker -----------------------------------------------------------------------


class FakeBroker:
    def __init__(self, size=None, error=None):
        self.size, self.error = size, error

    def queue_size(self):
        if self.error:
            raise self.error
        return self.size


class Redis(FakeBroker):
    pass


def test_a_non_orm_broker_is_asked_for_its_queue_size(client, monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(collectors, "_broker", lambda: Redis(size=4))
    v = samples(scrape(client))
    assert value(v, "whalefall_queue_depth", broker="redis") == 4
    assert value(v, "whalefall_queue_up", broker="redis") == 1

    monkeypatch.setattr(collectors, "_broker", lambda: Redis(error=ConnectionError("Connection refused")))
    v = samples(scrape(client))  # the scrape itself still answers
    assert value(v, "whalefall_queue_up", broker="redis") == 0
    assert "whalefall_queue_depth" not in names(v)


# --- cost -----------------------------------------------------------------------------------


def _grow(instance: Instance, n: int) -> None:
    now = timezone.now()
    sessions = SyncSession.objects.bulk_create(
        [SyncSession(sync_type="scheduled_task", started_at=now - timedelta(minutes=i)) for i in range(n)]
    )
    SyncInstanceRecord.objects.bulk_create(
        SyncInstanceRecord(
            session=s,
            instance=instance,
            instance_name=instance.name,
            status=("completed", "failed", "pending", "running")[i % 4],
            error_kind="timeout" if i % 4 == 1 else "",
            queued_at=now - timedelta(minutes=i, seconds=3),
            started_at=now - timedelta(minutes=i),
            completed_at=now - timedelta(minutes=i) + timedelta(seconds=i % 50) if i % 4 < 2 else None,
        )
        for i, s in enumerate(sessions)
    )
    accounts = InstanceAccount.objects.bulk_create(
        InstanceAccount(instance=instance, identity=f"x{i}-{n}", username=f"x{i}", first_seen_at=now, last_seen_at=now)
        for i in range(n)
    )
    AccountChangeLog.objects.bulk_create(
        AccountChangeLog(instance=instance, account=a, change_type="added", detected_at=now) for a in accounts
    )
    AlertDelivery.objects.bulk_create(
        AlertDelivery(channel_name="ops", event_kind="test", severity="high", status="sent") for _ in range(n)
    )
    CoverageGapEpisode.objects.bulk_create(
        CoverageGapEpisode(instance=instance, scope=f"db:{i}-{n}", kind="unreadable", opened_at=now) for i in range(n)
    )


@pytest.mark.parametrize("rows", [10, 1000])
def test_queries_per_scrape_do_not_grow_with_history(client, make_instance, rows, django_assert_max_num_queries):
    instance = make_instance("mysql", name="big")
    _grow(instance, rows)
    with django_assert_max_num_queries(QUERIES_PER_SCRAPE):
        v = samples(scrape(client))
    assert value(v, "whalefall_sync_records", status="pending") == rows // 4
    assert value(v, "whalefall_accounts", db_type="mysql", active="true") == rows
    assert value(v, "whalefall_account_changes", change_type="added") == rows
    assert (
        value(v, "whalefall_instance_coverage_gaps", instance_name="big", db_type="mysql", environment="production")
        == rows
    )


def test_the_query_count_is_exact(client, make_instance, django_assert_num_queries):
    """QUERIES_PER_SCRAPE is documented in docs/operations.md: keep it true."""
    make_instance("mysql", name="one")
    with django_assert_num_queries(QUERIES_PER_SCRAPE):
        scrape(client)

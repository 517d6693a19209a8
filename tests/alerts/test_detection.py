"""Detection: which changes of a sync are privilege escalations, and which are not."""

from __future__ import annotations

import pytest

from accountsync.diff import diff_snapshots
from alerts.models import AlertChannel, AlertDelivery
from alerts.services import Change, alerts_after_sync, alerts_detect, escalation_from_change, gained_capabilities
from sync.services import sync_accounts
from tests.alerts.conftest import account


def snap(*, caps: list[str] = (), privileges: list[dict] = ()) -> dict:
    return {
        "schema_version": 1,
        "privileges": list(privileges),
        "roles": [],
        "attributes": {},
        "capabilities": sorted(caps),
        "unknown_scopes": [],
    }


SELECT_SALES = {"scope": "database:sales", "privilege": "SELECT", "grantable": False, "effect": "GRANT"}


def change(ops: list[dict], change_type: str = "privileges_changed") -> Change:
    return Change(id=1, account_id=7, identity="'app'@'%'", change_type=change_type, diff=ops, summary="s")


def test_a_new_select_grant_is_not_an_escalation():
    ops = diff_snapshots(snap(), snap(privileges=[SELECT_SALES]))
    assert ops and ops[0]["op"] == "grant"
    assert gained_capabilities(ops) == []
    assert escalation_from_change(change(ops)) is None


def test_superuser_false_to_true_is_a_critical_escalation():
    ops = [{"op": "set", "scope": "capability", "field": "SUPERUSER", "old": False, "new": True}]
    escalation = escalation_from_change(change(ops))
    assert escalation is not None
    assert (escalation.kind, escalation.severity, escalation.capabilities) == (
        "capability_gained",
        "critical",
        ("SUPERUSER",),
    )


def test_grant_admin_gained_through_a_real_diff_is_high():
    ops = diff_snapshots(snap(privileges=[SELECT_SALES]), snap(caps=["GRANT_ADMIN"], privileges=[SELECT_SALES]))
    escalation = escalation_from_change(change(ops))
    assert escalation is not None and (escalation.severity, escalation.capabilities) == ("high", ("GRANT_ADMIN",))


@pytest.mark.parametrize(
    "op",
    [
        {"op": "set", "scope": "capability", "field": "SUPERUSER", "old": True, "new": False},  # lost, not gained
        {"op": "set", "scope": "capability", "field": "CREATE_DB", "old": False, "new": True},  # not an escalation cap
        {"op": "set", "scope": "attribute", "field": "SUPERUSER", "old": False, "new": True},  # attribute, not cap
        {"op": "grant", "scope": "global", "privilege": "SUPER", "old": None, "new": {"grantable": False}},
    ],
)
def test_other_ops_are_not_escalations(op):
    assert escalation_from_change(change([op])) is None


def test_a_new_account_with_a_high_finding_escalates_but_an_old_one_does_not():
    findings = [
        {"rule": "ANONYMOUS", "severity": "high", "title": "Anonymous account"},
        {"rule": "WILDCARD_HOST", "severity": "medium", "title": "Wildcard host"},
    ]
    new = escalation_from_change(change([], "added"), findings)
    assert new is not None and new.kind == "new_privileged_account" and new.severity == "high"
    assert [f["rule"] for f in new.findings] == ["ANONYMOUS"]
    assert escalation_from_change(change([], "privileges_changed"), findings) is None
    assert escalation_from_change(change([], "added"), findings[1:]) is None


def test_a_new_superuser_takes_the_highest_severity_of_its_reasons():
    ops = diff_snapshots(None, snap(caps=["GRANT_ADMIN", "SUPERUSER"]))
    escalation = escalation_from_change(change(ops, "added"), [{"rule": "SUPERUSER", "severity": "high", "title": "t"}])
    assert escalation is not None
    assert (escalation.severity, escalation.capabilities) == ("critical", ("GRANT_ADMIN", "SUPERUSER"))


# --- on real syncs (chosen catalog, real engine, findings and change log) ------------------------------


@pytest.fixture
def channel(db):
    return AlertChannel.objects.create(name="ops", kind="webhook", webhook_url="http://127.0.0.1:9/none")


def synced(instance) -> dict:
    result = sync_accounts(instance=instance, sync_type="manual_single")
    assert result["success"], result["message"]
    return result


@pytest.mark.django_db
def test_detection_reads_only_the_latest_sync(server, make_instance, channel):
    inst = make_instance()
    server.accounts = [account("app", select_on="sales"), account("dba")]
    synced(inst)  # baseline
    server.accounts = [
        account("app", select_on="sales"),
        account("dba", superuser=True),
        account("anon", caps=("ANONYMOUS",)),
        account("wide", caps=("WILDCARD_HOST",)),
        account("reader", select_on="hr"),
    ]
    result = synced(inst)
    found = {
        (e.change.identity, e.kind, e.severity) for e in alerts_detect(instance=inst, session_id=None, result=result)
    }
    assert found == {
        ("'dba'@'localhost'", "capability_gained", "critical"),
        ("'anon'@'localhost'", "new_privileged_account", "high"),
    }
    # a sync that changes nothing has nothing to report, although the latest change log is the escalation
    quiet = synced(inst)
    assert alerts_detect(instance=inst, session_id=None, result=quiet) == []
    # and an unrelated change later does not report the old escalation again
    server.accounts = [*server.accounts[:4], account("reader", select_on="finance")]
    assert alerts_detect(instance=inst, session_id=None, result=synced(inst)) == []


@pytest.mark.django_db
def test_first_sync_is_the_baseline_unless_configured(server, make_instance, channel, settings):
    server.accounts = [account("root", superuser=True, grant_admin=True)]
    synced(make_instance())
    assert AlertDelivery.objects.count() == 0
    settings.WHALEFALL_ALERT_ON_FIRST_SYNC = True
    result = synced(make_instance())
    assert result["details"]["alerts"] == {"escalations": 1, "deliveries": 1}
    delivery = AlertDelivery.objects.get()
    assert (delivery.event_kind, delivery.severity, delivery.account_identity) == (
        "new_privileged_account",
        "critical",
        "'root'@'localhost'",
    )
    assert delivery.payload["escalation"]["capabilities"] == ["GRANT_ADMIN", "SUPERUSER"]
    assert [f["rule"] for f in delivery.payload["escalation"]["findings"]] == ["SUPERUSER"]


@pytest.mark.django_db
def test_a_failed_sync_detects_nothing(make_instance, channel):
    assert alerts_after_sync(instance=make_instance(), session_id=None, result={"success": False}) is None


@pytest.mark.django_db
def test_channel_filters(server, make_instance, settings):
    settings.WHALEFALL_ALERT_ON_FIRST_SYNC = True
    url = "https://hooks.example.com/x"
    mysql_only = AlertChannel.objects.create(name="mysql", kind="webhook", webhook_url=url, db_types=["mysql"])
    pg_only = AlertChannel.objects.create(name="pg", kind="webhook", webhook_url=url, db_types=["postgresql"])
    prod = AlertChannel.objects.create(name="prod", kind="webhook", webhook_url=url, environments=["production"])
    critical = AlertChannel.objects.create(name="crit", kind="webhook", webhook_url=url, min_severity="critical")
    off = AlertChannel.objects.create(name="off", kind="webhook", webhook_url=url, is_active=False)
    server.accounts = [account("granter", grant_admin=True, select_on="sales")]  # GRANT_ADMIN only: high
    synced(make_instance(environment="production"))
    assert set(AlertDelivery.objects.values_list("channel__name", flat=True)) == {mysql_only.name, prod.name}
    assert not AlertDelivery.objects.filter(channel__in=[pg_only, critical, off]).exists()


# --- cost and floods ---------------------------------------------------------------------------------


def escalated_sync(server, instance, n: int) -> dict:
    """Baseline of n plain accounts, then a sync where every one of them became a superuser."""
    server.accounts = [account(f"u{i}") for i in range(n)]
    synced(instance)
    server.accounts = [account(f"u{i}", superuser=True) for i in range(n)]
    return synced(instance)


@pytest.mark.django_db
def test_no_active_channel_costs_one_query(server, make_instance, django_assert_num_queries):
    inst = make_instance()
    result = escalated_sync(server, inst, 3)
    AlertChannel.objects.create(name="off", kind="webhook", webhook_url="https://x.example.com", is_active=False)
    with django_assert_num_queries(1):
        assert alerts_after_sync(instance=inst, session_id=None, result=result) is None


@pytest.mark.django_db
def test_detection_reads_do_not_grow_with_escalations(server, make_instance, settings):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.WHALEFALL_ALERT_DIGEST_OVER = 100_000
    counts = []
    for n in (3, 300):
        inst = make_instance()
        result = escalated_sync(server, inst, n)
        AlertChannel.objects.all().delete()
        AlertDelivery.objects.all().delete()
        AlertChannel.objects.create(name=f"c{n}", kind="webhook", webhook_url="https://x.example.com")
        with CaptureQueriesContext(connection) as ctx:
            assert alerts_after_sync(instance=inst, session_id=None, result=result) == {
                "escalations": n,
                "deliveries": n,
            }
        inserts = [q for q in ctx.captured_queries if q["sql"].startswith("INSERT")]
        assert len(inserts) <= 1 + n // 50  # bulk inserts (SQLite caps a statement at 999 parameters)
        counts.append(len(ctx.captured_queries) - len(inserts))
    assert counts[0] == counts[1] <= 8, counts


@pytest.mark.django_db
def test_a_mass_escalation_becomes_one_digest_per_channel(server, make_instance, settings):
    settings.WHALEFALL_ALERT_DIGEST_OVER = 3
    settings.WHALEFALL_ALERT_BASE_URL = "https://whalefall.example.com/"
    AlertChannel.objects.create(name="all", kind="webhook", webhook_url="https://x.example.com")
    inst = make_instance()
    result = escalated_sync(server, inst, 5)
    assert result["details"]["alerts"] == {"escalations": 5, "deliveries": 1}
    digest = AlertDelivery.objects.get()
    assert (digest.event_kind, digest.severity, digest.account_identity) == (
        "escalation_digest",
        "critical",
        "5 accounts",
    )
    assert digest.payload["count"] == 5 and digest.payload["truncated"] == 0
    assert sorted(e["account"]["identity"] for e in digest.payload["escalations"]) == [
        f"'u{i}'@'localhost'" for i in range(5)
    ]
    assert digest.payload["accounts_url"] == (
        f"https://whalefall.example.com/admin/accountsync/instanceaccount/?instance__id__exact={inst.pk}"
    )
    assert digest.payload["escalations"][0]["account_url"].startswith("https://whalefall.example.com/admin/")

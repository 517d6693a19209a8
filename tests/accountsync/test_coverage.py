"""Coverage instead of false revokes (#16 part 1), at the engine: three syncs, before, during and after a gap.

What an auditor must be able to sign: a scope the monitoring login cannot read keeps its
last known grants (no revoke, no change entry, findings stay open), the instance records
one episode for the gap (opened, then closed), and its return changes nothing that did
not really change. Grants of a scope the options leave out go silently ("no longer
audited"), never as revokes. The adapters' part (which gaps they report) is tested with
each adapter, live.
"""

from __future__ import annotations

import pytest

from accountsync.adapters.base import AccountRecord, Catalog, CoverageGap, GapKind, Privilege
from accountsync.models import AccountChangeLog, AccountPermission, CoverageGapEpisode
from accountsync.services import account_sync_apply
from findings.models import Finding
from findings.services import findings_refresh

pytestmark = pytest.mark.django_db


def role(name: str, *grants: tuple[str, str, bool], caps: tuple[str, ...] = ()) -> AccountRecord:
    return AccountRecord(
        identity=name,
        username=name,
        kind="user",
        attributes={"login": True},
        privileges=[Privilege(scope, priv, grantable) for scope, priv, grantable in grants],
        capabilities=set(caps),
    )


SALES = CoverageGap(
    scope="database:nc_sales",
    reason="permission denied for database nc_sales",
    fix='GRANT CONNECT ON DATABASE "nc_sales" TO "monitor"',
    inclusive=False,
)


def full(*, public_connect: bool = True) -> Catalog:
    accounts = [
        role(
            "ann",
            ("database:nc_sales", "CONNECT", False),
            ("object:nc_sales.public.orders", "SELECT", True),
            caps=("GRANT_ADMIN",),
        ),
        role(
            "ben", ("object:nc_sales.public.orders", "INSERT", False), ("object:nc_shop.public.items", "SELECT", False)
        ),
        role("cat", ("object:nc_shop.public.items", "SELECT", False)),
    ]
    public = [("database:nc_shop", "CONNECT", False)] + [("database:nc_sales", "CONNECT", False)] * public_connect
    accounts.append(role("public", *public))
    return Catalog(accounts=accounts).finalize()


def during(*, public_connect: bool = True) -> Catalog:
    """nc_sales unreadable: its contents are missing from the read, the database ACL still arrives."""
    accounts = [
        role("ann", ("database:nc_sales", "CONNECT", False)),
        role("ben", ("object:nc_shop.public.items", "SELECT", False)),
        role("cat", ("object:nc_shop.public.items", "SELECT", False)),
    ]
    public = [("database:nc_shop", "CONNECT", False)] + [("database:nc_sales", "CONNECT", False)] * public_connect
    accounts.append(role("public", *public))
    return Catalog(accounts=accounts, coverage=[SALES]).finalize()


def privileges(identity: str) -> list[tuple[str, str, bool]]:
    snap = AccountPermission.objects.get(account__identity=identity, valid_to__isnull=True).snapshot
    return [(p["scope"], p["privilege"], p["grantable"]) for p in snap["privileges"]]


def test_a_gap_keeps_the_last_known_grants_and_logs_nothing_per_account(make_instance):
    instance = make_instance("postgresql", port=5432)
    first = account_sync_apply(instance=instance, catalog=full())
    assert first.success and first.coverage_gaps == 0
    findings_refresh(instance=instance)
    grant_finding = Finding.objects.get(account__identity="ann", rule_code="GRANT_OPTION", is_open=True)
    entries = AccountChangeLog.objects.count()
    snapshots = AccountPermission.objects.count()
    instance.last_success_at = instance.last_sync_at = first_time = instance.accounts.first().first_seen_at
    instance.save(update_fields=["last_success_at", "last_sync_at"])

    # during: nc_sales unreadable and, readable server-wide, PUBLIC's CONNECT on it revoked
    second = account_sync_apply(instance=instance, catalog=during(public_connect=False))
    assert second.success
    assert "completed with gaps: 1 unreadable (database:nc_sales)" in second.message
    assert second.coverage_gaps == 1
    gaps = second.details["coverage"]["gaps"]
    assert [(g["scope"], g["kind"], g["fix"]) for g in gaps] == [
        ("database:nc_sales", "unreadable", 'GRANT CONNECT ON DATABASE "nc_sales" TO "monitor"')
    ]
    assert second.details["coverage"]["opened"] == ["database:nc_sales"]
    # the one real change: PUBLIC lost CONNECT (exact, because database ACLs are read server-wide)
    new_entries = list(AccountChangeLog.objects.order_by("id")[entries:].values_list("account__identity", "summary"))
    assert new_entries == [("public", "-CONNECT on database:nc_sales")]
    assert second.modified_count == 1
    assert privileges("ann") == [
        ("database:nc_sales", "CONNECT", False),
        ("object:nc_sales.public.orders", "SELECT", True),
    ]
    assert ("object:nc_sales.public.orders", "INSERT", False) in privileges("ben")
    # no snapshot of ann, ben or cat was rewritten: what they hold is what was known
    assert AccountPermission.objects.count() == snapshots + 1
    findings_refresh(instance=instance)
    assert Finding.objects.get(pk=grant_finding.pk).is_open  # its evidence lies in the gap: it stays open
    episode = CoverageGapEpisode.objects.get(instance=instance)
    assert (episode.scope, episode.kind, episode.closed_at, episode.last_read_at) == (
        "database:nc_sales",
        GapKind.UNREADABLE,
        None,
        first_time,
    )

    # the same gap again: nothing written, still one open episode
    third = account_sync_apply(instance=instance, catalog=during(public_connect=False))
    assert third.modified_count == 0 and third.coverage_gaps == 1
    assert third.details["coverage"]["opened"] == []
    assert CoverageGapEpisode.objects.filter(instance=instance).count() == 1

    # after: readable again, with one real revoke inside it (ben's INSERT)
    after = full(public_connect=False)
    after.accounts[[a.identity for a in after.accounts].index("ben")].privileges = [
        Privilege("object:nc_shop.public.items", "SELECT")
    ]
    fourth = account_sync_apply(instance=instance, catalog=after)
    assert fourth.coverage_gaps == 0 and fourth.details["coverage"]["closed"] == ["database:nc_sales"]
    assert "completed with gaps" not in fourth.message
    latest = list(AccountChangeLog.objects.order_by("id")[entries + 1 :].values_list("account__identity", "summary"))
    assert latest == [("ben", "-INSERT on object:nc_sales.public.orders")]
    episode.refresh_from_db()
    assert episode.closed_at is not None
    findings_refresh(instance=instance)
    # the finding never closed and never reopened: same row, same first-seen time
    assert Finding.objects.filter(account__identity="ann", rule_code="GRANT_OPTION").count() == 1
    assert Finding.objects.get(pk=grant_finding.pk).is_open


def test_a_second_gap_episode_opens_after_the_first_closed(make_instance):
    instance = make_instance("postgresql", port=5432)
    account_sync_apply(instance=instance, catalog=full())
    account_sync_apply(instance=instance, catalog=during())
    account_sync_apply(instance=instance, catalog=full())
    account_sync_apply(instance=instance, catalog=during())
    episodes = list(CoverageGapEpisode.objects.filter(instance=instance).order_by("opened_at", "id"))
    assert [e.closed_at is None for e in episodes] == [False, True]
    assert all(not op for e in AccountChangeLog.objects.filter(change_type="attributes_changed") for op in e.diff)


def test_out_of_scope_grants_are_dropped_without_revokes(make_instance):
    instance = make_instance("postgresql", port=5432)
    account_sync_apply(instance=instance, catalog=full())
    entries = AccountChangeLog.objects.count()
    narrowed = during()
    narrowed.coverage = [
        CoverageGap(
            scope="database:nc_sales",
            reason="not in the instance's databases option",
            kind=GapKind.OUT_OF_SCOPE,
            inclusive=False,
        )
    ]
    result = account_sync_apply(instance=instance, catalog=narrowed)
    assert result.success and "1 out of scope (database:nc_sales)" in result.message
    assert AccountChangeLog.objects.count() == entries  # no revoke, no entry
    # what is no longer audited is no longer shown as held
    assert privileges("ben") == [("object:nc_shop.public.items", "SELECT", False)]
    assert result.modified_count == 0


def test_an_empty_diff_never_becomes_an_entry(make_instance):
    instance = make_instance("postgresql", port=5432)
    account_sync_apply(instance=instance, catalog=full())
    # a snapshot written before coverage was tracked carried its unknown scopes: its stored form differs only there
    row = AccountPermission.objects.get(account__identity="cat", valid_to__isnull=True)
    row.snapshot = {**row.snapshot, "unknown_scopes": ["database:nc_sales"]}
    row.digest = "0" * 64
    row.save(update_fields=["snapshot", "digest"])
    entries = AccountChangeLog.objects.count()
    result = account_sync_apply(instance=instance, catalog=full())
    assert list(AccountChangeLog.objects.order_by("id")[entries:].values_list("summary", "diff")) == []
    assert result.modified_count == 0
    assert (
        AccountPermission.objects.get(account__identity="cat", valid_to__isnull=True).snapshot["unknown_scopes"] == []
    )

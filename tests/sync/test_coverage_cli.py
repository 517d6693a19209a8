"""`sync_accounts` says when a sync completed with coverage gaps: exit 4, `gaps` in the JSON, the session marked."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from accountsync.adapters.base import AccountRecord, CoverageGap
from sync.models import SyncSession

pytestmark = pytest.mark.django_db

GAP = CoverageGap(
    scope="database:nc_sales",
    reason='permission denied for database "nc_sales"',
    fix='GRANT CONNECT ON DATABASE "nc_sales" TO "monitor"',
    inclusive=False,
)


def run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("sync_accounts", *args, stdout=out)
    except SystemExit as exc:
        return int(exc.code), out.getvalue()
    return 0, out.getvalue()


@pytest.fixture
def gapped(chosen_server, make_instance):
    chosen_server.accounts = [AccountRecord(identity="'app'@'%'", username="app", host="%")]
    chosen_server.coverage = [GAP]
    make_instance(name="db1")
    return chosen_server


def test_single_sync_with_a_gap_exits_4_and_lists_it(gapped):
    code, out = run("--instance", "db1", "--json")
    assert code == 4
    report = json.loads(out)
    assert report["with_gaps"] == 1
    (result,) = report["results"]
    assert result["success"] and result["coverage_gaps"] == 1
    assert [(g["scope"], g["kind"], g["fix"]) for g in result["gaps"]] == [(GAP.scope, "unreadable", GAP.fix)]

    code, text = run("--instance", "db1")
    assert code == 4
    assert "ok with gaps" in text and f"unreadable: database:nc_sales: {GAP.reason} (fix: {GAP.fix})" in text
    assert "1 ok (1 with coverage gaps), 0 failed" in text


def test_batch_session_is_completed_with_gaps(gapped, make_instance, django_user_model):
    make_instance(name="db2")
    django_user_model.objects.create_user("ops")
    code, out = run("--instance", "db1", "--instance", "db2", "--user", "ops", "--json")
    assert code == 4
    session = SyncSession.objects.get()
    assert (session.status, session.gapped_instances, session.with_gaps) == ("completed", 2, True)
    assert sorted(r.coverage_gaps for r in session.records.all()) == [1, 1]
    assert json.loads(out)["with_gaps"] == 2


def test_no_gap_is_exit_0(gapped):
    gapped.coverage = []
    code, out = run("--instance", "db1", "--json")
    assert code == 0 and json.loads(out)["with_gaps"] == 0


def test_a_database_left_out_by_the_options_is_listed_but_no_gap(gapped):
    from accountsync.adapters.base import GapKind

    gapped.coverage = [
        CoverageGap(
            scope="database:archive",
            reason="not in the instance's databases option",
            kind=GapKind.OUT_OF_SCOPE,
            inclusive=False,
        )
    ]
    code, out = run("--instance", "db1", "--json")
    assert code == 0
    (result,) = json.loads(out)["results"]
    assert result["coverage_gaps"] == 0 and [g["kind"] for g in result["gaps"]] == ["out_of_scope"]
    assert "not audited: 1 out of scope (database:archive)" in result["message"]

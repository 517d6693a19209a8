"""Coverage in the admin (#16 part 1): "completed with gaps" on records, sessions, instances and the dashboard."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accountsync.adapters.base import AccountRecord, CoverageGap
from accountsync.models import CoverageGapEpisode
from sync.models import SyncSession
from sync.services import sync_session_run, sync_session_start

pytestmark = pytest.mark.django_db

GAP = CoverageGap(
    scope="database:nc_sales",
    reason='permission denied for database "nc_sales"',
    fix='GRANT CONNECT ON DATABASE "nc_sales" TO "monitor"',
    inclusive=False,
)


@pytest.fixture
def gapped_session(chosen_server, make_instance, alice):
    chosen_server.accounts = [AccountRecord(identity="'app'@'%'", username="app", host="%")]
    chosen_server.coverage = [GAP]
    gapped, clean = make_instance(name="maria-gaps"), make_instance(name="maria-clean")
    session = sync_session_start(instances=[gapped], sync_type="manual_batch", created_by=alice, enqueue=False)
    sync_session_run(session=session)
    chosen_server.coverage = []
    other = sync_session_start(instances=[clean], sync_type="manual_batch", created_by=alice, enqueue=False)
    sync_session_run(session=other)
    session.refresh_from_db()
    return session, gapped, clean


def test_session_page_lists_the_gap_with_its_fix(gapped_session, client_for):
    session, _gapped, _clean = gapped_session
    page = client_for("charlie").get(reverse("admin:sync_syncsession_change", args=[session.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert 'class="wf-badge wf-badge-gaps">Completed with gaps' in html
    assert "<code>database:nc_sales</code>" in html and "GRANT CONNECT ON DATABASE &quot;nc_sales&quot;" in html
    progress = client_for("charlie").get(reverse("admin:sync_syncsession_progress", args=[session.pk])).json()
    assert progress["status"] == "gaps" and progress["with_gaps"] == 1
    assert progress["records"][0]["gaps"][0]["fix"] == GAP.fix


def test_lists_filter_by_coverage(gapped_session, client_for):
    session, _gapped, _clean = gapped_session
    client = client_for("charlie")
    sessions = client.get(reverse("admin:sync_syncsession_changelist") + "?coverage=gaps")
    assert sessions.context["cl"].result_count == 1
    assert list(sessions.context["cl"].result_list) == [session]
    assert SyncSession.objects.count() == 2
    records = client.get(reverse("admin:sync_syncinstancerecord_changelist") + "?coverage=gaps")
    assert [r.instance_name for r in records.context["cl"].result_list] == ["maria-gaps"]
    complete = client.get(reverse("admin:sync_syncinstancerecord_changelist") + "?coverage=complete")
    assert [r.instance_name for r in complete.context["cl"].result_list] == ["maria-clean"]
    instances = client.get(reverse("admin:instances_instance_changelist") + "?coverage=gaps")
    assert [i.name for i in instances.context["cl"].result_list] == ["maria-gaps"]
    assert "Completed with gaps" in instances.content.decode()


def test_instance_page_shows_open_gaps_and_the_history_link(gapped_session, client_for):
    _session, gapped, clean = gapped_session
    client = client_for("charlie")
    html = client.get(reverse("admin:instances_instance_change", args=[gapped.pk])).content.decode()
    assert 'id="wf-instance-coverage"' in html and "The last sync could not read 1 scope" in html
    assert "GRANT CONNECT ON DATABASE &quot;nc_sales&quot;" in html
    clean_html = client.get(reverse("admin:instances_instance_change", args=[clean.pk])).content.decode()
    assert "The last sync read everything it was asked to read." in clean_html
    history = client.get(
        reverse("admin:accountsync_coveragegapepisode_changelist") + f"?instance__id__exact={gapped.pk}"
    )
    assert [e.scope for e in history.context["cl"].result_list] == ["database:nc_sales"]
    episode = CoverageGapEpisode.objects.get()
    assert client.get(reverse("admin:accountsync_coveragegapepisode_change", args=[episode.pk])).status_code == 200


def test_dashboard_counts_instances_with_gaps_apart(gapped_session, client_for):
    from dashboard import selectors

    rows = {row.db_type: row for row in selectors.instance_status_by_type()}
    assert (rows["mysql"].completed, rows["mysql"].gaps) == (1, 1)
    html = client_for("alice").get(reverse("admin:index")).content.decode()
    assert "Completed with gaps" in html and "coverage=gaps" in html

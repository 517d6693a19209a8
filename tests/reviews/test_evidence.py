"""The evidence: a streamed CSV and a printable page with every decision, who, when, and the frozen access."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from reviews.models import ReviewItem
from reviews.selectors import EVIDENCE_COLUMNS
from reviews.services import campaign_close, campaign_create, item_decide

pytestmark = pytest.mark.django_db


@pytest.fixture
def decided(fleet, alice, dave, erin, monkeypatch):
    import grantscripts.services

    monkeypatch.setattr(  # another engineer's generator, being written: a stand-in at that boundary
        grantscripts.services,
        "revoke_script",
        lambda *, account, privileges=(), roles=(): f"REVOKE {len(list(privileges))} FROM {account.identity};",
    )
    campaign = campaign_create(
        name="Evidence",
        due_date=date.today() + timedelta(days=7),
        reviewers=[dave, erin],
        actor=alice,
        instances=[fleet["prod"]],
    )
    by_user = {i.account.username: i for i in ReviewItem.objects.filter(campaign=campaign).select_related("account")}
    for name, decision in (("ann", "revoke"), ("bo", "change"), ("cy", "keep")):
        item = by_user[name]
        reviewer = dave if item.reviewer_id == dave.pk else erin
        extra = {"revoke": ["database:hr|SELECT"], "target": "read only"} if decision == "change" else {}
        item_decide(item=item, actor=reviewer, decision=decision, comment=f"{decision} because", **extra)
    campaign_close(campaign=campaign, actor=alice)
    campaign.refresh_from_db()
    return campaign


def read_csv(response) -> list[dict[str, str]]:
    body = b"".join(response.streaming_content).decode("utf-8")
    assert body.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(body.lstrip("\ufeff"))))


def test_evidence_csv_has_every_item_decision_and_frozen_access(decided, alice, client_of):
    response = client_of(alice).get(reverse("admin:reviews_campaign_evidence_csv", args=[decided.pk]))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "attachment;" in response["Content-Disposition"]
    rows = read_csv(response)
    assert list(rows[0]) == list(EVIDENCE_COLUMNS)
    by_account = {r["account"]: r for r in rows}
    assert len(rows) == 4 and {r["campaign_status"] for r in rows} == {"closed"}
    ann = by_account["'ann'@'%'"]
    assert ann["decision"] == "revoke" and ann["comment"] == "revoke because"
    assert sorted(ann["access"].splitlines()) == [
        "database:sales · INSERT · via 'app_rw'",
        "database:sales · SELECT · via direct",
    ]
    assert ann["revoke_privileges"] == "database:sales|SELECT" and ann["revoke_roles"] == "'app_rw'"
    assert ann["script"] == "REVOKE 1 FROM 'ann'@'%';"
    assert ann["decided_by"] in ("dave", "erin") and ann["decided_at"].endswith("Z")
    assert ann["access_at"] == decided.started_at.isoformat().replace("+00:00", "Z")
    bo = by_account["'bo'@'%'"]
    assert (bo["decision"], bo["target"], bo["revoke_privileges"]) == ("change", "read only", "database:hr|SELECT")
    assert "database:hr · SELECT (grantable) · via direct" in bo["access"].splitlines()
    # a name a spreadsheet would run as a formula is neutralised; pending stays pending, undecided
    hostile = next(r for r in rows if "HYPERLINK" in r["account"])
    assert hostile["account"].startswith("'") and hostile["decision"] == "pending" and hostile["decided_by"] == ""


def test_evidence_csv_through_the_api_is_the_same_and_audited(decided, alice, api_of):
    response = api_of(alice).get(f"/api/v1/review-campaigns/{decided.pk}/evidence/")
    assert response.status_code == 200
    rows = read_csv(response)
    assert len(rows) == 4
    event = AuditEvent.objects.filter(kind="review_evidence_export").latest("id")
    assert event.actor_username == "alice" and event.via == "api"
    assert event.details == {"format": "csv", "rows": 4, "complete": True, "status": "closed"}


def test_evidence_page_is_printable_and_complete(decided, alice, client_of):
    response = client_of(alice).get(reverse("admin:reviews_campaign_evidence", args=[decided.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "@media print" in html and "size: A4" in html
    for text in (
        "Access review evidence: Evidence",
        "revoke because",
        "change because",
        "keep because",
        "database:sales · INSERT · via &#x27;app_rw&#x27;",
        "REVOKE 1 FROM &#x27;ann&#x27;@&#x27;%&#x27;;",
        "Target: read only",
        decided.closed_by_username,
    ):
        assert text in html, text
    assert html.count("<tr>") - html.count("<thead>") >= 4  # one row per item
    assert "<script" not in html  # nothing runs in the evidence (only the print button's inline handler)
    event = AuditEvent.objects.filter(kind="review_evidence_export").latest("id")
    assert event.details["format"] == "html" and event.details["rows"] == 4

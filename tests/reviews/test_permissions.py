"""Who sees and does what: a reviewer sees only their own items (admin and API), a Viewer cannot decide,
a closed campaign is read-only for everyone, and a reviewer's admin index offers only the reviews."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from reviews.models import Campaign, ReviewItem
from reviews.services import campaign_close, campaign_create
from sync.roles import REVIEWERS

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign(fleet, alice, dave, erin):
    return campaign_create(
        name="Prod review",
        due_date=date.today() + timedelta(days=7),
        reviewers=[dave, erin],
        actor=alice,
        instances=[fleet["prod"]],
    )


def items_of(campaign, user):
    return list(ReviewItem.objects.filter(campaign=campaign, reviewer=user).order_by("id"))


def codes(group_name: str) -> set[str]:
    return {
        f"{app}.{code}"
        for app, code in Group.objects.get(name=group_name).permissions.values_list(
            "content_type__app_label", "codename"
        )
    }


def test_reviewers_role_holds_exactly_the_review_permissions(alice, bob, charlie):
    assert codes(REVIEWERS) == {"reviews.view_campaign", "reviews.view_reviewitem", "reviews.decide_reviewitem"}
    assert {"reviews.close_campaign", "reviews.oversee_reviews", "reviews.add_campaign"} <= {
        p for p in codes("WhaleFall admins")
    }
    for other in (bob, charlie):  # operators and viewers hold nothing on reviews
        assert not [p for p in other.get_all_permissions() if p.startswith("reviews.")]


# -- admin -----------------------------------------------------------------------------------


def test_admin_reviewer_lists_only_own_items(campaign, dave, erin, client_of):
    mine, theirs = items_of(campaign, dave), items_of(campaign, erin)
    assert mine and theirs
    page = client_of(dave).get(reverse("admin:reviews_reviewitem_changelist"))
    assert page.status_code == 200
    listed = list(page.context["cl"].queryset)
    assert listed == sorted(mine, key=lambda i: listed.index(i)) and set(listed) == set(mine)
    assert "My review items" in page.content.decode()
    # even filtered on the campaign, and by direct URL, erin's items do not exist for dave
    filtered = client_of(dave).get(
        reverse("admin:reviews_reviewitem_changelist") + f"?campaign__id__exact={campaign.pk}"
    )
    assert set(filtered.context["cl"].queryset) == set(mine)
    other = client_of(dave).get(reverse("admin:reviews_reviewitem_change", args=[theirs[0].pk]))
    assert other.status_code == 302  # the admin's "doesn't exist" redirect
    assert theirs[0].identity not in client_of(dave).get(reverse("admin:index"), follow=True).content.decode()


def test_admin_campaign_page_shows_a_reviewer_only_own_progress(campaign, dave, erin, alice, client_of):
    page = client_of(dave).get(reverse("admin:reviews_campaign_change", args=[campaign.pk]))
    assert page.status_code == 200
    assert [p.reviewer for p in page.context["per"]] == ["dave"]
    assert not page.context["may_close"] and not page.context["may_export"]
    assert client_of(dave).get(reverse("admin:reviews_campaign_evidence_csv", args=[campaign.pk])).status_code == 403
    assert client_of(dave).get(reverse("admin:reviews_campaign_close", args=[campaign.pk])).status_code == 403
    overseer = client_of(alice).get(reverse("admin:reviews_campaign_change", args=[campaign.pk]))
    assert [p.reviewer for p in overseer.context["per"]] == ["dave", "erin"]
    assert overseer.context["overall"].total == 4 and overseer.context["may_close"]


def test_admin_reviewer_decides_own_item_with_the_form(campaign, dave, client_of):
    item = next(i for i in items_of(campaign, dave) if i.access)
    url = reverse("admin:reviews_reviewitem_change", args=[item.pk])
    page = client_of(dave).get(url)
    assert page.status_code == 200 and 'name="decision"' in page.content.decode()
    bad = client_of(dave).post(url, {"decision": "revoke", "comment": ""})
    assert bad.status_code == 200 and "Say why" in bad.content.decode()
    done = client_of(dave).post(url, {"decision": "keep", "comment": "still needed"})
    assert done.status_code == 302
    item.refresh_from_db()
    assert (item.decision, item.comment, item.decided_by_username) == ("keep", "still needed", "dave")


def test_admin_viewer_and_admin_cannot_decide_others_items(campaign, dave, alice, charlie, client_of):
    item = items_of(campaign, dave)[0]
    url = reverse("admin:reviews_reviewitem_change", args=[item.pk])
    assert client_of(charlie).get(reverse("admin:reviews_reviewitem_changelist")).status_code == 403
    assert client_of(charlie).post(url, {"decision": "keep"}).status_code == 403
    view = client_of(alice).get(url)  # the overseer reads it, without a form
    assert view.status_code == 200 and 'name="decision"' not in view.content.decode()
    assert client_of(alice).post(url, {"decision": "keep", "comment": "x"}).status_code == 403
    item.refresh_from_db()
    assert item.decision == "pending"


def test_admin_closed_campaign_is_read_only_for_everyone(campaign, dave, alice, client_of):
    item = items_of(campaign, dave)[0]
    campaign_close(campaign=campaign, actor=alice)
    change = reverse("admin:reviews_campaign_change", args=[campaign.pk])
    page = client_of(alice).get(change)
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert client_of(alice).post(change, {"name": "renamed", "due_date": "2030-01-01"}).status_code == 403
    assert client_of(alice).get(reverse("admin:reviews_campaign_delete", args=[campaign.pk])).status_code == 403
    assert client_of(alice).post(
        reverse("admin:reviews_campaign_changelist"), {"action": "delete_selected", "_selected_action": [campaign.pk]}
    ).status_code in (200, 302)
    item_url = reverse("admin:reviews_reviewitem_change", args=[item.pk])
    assert 'name="decision"' not in client_of(dave).get(item_url).content.decode()
    assert client_of(dave).post(item_url, {"decision": "keep", "comment": "late"}).status_code == 403
    assert Campaign.objects.get(pk=campaign.pk).name == "Prod review"
    assert ReviewItem.objects.filter(campaign=campaign).count() == 4
    assert ReviewItem.objects.get(pk=item.pk).decision == "pending"


def test_admin_index_of_a_reviewer_offers_only_the_reviews(campaign, dave, client_of):
    page = client_of(dave).get(reverse("admin:index"))
    assert page.status_code == 200
    apps = [app["app_label"] for app in page.context["app_list"]]
    assert apps == ["reviews"]
    assert [m["object_name"] for m in page.context["app_list"][0]["models"]] == ["Campaign", "ReviewItem"]


def test_admin_creates_a_campaign_and_freezes_items(fleet, alice, dave, erin, client_of):
    response = client_of(alice).post(
        reverse("admin:reviews_campaign_add"),
        {
            "name": "Staging",
            "description": "",
            "instances": [],
            "environment": "staging",
            "reviewers": [dave.pk, erin.pk],
            "assignment": "round_robin",
            "due_date": (date.today() + timedelta(days=3)).isoformat(),
            "owners-TOTAL_FORMS": "0",
            "owners-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    campaign = Campaign.objects.get(name="Staging")
    assert campaign.created_by_username == "alice" and campaign.started_at
    assert list(campaign.items.values_list("identity", flat=True)) == ["'dee'@'%'"]


def test_admin_refuses_an_empty_selection_on_the_form(fleet, alice, dave, client_of):
    response = client_of(alice).post(
        reverse("admin:reviews_campaign_add"),
        {
            "name": "Nothing",
            "environment": "development",
            "reviewers": [dave.pk],
            "assignment": "round_robin",
            "due_date": date.today().isoformat(),
            "owners-TOTAL_FORMS": "0",
            "owners-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200 and "no active account" in response.content.decode()
    assert not Campaign.objects.exists()


# -- API -------------------------------------------------------------------------------------


def test_api_reviewer_sees_only_own_items(campaign, dave, erin, api_of):
    mine = {i.pk for i in items_of(campaign, dave)}
    theirs = items_of(campaign, erin)
    listed = api_of(dave).get("/api/v1/review-items/").json()
    assert {row["id"] for row in listed["results"]} == mine
    nested = api_of(dave).get(f"/api/v1/review-campaigns/{campaign.pk}/items/").json()
    assert {row["id"] for row in nested["results"]} == mine
    missing = api_of(dave).get(f"/api/v1/review-items/{theirs[0].pk}/")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    decided = api_of(dave).post(f"/api/v1/review-items/{theirs[0].pk}/decide/", {"decision": "keep"}, format="json")
    assert decided.status_code == 404
    detail = api_of(dave).get(f"/api/v1/review-campaigns/{campaign.pk}/").json()
    assert detail["reviewers"] == ["dave"]
    assert [p["reviewer"] for p in detail["progress"]["per_reviewer"]] == ["dave"]


def test_api_decide_validation_and_permissions(campaign, dave, charlie, alice, api_of):
    item = next(i for i in items_of(campaign, dave) if i.access)
    url = f"/api/v1/review-items/{item.pk}/decide/"
    assert api_of(charlie).post(url, {"decision": "keep"}, format="json").json()["code"] == "permission_denied"
    assert api_of(charlie).get("/api/v1/review-items/").status_code == 403
    refused = api_of(alice).post(url, {"decision": "keep"}, format="json")  # an overseer cannot sign for dave
    assert refused.status_code == 403 and refused.json()["code"] == "permission_denied"
    bad = api_of(dave).post(url, {"decision": "change", "comment": "x", "revoke": ["global|SUPER"]}, format="json")
    assert bad.status_code == 400 and "revoke" in bad.json() and bad.json()["code"]
    nonsense = api_of(dave).post(url, {"decision": "maybe"}, format="json")
    assert nonsense.status_code == 400 and "decision" in nonsense.json()
    ok = api_of(dave).post(url, {"decision": "keep", "comment": "fine"}, format="json")
    assert ok.status_code == 200 and ok.json()["decision"] == "keep" and ok.json()["decided_by_username"] == "dave"


def test_api_create_close_and_closed_is_read_only(fleet, alice, dave, erin, api_of):
    body = {
        "name": "API campaign",
        "instances": ["prod-db"],
        "reviewers": ["dave", "erin"],
        "due_date": (date.today() + timedelta(days=5)).isoformat(),
    }
    assert api_of(dave).post("/api/v1/review-campaigns/", body, format="json").status_code == 403
    created = api_of(alice).post("/api/v1/review-campaigns/", body, format="json")
    assert created.status_code == 201, created.json()
    data = created.json()
    assert data["progress"]["overall"]["total"] == 4 and data["status"] == "open"
    unknown = api_of(alice).post("/api/v1/review-campaigns/", {**body, "reviewers": ["nobody"]}, format="json")
    assert unknown.status_code == 400 and "reviewers" in unknown.json()
    empty = api_of(alice).post(
        "/api/v1/review-campaigns/", {**body, "instances": [], "environment": "development"}, format="json"
    )
    assert empty.status_code == 400 and empty.json()["code"]
    cid = data["id"]
    assert api_of(dave).post(f"/api/v1/review-campaigns/{cid}/close/").status_code == 403
    closed = api_of(alice).post(f"/api/v1/review-campaigns/{cid}/close/")
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    again = api_of(alice).post(f"/api/v1/review-campaigns/{cid}/close/")
    assert again.status_code == 409 and again.json()["code"] == "campaign_closed"
    item = ReviewItem.objects.filter(campaign_id=cid, reviewer=dave).first()
    late = api_of(dave).post(f"/api/v1/review-items/{item.pk}/decide/", {"decision": "keep"}, format="json")
    assert late.status_code == 409 and late.json()["code"] == "campaign_closed"
    for method in ("put", "patch", "delete"):
        response = getattr(api_of(alice), method)(f"/api/v1/review-campaigns/{cid}/", {}, format="json")
        assert response.status_code == 405 and response.json()["code"]
        response = getattr(api_of(alice), method)(f"/api/v1/review-items/{item.pk}/", {}, format="json")
        assert response.status_code == 405
    assert Campaign.objects.get(pk=cid).status == "closed"


def test_api_evidence_needs_the_overseer(campaign, dave, api_of):
    response = api_of(dave).get(f"/api/v1/review-campaigns/{campaign.pk}/evidence/")
    assert response.status_code == 403 and response.json()["code"] == "permission_denied"


def test_admin_close_asks_then_closes(campaign, alice, client_of):
    url = reverse("admin:reviews_campaign_close", args=[campaign.pk])
    ask = client_of(alice).get(url)
    assert ask.status_code == 200 and "0 of 4 items are decided; 4 are still pending" in ask.content.decode()
    assert Campaign.objects.get(pk=campaign.pk).status == "open"
    done = client_of(alice).post(url)
    assert done.status_code == 302
    assert Campaign.objects.get(pk=campaign.pk).status == "closed"
    again = client_of(alice).post(url, follow=True)
    assert "already closed" in again.content.decode()


def test_admin_campaign_list_progress_counts_what_the_user_sees(campaign, alice, dave, client_of):
    other = campaign_create(
        name="Staging review",
        due_date=date.today() - timedelta(days=1),
        reviewers=[alice],
        actor=alice,
        environment="staging",
    )
    page = client_of(alice).get(reverse("admin:reviews_campaign_changelist")).content.decode()
    assert "0 / 4 (0%)" in page and "0 / 1 (0%)" in page and "overdue" in page
    mine = client_of(dave).get(reverse("admin:reviews_campaign_changelist")).content.decode()
    assert "0 / 2 (0%)" in mine and other.name not in mine


def test_api_campaign_list_reads_progress_for_the_page_at_once(fleet, campaign, alice, dave, erin, api_of):
    """The list's queries do not grow with its campaigns, and each row's progress is what that user sees."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from reviews.services import item_decide

    item_decide(item=items_of(campaign, dave)[0], actor=dave, decision="keep", comment="fine")

    def listed(user):
        with CaptureQueriesContext(connection) as queries:
            response = api_of(user).get("/api/v1/review-campaigns/")
        assert response.status_code == 200
        return {row["name"]: row for row in response.json()["results"]}, len(queries.captured_queries)

    listed(alice)  # the first request of a client also issues its token
    one, one_queries = listed(alice)
    assert len(one) == 1
    for n in range(3):
        campaign_create(
            name=f"More {n}",
            due_date=date.today() + timedelta(days=3),
            reviewers=[dave, erin],
            actor=alice,
            instances=[fleet["prod"]],
        )
    four, four_queries = listed(alice)
    assert len(four) == 4 and four_queries == one_queries
    total = ReviewItem.objects.filter(campaign=campaign).count()
    prod = four["Prod review"]
    assert prod["progress"]["overall"] == {**prod["progress"]["overall"], "total": total, "decided": 1, "keep": 1}
    assert prod["reviewers"] == ["dave", "erin"] and prod["instances"] == ["prod-db"]
    assert four["More 0"]["progress"]["overall"]["decided"] == 0
    mine, _queries = listed(dave)  # a reviewer's progress counts only their own items
    assert mine["Prod review"]["progress"]["overall"]["total"] == len(items_of(campaign, dave))
    assert [p["reviewer"] for p in mine["Prod review"]["progress"]["per_reviewer"]] == ["dave"]
    assert mine["Prod review"]["reviewers"] == ["dave"]

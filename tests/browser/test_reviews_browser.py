"""An access review in a real browser (chromium, 1366 px): the campaign page, and a reviewer deciding.

alice (WhaleFall admins) opens a campaign's page and reads the progress per reviewer and overall;
dave (Reviewers) signs in, sees only "My review items", opens one, reads the frozen access with its
path, decides "revoke" with a comment and is shown the generated script. Back on the campaign
page alice sees the decision counted; the page is saved as docs/screenshots/review-campaign.png
(under WHALEFALL_SCREENSHOTS, with the decided item as review-item.png), and the campaign, item
and evidence pages must not scroll sideways.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from reviews.models import ReviewItem
from reviews.services import campaign_create
from tests.conftest import ROLE_PASSWORDS
from tests.reviews.conftest import REVIEWER_PASSWORDS, dave, erin, fleet, reviewer  # noqa: F401

from .conftest import overflow, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


def sign_in(browser, live_server, username: str, password: str):
    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")
    return context, page


def test_campaign_page_and_a_reviewer_deciding(browser, live_server, fleet, alice, dave, erin):  # noqa: F811
    campaign = campaign_create(
        name="Q4 production access review",
        description="Every login on prod-db, signed off by its reviewers.",
        due_date=date.today() + timedelta(days=14),
        reviewers=[dave, erin],
        actor=alice,
        instances=[fleet["prod"]],
    )
    daves = ReviewItem.objects.filter(campaign=campaign, reviewer=dave).order_by("identity")
    erins = ReviewItem.objects.filter(campaign=campaign, reviewer=erin)
    target = next(i for i in daves if i.access and "HYPERLINK" not in i.identity)

    admin_ctx, admin = sign_in(browser, live_server, "alice", ROLE_PASSWORDS["alice"])
    dave_ctx, page = sign_in(browser, live_server, "dave", REVIEWER_PASSWORDS["dave"])
    try:
        # dave's index offers only the reviews; his list holds his items and none of erin's
        assert page.locator("#content-main .app-reviews").count() == 1
        assert page.locator("#content-main .module").count() == 1
        page.goto(f"{live_server.url}/admin/reviews/reviewitem/")
        assert "My review items" in page.locator("#content h1").inner_text()
        assert not overflow(page), overflow(page)
        listed = page.locator("#result_list tbody tr").count()
        assert listed == daves.count()
        body = page.locator("#result_list").inner_text()
        for item in erins:
            assert item.identity not in body

        page.goto(f"{live_server.url}/admin/reviews/reviewitem/{target.pk}/change/")
        access = page.locator("ul.wf-review-access").inner_text()
        assert "via direct" in access or "via '" in access
        assert not overflow(page), overflow(page)
        page.check("input[name=decision][value=revoke]")
        page.fill("textarea[name=comment]", "Left the team in November")
        page.click("input[name=_save]")
        page.wait_for_selector(".messagelist .success")
        assert "Decision recorded: Revoke." in page.locator(".messagelist").inner_text()
        script = page.locator("pre.wf-review-script").inner_text()
        assert script.strip()  # the revoke script (or the note that the generator is not there yet)
        screenshot(page, "review-item")
        target.refresh_from_db()
        assert (target.decision, target.decided_by_username) == ("revoke", "dave")

        admin.goto(f"{live_server.url}/admin/reviews/campaign/{campaign.pk}/change/")
        table = admin.locator("#wf-review-progress-table").inner_text()
        assert "dave" in table and "erin" in table
        overall = admin.locator("#wf-review-progress-table tr.wf-review-overall").inner_text().split()
        assert overall[:3] == ["Overall", str(daves.count() + erins.count()), "1"]
        assert admin.locator("#wf-review-evidence-csv").count() == 1
        assert admin.locator("#wf-review-close").count() == 1
        assert not overflow(admin), overflow(admin)
        screenshot(admin, "review-campaign")

        admin.goto(f"{live_server.url}/admin/reviews/campaign/{campaign.pk}/evidence/")
        assert "Left the team in November" in admin.locator("#evidence-items").inner_text()
        assert not overflow(admin), overflow(admin)
        # printed: at A4 width with the print styles nothing runs off the page, and it prints as A4 pages
        admin.emulate_media(media="print")
        admin.set_viewport_size({"width": 794, "height": 1123})
        assert not overflow(admin), overflow(admin)
        assert admin.locator(".toolbar").is_hidden()
        pdf = admin.pdf(format="A4", print_background=True)
        assert pdf.startswith(b"%PDF") and b"/MediaBox [0 0 595" in pdf
    finally:
        dave_ctx.close()
        admin_ctx.close()

"""Admin: approve from the accounts and instances lists (confirmation with a comment), the classification form,
approving again, the baseline and version pages, and who may do what."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from baselines.models import Baseline, BaselineVersion
from baselines.services import baselines_evaluate
from classification.models import Classification, ClassificationAssignment
from tests.baselines.conftest import ITEMS, ORDERS, SHOP

pytestmark = pytest.mark.django_db

ACCOUNTS = reverse("admin:accountsync_instanceaccount_changelist")
INSTANCES = reverse("admin:instances_instance_changelist")
BASELINES = reverse("admin:baselines_baseline_changelist")
BASE = {"readers": [(ORDERS, "SELECT")], "ann": [(SHOP, "SELECT")]}
HOLDS = {"ann": ["readers"]}


@pytest.fixture
def login(alice, bob, charlie):
    users = {"alice": alice, "bob": bob, "charlie": charlie}

    def make(name: str) -> Client:
        client = Client()
        client.force_login(users[name])
        return client

    return make


def test_approve_accounts_asks_for_a_comment_then_approves(apply, login, alice):
    ann = apply(BASE, HOLDS)["ann"]
    admin = login("alice")
    action = {"action": "approve_accounts_action", "_selected_action": [ann.pk]}
    page = admin.post(ACCOUNTS, action)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Approve current access as baseline" in html and 'name="comment"' in html
    assert not Baseline.objects.exists()  # the confirmation page approves nothing

    empty = admin.post(ACCOUNTS, {**action, "apply": "1", "comment": ""})
    assert empty.status_code == 200 and "This field is required" in empty.content.decode()
    assert not Baseline.objects.exists()

    done = admin.post(ACCOUNTS, {**action, "apply": "1", "comment": "CHG-7"}, follow=True)
    assert "Approved 1 baseline" in done.content.decode()
    version = BaselineVersion.objects.get()
    assert (version.baseline.account, version.comment, version.approved_by) == (ann, "CHG-7", alice)
    event = AuditEvent.objects.get(kind="baseline_approved")
    assert (event.actor, event.via) == (alice, "admin")


def test_approve_instances_from_the_instances_list(apply, login, pg):
    apply(BASE, HOLDS)
    admin = login("alice")
    action = {"action": "approve_instances_action", "_selected_action": [pg.pk]}
    assert 'name="comment"' in admin.post(INSTANCES, action).content.decode()
    admin.post(INSTANCES, {**action, "apply": "1", "comment": "fleet"})
    baseline = Baseline.objects.get(kind="instance", instance=pg)
    assert baseline.versions.get().account_count == 2


def test_viewers_and_operators_cannot_approve(apply, login):
    ann = apply(BASE, HOLDS)["ann"]
    for name in ("bob", "charlie"):
        client = login(name)
        response = client.post(
            ACCOUNTS,
            {"action": "approve_accounts_action", "_selected_action": [ann.pk], "apply": "1", "comment": "x"},
            follow=True,
        )
        assert "You do not have permission to approve baselines" in response.content.decode()
        assert client.get(BASELINES).status_code == 200  # they can view
        assert client.get(reverse("admin:baselines_baseline_new_classification")).status_code == 302
    assert not Baseline.objects.exists()


def test_new_classification_baseline_and_approve_again(apply, login, pg):
    accounts = apply(BASE, HOLDS)
    cls = Classification.objects.create(code="readers-test", name="Readers")
    from django.utils import timezone

    ClassificationAssignment.objects.create(
        account=accounts["ann"], classification=cls, instance=pg, source="manual", assigned_at=timezone.now()
    )
    admin = login("alice")
    assert "New classification baseline" in admin.get(BASELINES).content.decode()
    url = reverse("admin:baselines_baseline_new_classification")
    assert admin.post(url, {"classification": cls.pk, "comment": ""}).status_code == 200  # form error, nothing made
    assert not Baseline.objects.exists()
    done = admin.post(url, {"classification": cls.pk, "comment": "readers reviewed"})
    baseline = Baseline.objects.get(kind="classification")
    assert done["Location"] == reverse("admin:baselines_baseline_change", args=[baseline.pk])

    apply({**BASE, "ann": [(SHOP, "SELECT"), (ITEMS, "INSERT")]}, HOLDS)
    baselines_evaluate(instance=pg)
    page = admin.get(reverse("admin:baselines_baseline_change", args=[baseline.pk])).content.decode()
    assert 'id="wf-open-drift"' in page and f"+ INSERT on {ITEMS} (via direct)" in page
    assert 'id="wf-versions"' in page

    action = {"action": "approve_again", "_selected_action": [baseline.pk]}
    assert 'name="comment"' in admin.post(BASELINES, action).content.decode()
    admin.post(BASELINES, {**action, "apply": "1", "comment": "INSERT approved"})
    baseline.refresh_from_db()
    assert baseline.version == 2
    page = admin.get(reverse("admin:baselines_baseline_change", args=[baseline.pk])).content.decode()
    assert 'id="wf-no-drift"' in page

    version = baseline.versions.get(version=2)
    entries = admin.get(reverse("admin:baselines_baselineversion_change", args=[version.pk])).content.decode()
    assert 'id="wf-entries"' in entries and f"{ITEMS} · INSERT · via direct" in entries
    finding_page = admin.get(reverse("admin:findings_finding_changelist") + "?rule=DRIFT")
    assert finding_page.status_code == 200

"""Admin pages: categories, rules (edit with validation, versions, preview), assignments, manual decisions,
the accounts list's filter and column, the dashboard panel; a Viewer reads but cannot edit."""

from __future__ import annotations

import json

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from accountsync.adapters.base import Privilege
from accountsync.models import InstanceAccount
from audit.models import AuditEvent
from classification.models import Classification, ClassificationRule, ClassificationRuleVersion, ManualAssignment
from tests.classification.helpers import apply_and_classify, members, mysql_account

pytestmark = pytest.mark.django_db

SUPER = Privilege("global", "ALL PRIVILEGES")


@pytest.fixture
def prod(make_instance):
    inst = make_instance("mysql", name="prod-db", environment="production")
    apply_and_classify(
        inst,
        mysql_account("su", SUPER),
        mysql_account("app", Privilege("database:sales", "INSERT")),
        mysql_account("lonely", kind="role"),
    )
    return inst


def rule_url(rule: ClassificationRule, what: str = "change") -> str:
    return reverse(f"admin:classification_classificationrule_{what}", args=[rule.pk])


def form_data(rule: ClassificationRule, **changes) -> dict[str, str]:
    data = {
        "classification": str(rule.classification_id),
        "name": rule.name,
        "db_type": rule.db_type,
        "is_enabled": "on",
        "expression": json.dumps(rule.expression),
        "comment": "",
        "versions-TOTAL_FORMS": "0",
        "versions-INITIAL_FORMS": str(rule.versions.count()),
        "versions-MIN_NUM_FORMS": "0",
        "versions-MAX_NUM_FORMS": "1000",
    }
    data.update(changes)
    return data


def test_every_page_opens_for_a_viewer(client_for, prod) -> None:
    client = client_for("charlie")
    rule = ClassificationRule.objects.get(classification__code="superuser")
    for name in ("classification", "classificationrule", "classificationassignment", "manualassignment"):
        assert client.get(reverse(f"admin:classification_{name}_changelist")).status_code == 200, name
    page = client.get(rule_url(rule))
    assert page.status_code == 200
    assert b"shipped default" in page.content  # the version history
    assert b'name="_save"' not in page.content  # read-only for a viewer


def test_a_viewer_cannot_edit_a_rule(client_for, prod) -> None:
    rule = ClassificationRule.objects.get(classification__code="superuser")
    resp = client_for("charlie").post(rule_url(rule), form_data(rule, name="hijacked"))
    assert resp.status_code == 403
    rule.refresh_from_db()
    assert rule.name != "hijacked" and rule.version == 1
    add = client_for("charlie").get(reverse("admin:classification_manualassignment_add"))
    assert add.status_code == 403


def test_an_admin_edits_a_rule_and_a_version_is_kept(client_for, prod) -> None:
    client = client_for("alice")
    rule = ClassificationRule.objects.get(classification__code="superuser")
    new = {"any": [{"has_capability": "SUPERUSER"}, {"name": "app"}]}
    resp = client.post(rule_url(rule), form_data(rule, expression=json.dumps(new), comment="app is an admin too"))
    assert resp.status_code == 302, resp.content[:2000]
    rule.refresh_from_db()
    assert rule.version == 2 and rule.expression == new
    latest = ClassificationRuleVersion.objects.get(rule=rule, version=2)
    assert latest.comment == "app is an admin too" and latest.created_by.username == "alice"
    assert "Re-evaluation of every account was queued." in [str(m) for m in get_messages(resp.wsgi_request)]


def test_a_bad_rule_shows_the_path(client_for, prod) -> None:
    client = client_for("alice")
    rule = ClassificationRule.objects.get(classification__code="superuser")
    bad = {"all": [{"kind": "user"}, {"kind": "role"}, {"has_privilege": {"privilege": "SELECT", "scope": "tabel:t"}}]}
    resp = client.post(rule_url(rule), form_data(rule, expression=json.dumps(bad)))
    assert resp.status_code == 200
    assert "rule.all[2].has_privilege.scope: unknown level &#x27;tabel&#x27;" in resp.content.decode()
    rule.refresh_from_db()
    assert rule.version == 1


def test_preview_page(client_for, prod) -> None:
    client = client_for("charlie")
    rule = ClassificationRule.objects.get(classification__code="writes-production")
    page = client.get(rule_url(rule, "preview"))
    assert page.status_code == 200
    assert "2 accounts would match" in page.content.decode()
    tried = client.post(rule_url(rule, "preview"), {"expression": '{"kind": "role"}', "db_type": ""})
    assert "1 account would match" in tried.content.decode() and "&#x27;lonely&#x27;" in tried.content.decode()
    broken = client.post(rule_url(rule, "preview"), {"expression": '{"kind": ', "db_type": ""})
    assert "Not valid JSON" in broken.content.decode()
    rule.refresh_from_db()
    assert rule.version == 1  # nothing saved


def test_manual_assignment_through_the_admin_is_audited(client_for, prod) -> None:
    client = client_for("alice")
    app = InstanceAccount.objects.get(identity="'app'@'localhost'")
    superuser = Classification.objects.get(code="superuser")
    resp = client.post(
        reverse("admin:classification_manualassignment_add"),
        {"account": app.pk, "classification": superuser.pk, "action": "include", "reason": "owner said so"},
    )
    assert resp.status_code == 302, resp.content[:2000]
    assert members("superuser") == {"'su'@'localhost'", "'app'@'localhost'"}
    event = AuditEvent.objects.get(kind="classification_manual")
    assert event.actor.username == "alice" and event.details["reason"] == "owner said so"
    decision = ManualAssignment.objects.get()
    resp = client.post(reverse("admin:classification_manualassignment_delete", args=[decision.pk]), {"post": "yes"})
    assert resp.status_code == 302
    assert members("superuser") == {"'su'@'localhost'"}
    assert AuditEvent.objects.filter(kind="classification_manual_cleared").count() == 1


def test_accounts_list_filter_and_column(client_for, prod) -> None:
    client = client_for("charlie")
    url = reverse("admin:accountsync_instanceaccount_changelist")
    page = client.get(url, {"classification": "superuser"}).content.decode()
    assert "&#x27;su&#x27;@&#x27;localhost&#x27;" in page and "&#x27;app&#x27;@&#x27;localhost&#x27;" not in page
    assert 'data-code="superuser"' in page and 'aria-label="Superuser-equivalent (Rule)"' in page  # the column
    everyone = client.get(url).content.decode()
    assert "&#x27;app&#x27;@&#x27;localhost&#x27;" in everyone and 'data-code="writes-production"' in everyone


def test_dashboard_panel(client_for, prod) -> None:
    page = client_for("charlie").get(reverse("admin:index")).content.decode()
    assert 'id="wf-dash-classifications"' in page
    assert ".wf-fill-cls-superuser { fill: #b71c1c" in page
    assert "?classification=superuser" in page


def test_dashboard_links_open_the_rows_they_count(client_for, prod) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from classification.models import ClassificationDailyCount
    from dashboard.panels import classification_panel

    yesterday = timezone.localdate() - timedelta(days=1)
    ClassificationDailyCount.objects.create(
        classification=Classification.objects.get(code="superuser"), day=yesterday, count=7
    )
    client = client_for("charlie")

    def rows(href: str) -> int:
        response = client.get(href)
        assert response.status_code == 200, href
        return response.context["cl"].result_count

    panel = classification_panel()
    assert panel.total == 5  # su: superuser, writes, reads; app: writes; lonely: unused role
    assert rows(panel.href) == panel.total
    for item in panel.legend:
        assert rows(item.href) == item.value, item.href
    today = panel.column_chart.columns[-1]
    assert rows(today.href) == today.total
    for segment in today.segments:
        assert rows(segment.href) == segment.value, segment.href
    earlier = panel.column_chart.columns[-2]
    assert earlier.total == 7 and rows(earlier.segments[0].href) == 1  # that day's stored row

"""The findings list in the admin: read-only for everyone, filterable, constant queries."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accountsync.adapters.base import AccountRecord, Catalog, Privilege
from accountsync.services import account_sync_apply
from findings.models import Finding
from findings.services import findings_refresh

pytestmark = pytest.mark.django_db


def seed(instance, n: int) -> None:
    """n superusers from '%' (SUPERUSER + WILDCARD_HOST each) and one clean account, through a real refresh."""
    accounts = [
        AccountRecord(
            identity=f"'su{i}'@'%'",
            username=f"su{i}",
            host="%",
            capabilities={"SUPERUSER", "WILDCARD_HOST"},
            privileges=[Privilege("global", "ALL PRIVILEGES")],
        )
        for i in range(n)
    ] + [AccountRecord(identity="'app'@'localhost'", username="app", host="localhost")]
    account_sync_apply(instance=instance, catalog=Catalog(accounts=accounts).finalize())
    findings_refresh(instance=instance)


@pytest.fixture
def findings_url():
    return reverse("admin:findings_finding_changelist")


def test_viewer_sees_the_list_and_cannot_change_anything(client, charlie, make_instance, findings_url):
    inst = make_instance()
    seed(inst, 2)
    client.force_login(charlie)
    page = client.get(findings_url)
    assert page.status_code == 200
    html = page.content.decode().replace("<wbr>", "")  # names carry wrap points (adminkit.kit.wrap_name)
    assert "Superuser or equivalent" in html and "Wildcard host" in html and "&#x27;su1&#x27;@&#x27;%&#x27;" in html
    finding = Finding.objects.filter(rule_code="SUPERUSER").first()
    assert client.get(reverse("admin:findings_finding_add")).status_code == 403
    detail = client.get(reverse("admin:findings_finding_change", args=[finding.pk]))
    assert detail.status_code == 200 and b'name="_save"' not in detail.content
    assert client.post(reverse("admin:findings_finding_delete", args=[finding.pk])).status_code == 403


def test_filters_narrow_the_list(client, alice, make_instance, findings_url):
    mysql_inst, pg_inst = make_instance("mysql"), make_instance("postgresql", port=5432)
    seed(mysql_inst, 3)
    account_sync_apply(
        instance=pg_inst,
        catalog=Catalog(accounts=[AccountRecord(identity="pg_su", username="pg_su", capabilities={"SUPERUSER"})]),
    )
    findings_refresh(instance=pg_inst)
    seed(mysql_inst, 1)  # su1, su2 dropped: their findings are resolved
    client.force_login(alice)

    def count(**params: str) -> int:
        resp = client.get(findings_url, params)
        assert resp.status_code == 200, params
        return resp.context["cl"].result_count

    assert count() == 7
    assert count(is_open__exact="1") == 3
    assert count(is_open__exact="0") == 4
    assert count(rule="WILDCARD_HOST") == 3
    assert count(severity__exact="high") == 4
    assert count(instance__db_type="postgresql") == 1
    assert count(instance__id__exact=str(pg_inst.pk)) == 1
    assert count(q="su0") == 2


def test_list_queries_do_not_grow_with_rows(client, alice, make_instance, findings_url, django_assert_max_num_queries):
    client.force_login(alice)
    inst = make_instance()
    seed(inst, 3)
    with django_assert_max_num_queries(20) as few:
        client.get(findings_url)
    seed(inst, 40)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert client.get(findings_url).status_code == 200


def test_a_finding_page_shows_the_features_lines_and_each_detail_key(client, charlie, make_instance):
    inst = make_instance()
    seed(inst, 1)
    finding = Finding.objects.filter(rule_code="SUPERUSER").first()
    finding.detail = {"lines": ["+ UPDATE on object:shop.orders (via direct)"], "version": 2, "missing": []}
    finding.save()
    client.force_login(charlie)
    html = client.get(reverse("admin:findings_finding_change", args=[finding.pk])).content.decode()
    assert '<ul class="wf-lines"><li><code>+ UPDATE on object:shop.orders (via direct)</code></li></ul>' in html
    assert "<tr><th>version</th>" in html and "<th>missing</th>" not in html  # empty values are left out
    assert "rule code" in html.lower()

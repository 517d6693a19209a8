"""An admin search longer than MAX_SEARCH_LENGTH is not run: a warning and the unfiltered list, never a 500.

A 60,000-character search made SQLite refuse the LIKE pattern ("LIKE or GLOB pattern too
complex") and the page was a 500. Every kit admin with a search box is checked, the
account admin's cross-instance search syntax (``name*``, ``name@host``, ``host=``) included.
"""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.urls import reverse

from adminkit.kit import MAX_SEARCH_LENGTH, KitAdminMixin

pytestmark = pytest.mark.django_db

HUGE = "x" * 60_000


def _searchable() -> list[str]:
    return sorted(
        f"{model._meta.app_label}_{model._meta.model_name}"
        for model, model_admin in admin.site._registry.items()
        if isinstance(model_admin, KitAdminMixin) and model_admin.search_fields
    )


@pytest.fixture
def superuser_client(client):
    client.force_login(get_user_model().objects.create_superuser("root", "r@example.com", "pw-root-123"))
    return client


def test_the_bound_covers_the_searchable_admins():
    names = _searchable()
    assert "accountsync_instanceaccount" in names and "instances_instance" in names


@pytest.mark.parametrize("name", _searchable())
@pytest.mark.parametrize("term", [HUGE, HUGE + "*", "a@" + HUGE, "host=" + HUGE])
def test_a_huge_search_is_a_warning_not_a_500(superuser_client, make_instance, name, term):
    make_instance(name="prod-db-1")
    response = superuser_client.get(reverse(f"admin:{name}_changelist"), {"q": term})
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    assert any(f"longer than {MAX_SEARCH_LENGTH} characters was not run" in m for m in shown), shown
    assert HUGE not in response.content.decode()  # not echoed back in the search box


def test_a_search_at_the_bound_still_runs(superuser_client, make_instance):
    make_instance(name="prod-db-1")
    response = superuser_client.get(reverse("admin:instances_instance_changelist"), {"q": "p" * MAX_SEARCH_LENGTH})
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    assert not any("was not run" in m for m in shown)
    assert response.context["cl"].query == "p" * MAX_SEARCH_LENGTH

"""OpenID Connect sign-in in a real browser through a real provider (panva's oidc-provider, tests/oidc/).

Debian's chromium (Playwright) opens WhaleFall's login page, follows "Sign in with Test IdP" to the
provider, signs in on the provider's own page and comes back: the code is exchanged, the RS256 ID
token checked against the provider's JWKS, the userinfo read, and the groups claim mapped to a role.
"""

from __future__ import annotations

import re
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from audit.models import AuditEvent
from sync.roles import ADMINS, OPERATORS
from tests.browser.conftest import overflow, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

User = get_user_model()
PASSWORD = "Idp-Pa55-word"


def person(groups: list[str]) -> tuple[str, dict]:
    name = "oidc" + uuid.uuid4().hex[:8]
    claims = {
        "email": f"{name}@idp.example",
        "email_verified": True,
        "given_name": "Olga",
        "family_name": "Provider",
        "groups": groups,
    }
    return name, {"password": PASSWORD, "claims": claims}


def sign_in_at_provider(page, live_server, provider, username: str) -> None:
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    assert overflow(page) == []  # readable at 1366 px with the button
    screenshot(page, "login-oidc")
    page.get_by_role("link", name="Sign in with Test IdP").click()
    page.wait_for_url(re.compile(re.escape(provider.issuer) + r"/interaction/"))
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_a_person_signs_in_at_the_provider_and_comes_back_with_the_mapped_role(oidc_signin, live_server, page):
    name, account = person(["idp-ops", "unrelated"])
    oidc_signin.set_accounts({name: account})
    sign_in_at_provider(page, live_server, oidc_signin, name)
    page.wait_for_selector("#user-tools")
    assert page.url == f"{live_server.url}/admin/"
    assert "olga" in page.inner_text("#user-tools").lower()  # the admin greets by the first name from the claims

    user = User.objects.get(username=name)
    assert (user.is_staff, user.is_superuser, user.has_usable_password()) == (True, False, False)
    assert (user.email, user.first_name, user.last_name) == (f"{name}@idp.example", "Olga", "Provider")
    assert set(user.groups.values_list("name", flat=True)) == {OPERATORS}
    login = AuditEvent.objects.get(kind="login", actor_username=name)
    assert login.actor == user and login.details["method"] == "oidc"
    assert login.details["path"] == "/oidc/callback/"

    # the provider moves the person to the admins' group: the next sign-in says so
    oidc_signin.set_accounts({name: {**account, "claims": {**account["claims"], "groups": ["idp-admins"]}}})
    page.locator("#logout-form button").click()
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.get_by_role("link", name="Sign in with Test IdP").click()  # the provider's session is still open
    page.wait_for_selector("#user-tools")
    assert set(User.objects.get(username=name).groups.values_list("name", flat=True)) == {ADMINS}
    assert AuditEvent.objects.filter(kind="login", actor_username=name, details__method="oidc").count() == 2


def test_a_person_in_no_mapped_group_gets_no_access_and_a_clear_message(oidc_signin, live_server, page):
    name, account = person(["marketing"])
    oidc_signin.set_accounts({name: account})
    sign_in_at_provider(page, live_server, oidc_signin, name)
    page.wait_for_selector(".messagelist .error")
    assert page.url.startswith(f"{live_server.url}/admin/login/")
    assert "none of your groups gives access to WhaleFall" in page.inner_text(".messagelist")
    assert page.locator("#user-tools").count() == 0
    assert not User.objects.filter(username=name).exists()
    refused = AuditEvent.objects.get(kind="login_failed", actor_username=name)
    assert (refused.details["method"], refused.details["reason"]) == ("oidc", "no_role")
    assert PASSWORD not in str(refused.details)


def test_an_error_sent_back_by_the_provider_is_an_audited_failure(oidc_signin):
    client = Client(REMOTE_ADDR="10.9.5.5")
    response = client.get("/oidc/callback/", {"error": "access_denied", "state": "abc"})
    assert response.status_code == 302 and response["Location"] == "/admin/login/"
    refused = AuditEvent.objects.get(kind="login_failed")
    assert (refused.details["method"], refused.details["reason"], refused.details["error"]) == (
        "oidc",
        "provider_error",
        "access_denied",
    )
    assert refused.remote_addr == "10.9.5.5"


def test_a_forged_callback_is_refused_and_audited(oidc_signin):
    """A code the provider never issued: the token exchange fails, nobody is signed in."""
    client = Client(REMOTE_ADDR="10.9.5.6")
    page = client.get("/oidc/authenticate/", {"next": "/admin/"})
    assert page.status_code == 302 and page["Location"].startswith(oidc_signin.issuer)
    state = re.search(r"[?&]state=([^&]+)", page["Location"]).group(1)
    response = client.get("/oidc/callback/", {"code": "forged-code", "state": state})
    assert response.status_code == 302 and response["Location"] == "/admin/login/"
    refused = AuditEvent.objects.get(kind="login_failed")
    assert (refused.details["method"], refused.details["reason"]) == ("oidc", "provider_error")
    assert not AuditEvent.objects.filter(kind="login").exists()

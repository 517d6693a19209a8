"""LDAP sign-in through the real admin login form against a real slapd (tests/ldapserver.py).

Every sign-in is a POST to /admin/login/ with an address, as a browser's; the directory is changed
with the fixture's helpers between sign-ins, as an administrator would change it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings

from audit.models import AuditEvent
from sync.roles import ADMINS, OPERATORS, REVIEWERS, VIEWERS
from tests.signin.conftest import login, signed_in

pytestmark = [pytest.mark.django_db, pytest.mark.live]

User = get_user_model()


def roles_of(username: str) -> set[str]:
    return set(User.objects.get(username=username).groups.values_list("name", flat=True))


def event(kind: str, username: str) -> AuditEvent:
    found = list(AuditEvent.objects.filter(kind=kind, actor_username=username))
    assert len(found) == 1, [(e.kind, e.actor_username, e.details) for e in AuditEvent.objects.all()]
    return found[0]


def page_text(response) -> str:
    return response.content.decode()


def test_a_directory_person_signs_in_with_the_mapped_role_and_the_session_serves_the_api(ldap_signin):
    uid, password = ldap_signin.person(("operators",), department="42")
    client, response = login(uid, password, ip="10.9.0.2")
    assert signed_in(response)
    user = User.objects.get(username=uid)
    assert (user.is_staff, user.is_superuser, user.has_usable_password()) == (True, False, False)
    assert (user.email, user.last_name) == (f"{uid}@whalefall.test", "Tester")
    assert roles_of(uid) == {OPERATORS}
    assert client.get("/admin/").status_code == 200
    api = client.get("/api/v1/instances/")
    assert api.status_code == 200 and api["Content-Type"].startswith("application/json")
    ok = event("login", uid)
    assert (ok.actor, ok.via, ok.remote_addr) == (user, "admin", "10.9.0.2")
    assert ok.details["method"] == "ldap" and ok.details["path"] == "/admin/login/"
    assert "reason" not in ok.details


@pytest.mark.parametrize("role,group", [("admins", ADMINS), ("viewers", VIEWERS), ("reviewers", REVIEWERS)])
def test_each_role_maps_from_its_group(ldap_signin, role, group):
    uid, password = ldap_signin.person((role,))
    assert signed_in(login(uid, password)[1])
    assert roles_of(uid) == {group}


def test_a_change_in_the_directory_counts_at_the_next_sign_in(ldap_signin):
    directory = ldap_signin.directory
    uid, password = ldap_signin.person(("admins",))
    assert signed_in(login(uid, password)[1]) and roles_of(uid) == {ADMINS}

    directory.remove_member(ldap_signin.groups["admins"], uid)
    directory.add_member(ldap_signin.groups["viewers"], uid)
    assert signed_in(login(uid, password)[1]) and roles_of(uid) == {VIEWERS}

    # a group the admin added by hand stays: the directory decides the roles only
    from django.contrib.auth.models import Group

    User.objects.get(username=uid).groups.add(Group.objects.create(name="hand-picked"))
    directory.add_member(ldap_signin.groups["operators"], uid)
    assert signed_in(login(uid, password)[1]) and roles_of(uid) == {VIEWERS, OPERATORS, "hand-picked"}

    # in no mapped group any more: refused, told why, and the roles it had are gone now
    directory.remove_member(ldap_signin.groups["viewers"], uid)
    directory.remove_member(ldap_signin.groups["operators"], uid)
    _client, response = login(uid, password)
    assert response.status_code == 200
    assert "none of your directory groups gives access" in page_text(response)
    assert roles_of(uid) == {"hand-picked"} and User.objects.get(username=uid).is_staff is False
    refused = event("login_failed", uid)
    assert (refused.details["method"], refused.details["reason"]) == ("ldap", "no_role")


def test_a_person_in_no_mapped_group_gets_no_account(ldap_signin):
    uid, password = ldap_signin.person(())
    _client, response = login(uid, password)
    assert response.status_code == 200 and not User.objects.filter(username=uid).exists()
    assert event("login_failed", uid).details["reason"] == "no_role"


def test_a_disabled_person_is_refused(ldap_signin):
    uid, password = ldap_signin.person(("admins",))
    assert signed_in(login(uid, password)[1])
    ldap_signin.directory.disable(uid)
    _client, response = login(uid, password)
    assert response.status_code == 200 and not signed_in(response)
    refused = event("login_failed", uid)
    assert (refused.details["method"], refused.details["reason"]) == ("ldap", "disabled")
    assert refused.details["dn"] == ldap_signin.directory.person_dn(uid)

    # without WhaleFall's filter the directory itself still refuses the locked person's bind
    ldap_signin.configure(disabled_filter="")
    assert not signed_in(login(uid, password)[1])
    assert AuditEvent.objects.filter(kind="login_failed", details__reason="invalid_credentials").count() == 1

    ldap_signin.configure(disabled_filter=ldap_signin.directory.disabled_filter)
    ldap_signin.directory.enable(uid)
    assert signed_in(login(uid, password)[1])


def test_wrong_password_and_unknown_person_are_told_apart_in_the_audit_only(ldap_signin):
    uid, password = ldap_signin.person(("viewers",))
    _c, wrong = login(uid, "not-" + password)
    _c, unknown = login("nobody" + uid, password)
    assert wrong.status_code == unknown.status_code == 200
    assert "Please enter the correct username and password" in page_text(wrong)
    assert "Please enter the correct username and password" in page_text(unknown)
    assert event("login_failed", uid).details["reason"] == "invalid_credentials"
    assert event("login_failed", "nobody" + uid).details["reason"] == "unknown_user"
    assert all(e.details["method"] == "ldap" for e in AuditEvent.objects.filter(kind="login_failed"))
    # the password never reaches the audit trail
    assert password not in str(list(AuditEvent.objects.values_list("details", flat=True)))


def test_ldaps_verifies_the_server_with_the_configured_ca(ldap_signin):
    directory = ldap_signin.directory
    uid, password = ldap_signin.person(("operators",))
    ldap_signin.settings.AUTH_LDAP_SERVER_URI = directory.ldaps_uri
    ldap_signin.configure(ca_file=str(directory.ca_file))
    assert signed_in(login(uid, password)[1])

    ldap_signin.configure(ca_file=str(directory.other_ca_file))
    _client, response = login(uid, password)
    assert response.status_code == 200 and "The directory could not be reached" in page_text(response)
    refused = event("login_failed", uid)
    assert refused.details["reason"] == "directory_unavailable"
    assert refused.details["error"]  # the TLS library's words (no secret in them)

    # StartTLS on the plain port, verified the same way
    ldap_signin.settings.AUTH_LDAP_SERVER_URI = directory.uri
    ldap_signin.settings.AUTH_LDAP_START_TLS = True
    ldap_signin.configure(ca_file=str(directory.ca_file))
    assert signed_in(login(uid, password)[1])


def test_break_glass_local_admin_signs_in_while_the_directory_is_down(ldap_signin, django_user_model):
    local = django_user_model.objects.create_superuser("breakglass", "bg@example.com", "Break-Glass-Pa55")
    uid, password = ldap_signin.person(("admins",))
    with ldap_signin.directory.outage():
        _client, response = login("breakglass", "Break-Glass-Pa55")
        assert signed_in(response)
        _client, refused = login(uid, password)
        assert refused.status_code == 200 and "The directory could not be reached" in page_text(refused)
    ok = event("login", "breakglass")
    assert ok.actor == local and ok.details["method"] == "local"
    down = event("login_failed", uid)
    assert (down.details["method"], down.details["reason"]) == ("ldap", "directory_unavailable")
    assert "contact" in down.details["error"].lower()  # "Can't contact LDAP server"
    # and once it is back, the person signs in again
    assert signed_in(login(uid, password)[1])


def test_a_local_account_is_never_signed_in_or_changed_through_the_directory(ldap_signin, django_user_model):
    directory = ldap_signin.directory
    uid = directory.unique("sam")
    local = django_user_model.objects.create_user(uid, "sam@example.com", "Local-Pa55-word", is_staff=True)
    directory.add_person(uid, "Directory-Pa55-word", groups=[ldap_signin.groups["admins"]])
    assert not signed_in(login(uid, "Directory-Pa55-word")[1])
    refused = event("login_failed", uid)
    assert (refused.details["method"], refused.details["reason"]) == ("local", "invalid_credentials")
    local.refresh_from_db()
    assert local.groups.count() == 0 and local.has_usable_password() and not local.is_superuser
    assert signed_in(login(uid, "Local-Pa55-word")[1])


@override_settings(AXES_ENABLED=True, AXES_FAILURE_LIMIT=2, AXES_COOLOFF_TIME=timedelta(minutes=15))
def test_the_lockout_protects_directory_passwords_too(ldap_signin):
    uid, password = ldap_signin.person(("operators",))
    login(uid, "wrong-1", ip="10.9.3.3")
    login(uid, "wrong-2", ip="10.9.3.3")
    _client, locked = login(uid, password, ip="10.9.3.3")
    assert locked.status_code == 429
    assert not User.objects.filter(username=uid).exists()  # the directory was not even asked
    assert AuditEvent.objects.filter(kind="locked_out", actor_username=uid).exists()
    # the refused third try reached no backend: local or LDAP cannot be told, and the event says so
    failed = list(AuditEvent.objects.filter(kind="login_failed", actor_username=uid).order_by("id"))
    assert [e.details["method"] for e in failed] == ["ldap", "ldap", "password"]
    assert [e.details.get("reason") for e in failed] == ["invalid_credentials", "invalid_credentials", None]
    # another address is not locked out
    assert signed_in(login(uid, password, ip="10.9.3.4")[1])


def test_superuser_only_from_a_configured_group(ldap_signin):
    uid, password = ldap_signin.person(("operators", "super"))
    assert signed_in(login(uid, password)[1])
    assert User.objects.get(username=uid).is_superuser is False  # not configured: never

    super_dn = ldap_signin.directory.group_dn(ldap_signin.groups["super"])
    ldap_signin.configure(superuser_groups=[super_dn])
    assert signed_in(login(uid, password)[1])
    assert User.objects.get(username=uid).is_superuser is True

    ldap_signin.directory.remove_member(ldap_signin.groups["super"], uid)
    assert signed_in(login(uid, password)[1])
    assert User.objects.get(username=uid).is_superuser is False and roles_of(uid) == {OPERATORS}


def test_nested_groups_count_when_configured(ldap_signin):
    directory = ldap_signin.directory
    team = directory.unique("team-")
    uid, password = ldap_signin.person(())
    directory.add_group(team, [uid])
    directory.add_member(ldap_signin.groups["operators"], f"group:{team}")
    assert not signed_in(login(uid, password)[1])  # groupOfNames: direct members only

    ldap_signin.configure(group_type="nestedGroupOfNames")
    assert signed_in(login(uid, password)[1])
    assert roles_of(uid) == {OPERATORS}


def test_the_login_attribute_is_configurable(ldap_signin):
    """As AD's (sAMAccountName=%(user)s): here people sign in with their mail address."""
    uid, password = ldap_signin.person(("viewers",))
    ldap_signin.configure(user_filter="(mail=%(user)s)")
    assert signed_in(login(f"{uid}@whalefall.test", password)[1])
    assert roles_of(f"{uid}@whalefall.test") == {VIEWERS}

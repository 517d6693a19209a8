"""Sign-in against a real slapd (tests/ldapserver.py) and a real OpenID Connect provider (oidcprovider.py)."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.test import Client

from tests.admin.conftest import role_groups  # noqa: F401  (autouse: the role groups exist)
from tests.browser.conftest import page  # noqa: F401  (the browser fixture is the session one, tests/conftest.py)

LDAP_BACKEND = "directory.signin.LDAPSignInBackend"
OIDC_BACKEND = "directory.signin.OIDCSignInBackend"
LOGIN_URL = "/admin/login/"
ROLES = ("admins", "operators", "viewers", "reviewers")


@dataclass
class LdapSignin:
    directory: object  # tests.ldapserver.LdapServer
    groups: dict[str, str]  # role key (and "super") -> group cn
    settings: object

    def person(self, roles: tuple[str, ...] = (), password: str = "Person-Pa55-word", **kw) -> tuple[str, str]:
        """A directory person in the groups of `roles`; returns (uid, password)."""
        uid = self.directory.unique(kw.pop("prefix", "p"))
        self.directory.add_person(uid, password, groups=[self.groups[r] for r in roles], **kw)
        return uid, password

    def configure(self, **changes) -> None:
        self.settings.WHALEFALL_LDAP = {**self.settings.WHALEFALL_LDAP, **changes}


def ldap_conf(directory, groups: dict[str, str]) -> dict:
    return {
        "ca_file": "",
        "timeout": 5.0,
        "user_base": directory.people,
        "user_filter": "(uid=%(user)s)",
        "group_base": directory.groups,
        "group_filter": "(objectClass=groupOfNames)",
        "group_type": "groupOfNames",
        "disabled_filter": directory.disabled_filter,
        "attr_map": "first_name=givenName,last_name=sn,email=mail",
        "roles": {role: [directory.group_dn(groups[role])] for role in ROLES},
        "superuser_groups": [],
    }


@pytest.fixture
def ldap_signin(ldap_directory, settings, db) -> LdapSignin:
    """LDAP sign-in switched on (as the WHALEFALL_LDAP_* variables would), against the test slapd."""
    groups = {key: ldap_directory.unique(f"wf-{key}-") for key in (*ROLES, "super")}
    for cn in groups.values():
        ldap_directory.add_group(cn)
    settings.WHALEFALL_LDAP_ENABLED = True
    settings.AUTH_LDAP_SERVER_URI = ldap_directory.uri
    settings.AUTH_LDAP_BIND_DN = ldap_directory.reader_dn
    settings.AUTH_LDAP_BIND_PASSWORD = ldap_directory.reader_password
    settings.AUTH_LDAP_START_TLS = False
    settings.WHALEFALL_LDAP = ldap_conf(ldap_directory, groups)
    if LDAP_BACKEND not in settings.AUTHENTICATION_BACKENDS:
        settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, LDAP_BACKEND]
    return LdapSignin(directory=ldap_directory, groups=groups, settings=settings)


def login(username: str, password: str, ip: str = "10.9.0.1", client: Client | None = None):
    client = client or Client()
    response = client.post(
        LOGIN_URL, {"username": username, "password": password, "next": "/admin/"}, REMOTE_ADDR=ip, follow=False
    )
    return client, response


def signed_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


# --- OpenID Connect ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def oidc_provider(live_server) -> Iterator[object]:
    """The session's OpenID Connect provider, whose client returns to the live server and the test client."""
    from tests.ldapserver import free_port
    from tests.signin.oidcprovider import provider_missing, start_oidc_provider

    missing = provider_missing()
    if missing:
        if os.environ.get("WHALEFALL_REQUIRE_LIVE") == "1":
            pytest.fail(f"{missing} (WHALEFALL_REQUIRE_LIVE=1)")
        pytest.skip(missing)
    base = live_server.url
    uris = [f"{base}/oidc/callback/", f"{base.replace('localhost', '127.0.0.1')}/oidc/callback/"]
    provider = start_oidc_provider(sorted(set(uris)), free_port())
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def oidc_signin(settings, oidc_provider) -> Iterator[object]:
    """OIDC sign-in switched on (as the WHALEFALL_OIDC_* variables would), with its routes (signin/oidc_urls.py)."""
    settings.WHALEFALL_OIDC_ENABLED = True
    for name, value in oidc_provider.settings().items():
        setattr(settings, name, value)
    settings.OIDC_VERIFY_SSL = True
    settings.WHALEFALL_OIDC = {
        "provider_name": "Test IdP",
        "username_claim": "preferred_username",
        "groups_claim": "groups",
        "roles": {"admins": ["idp-admins"], "operators": ["idp-ops"], "viewers": ["idp-view"], "reviewers": []},
        "superuser_groups": [],
    }
    if OIDC_BACKEND not in settings.AUTHENTICATION_BACKENDS:
        settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, OIDC_BACKEND]
    templates = copy.deepcopy(settings.TEMPLATES)
    templates[0]["OPTIONS"]["context_processors"].append("directory.signin.signin_context")
    settings.TEMPLATES = templates
    settings.ROOT_URLCONF = "tests.signin.oidc_urls"  # the settings fixture puts every value back afterwards
    yield oidc_provider

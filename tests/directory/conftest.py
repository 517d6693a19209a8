"""Directory fixtures: WhaleFall pointed at the session's slapd (tests/ldapserver.py), as an OpenLDAP tree."""

from __future__ import annotations

import pytest

from tests.livedb import mariadb_admin, postgres_admin, unique_prefix  # noqa: F401


def openldap_env(server, *, uri: str | None = None) -> dict[str, str]:
    """The WHALEFALL_DIRECTORY_* variables docs/directory.md gives for an OpenLDAP directory."""
    return {
        "WHALEFALL_DIRECTORY_URI": uri or server.uri,
        "WHALEFALL_DIRECTORY_BIND_DN": server.reader_dn,
        "WHALEFALL_DIRECTORY_BIND_PASSWORD": server.reader_password,
        "WHALEFALL_DIRECTORY_BASE_DN": server.base,
        "WHALEFALL_DIRECTORY_USER_BASE": server.people,
        "WHALEFALL_DIRECTORY_USER_FILTER": "(objectClass=inetOrgPerson)",
        "WHALEFALL_DIRECTORY_GROUP_BASE": server.groups,
        "WHALEFALL_DIRECTORY_GROUP_FILTER": "(objectClass=groupOfNames)",
        "WHALEFALL_DIRECTORY_ATTR_GUID": "entryUUID",
        "WHALEFALL_DIRECTORY_ATTR_USERNAME": "uid",
        "WHALEFALL_DIRECTORY_ATTR_NAME": "cn",
        "WHALEFALL_DIRECTORY_ATTR_DEPARTMENT": "departmentNumber",
        "WHALEFALL_DIRECTORY_ATTR_GROUP_NAME": "cn",
        "WHALEFALL_DIRECTORY_DISABLED_ATTR": "pwdAccountLockedTime",
        "WHALEFALL_DIRECTORY_DISABLED_VALUE": "*",
        "WHALEFALL_DIRECTORY_TIMEOUT": "10",
        "WHALEFALL_DIRECTORY_CA_FILE": str(server.ca_file),
    }


@pytest.fixture
def directory_env(ldap_directory, monkeypatch):
    """The session slapd, with WhaleFall configured to read it; returns the server (with its helpers)."""
    for name, value in openldap_env(ldap_directory).items():
        monkeypatch.setenv(name, value)
    return ldap_directory


@pytest.fixture
def api_client():
    """``api_client(user)``: a DRF client with the user's API token (None: anonymous)."""
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    def make(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make

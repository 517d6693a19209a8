"""Shared fixtures: the alice/bob/charlie users and a credential factory."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from instances.models import Credential, Instance
from tests.chosen import chosen_server  # noqa: F401
from tests.livedb import mariadb_admin, postgres_admin, unique_prefix  # noqa: F401


@pytest.fixture(scope="session")
def ldap_server():
    """A private OpenLDAP slapd for the whole session (tests/ldapserver.py); skips, or fails under
    WHALEFALL_REQUIRE_LIVE=1, when slapd is not installed."""
    import os

    from tests.ldapserver import start_ldap_server, stop_ldap_server

    try:
        server = start_ldap_server()
    except FileNotFoundError as exc:
        if os.environ.get("WHALEFALL_REQUIRE_LIVE") == "1":
            pytest.fail(f"{exc} (WHALEFALL_REQUIRE_LIVE=1)")
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        stop_ldap_server(server)


@pytest.fixture
def ldap_directory(ldap_server):
    """The session's slapd, running, with every entry this test added through its helpers deleted after."""
    ldap_server.start()
    try:
        yield ldap_server
    finally:
        ldap_server.start()  # a test that stopped it gets it back before cleaning up
        ldap_server.cleanup()


@pytest.fixture
def make_credential(db):
    def make(name: str = "mon", username: str = "monitor", password: str = "s3cr3t-Pa55") -> Credential:
        cred = Credential(name=name, username=username)
        cred.set_password(password)
        cred.save()
        return cred

    return make


@pytest.fixture
def make_instance(db, make_credential):
    counter = {"n": 0}

    def make(db_type: str = "mysql", host: str = "127.0.0.1", port: int = 3306, credential=None, **kw) -> Instance:
        counter["n"] += 1
        credential = credential or make_credential(name=f"cred{counter['n']}")
        return Instance.objects.create(
            name=kw.pop("name", f"{db_type}-{counter['n']}"),
            db_type=db_type,
            host=host,
            port=port,
            credential=credential,
            **kw,
        )

    return make


ROLE_PASSWORDS = {"alice": "alice-Pa55-word", "bob": "bob-Pa55-word", "charlie": "charlie-Pa55-word"}


@pytest.fixture
def role_user(db, django_user_model):
    """alice (WhaleFall admins), bob (Operators), charlie (Viewers): staff users in the built-in role groups.

    Not superusers, so every page and endpoint is checked against the groups' permissions.
    """
    from django.contrib.auth.models import Group

    from sync.roles import ADMINS, OPERATORS, VIEWERS

    groups = {"alice": ADMINS, "bob": OPERATORS, "charlie": VIEWERS}

    def make(name: str):
        user = django_user_model.objects.filter(username=name).first()
        if user is None:
            user = django_user_model.objects.create_user(
                name, f"{name}@example.com", ROLE_PASSWORDS[name], is_staff=True
            )
            user.groups.add(Group.objects.get(name=groups[name]))
        return user

    return make


@pytest.fixture
def alice(role_user):
    return role_user("alice")


@pytest.fixture
def bob(role_user):
    return role_user("bob")


@pytest.fixture
def charlie(role_user):
    return role_user("charlie")


# --- the browser (Playwright for Python driving Debian's chromium; never a downloaded browser) --------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """One chromium for the whole session, here at the root because browser tests live in several folders.

    Playwright's sync API runs an event loop in this thread while it is open, so a second
    ``sync_playwright()`` in the same session fails; every folder's browser tests share this one.
    Without /usr/bin/chromium they skip, unless WHALEFALL_REQUIRE_LIVE=1 (CI), where they fail.
    """
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("WHALEFALL_REQUIRE_LIVE") == "1":
            pytest.fail(message)
        pytest.skip(message)
    # the ORM calls the tests make around the sync API's event loop are still synchronous
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()

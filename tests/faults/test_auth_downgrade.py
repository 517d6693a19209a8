"""Authentication that cannot be downgraded (#17 part 2): a server that asks for the password in clear never gets it.

The threat: whoever can make WhaleFall connect somewhere (an Operator editing an instance, a man in
the middle) answers the login with "send me your password in clear text" (PostgreSQL
AuthenticationCleartextPassword, MySQL's mysql_clear_password or PAM dialog) or "send me its md5"
(as good as the password for PostgreSQL). The fake servers of `tests.fakeservers` do exactly that on
127.0.0.1 and record every byte they receive; each test asserts the password's bytes never arrived.
Each refusal also has its control: the same fake, a credential that allows weak authentication (or a
client without the guard), and the bytes do arrive, so these tests can fail.

Nothing is mocked: psycopg (libpq 18) and mysqlclient (MariaDB Connector/C) talk to real sockets.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accountsync.adapters import mysql as mysql_adapter
from accountsync.adapters import postgresql as pg_adapter
from accountsync.adapters.base import ConfigurationError, ConnectionTarget, PermissionDenied
from accountsync.adapters.mysql import MySQLAdapter, allowed_auth_plugins
from accountsync.adapters.postgresql import PostgreSQLAdapter
from accountsync.services import account_sync_run
from instances.models import Credential
from tests.fakeservers import FakeMySQL, FakePostgres, md5_password_message

pytestmark = pytest.mark.timeout(60)

# unique, so finding these bytes anywhere in a recording can only mean the password was sent
PASSWORD = "Zq7-unique-Pa55word-4d1f9e"
USER = "whalefall_mon"


def target(port: int, db_type: str = "postgresql", **kw: Any) -> ConnectionTarget:
    values: dict[str, Any] = {
        "name": f"fake-{db_type}",
        "db_type": db_type,
        "host": "127.0.0.1",
        "port": port,
        "username": USER,
        "password": PASSWORD,
        "connect_timeout": 3.0,
        "query_timeout": 5.0,
    }
    values.update(kw)
    return ConnectionTarget(**values)


@pytest.fixture
def fake_pg() -> Iterator[FakePostgres]:
    with FakePostgres("cleartext") as server:
        yield server


@pytest.fixture
def fake_pg_md5() -> Iterator[FakePostgres]:
    with FakePostgres("md5") as server:
        yield server


@pytest.fixture
def fake_mysql() -> Iterator[FakeMySQL]:
    with FakeMySQL("mysql_native_password", switch_to="mysql_clear_password") as server:
        yield server


def never_sent(server: FakePostgres | FakeMySQL) -> None:
    """The fake got as far as asking for the password, and received none of it."""
    server.wait_idle()
    assert server.connections >= 1 and server.asked()
    assert not server.saw(PASSWORD)
    assert server.after_request() == b""  # not even an answer: the client hung up when asked


# --- PostgreSQL: require_auth ------------------------------------------------------------


@pytest.mark.parametrize("call", ["test_connection", "fetch"])
def test_postgresql_refuses_a_cleartext_request(fake_pg: FakePostgres, call: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        getattr(PostgreSQLAdapter(), call)(target(fake_pg.port))
    message = str(info.value)
    assert f"the server at 127.0.0.1:{fake_pg.port} asked for the password in clear text" in message
    assert "refuses unless the credential allows weak password authentication" in message
    assert info.value.kind == "configuration" and PASSWORD not in message
    assert fake_pg.startup_params[0]["user"] == USER  # it was a real PostgreSQL login attempt
    never_sent(fake_pg)


def test_postgresql_sends_the_cleartext_password_only_when_the_credential_allows_it(fake_pg: FakePostgres) -> None:
    """The control: the same fake, weak authentication allowed, and the password arrives in clear."""
    with pytest.raises(PermissionDenied, match="authentication failed"):  # the fake's FATAL 28P01
        PostgreSQLAdapter().test_connection(target(fake_pg.port, allow_weak_auth=True))
    fake_pg.wait_idle()
    assert fake_pg.saw(PASSWORD) and fake_pg.password_messages() == [PASSWORD.encode()]


def test_postgresql_refuses_an_md5_request(fake_pg_md5: FakePostgres) -> None:
    with pytest.raises(ConfigurationError, match="asked for the password as an md5 digest") as info:
        PostgreSQLAdapter().test_connection(target(fake_pg_md5.port))
    assert "refuses unless the credential allows weak password authentication" in str(info.value)
    never_sent(fake_pg_md5)
    assert fake_pg_md5.password_messages() == []


def test_postgresql_sends_the_md5_digest_only_when_the_credential_allows_it(fake_pg_md5: FakePostgres) -> None:
    with pytest.raises(PermissionDenied):
        PostgreSQLAdapter().test_connection(target(fake_pg_md5.port, allow_weak_auth=True))
    fake_pg_md5.wait_idle()
    digest = md5_password_message(PASSWORD, USER, fake_pg_md5.salt)
    assert fake_pg_md5.password_messages() == [digest]  # the password-equivalent md5 arrived
    assert not fake_pg_md5.saw(PASSWORD)  # md5 never carries the password itself


def test_postgresql_require_auth_follows_the_credential() -> None:
    assert pg_adapter._require_auth(target(1)) == "scram-sha-256,none"
    assert pg_adapter._require_auth(target(1, allow_weak_auth=True)) == "scram-sha-256,md5,password,none"


# --- MySQL / MariaDB: restricted_auth ---------------------------------------------------


@pytest.mark.parametrize("call", ["test_connection", "fetch"])
@pytest.mark.parametrize(
    ("initial", "switch_to"),
    [
        ("mysql_native_password", "mysql_clear_password"),  # an AuthSwitchRequest after the handshake
        ("mysql_clear_password", None),  # the handshake itself names the cleartext plugin
        ("mysql_native_password", "dialog"),  # PAM's dialog: "Password: " answered in clear
        ("caching_sha2_password", "sha256_password"),  # the password RSA-encrypted to the server's own key
    ],
)
def test_mysql_refuses_to_give_the_server_the_password(initial: str, switch_to: str | None, call: str) -> None:
    with FakeMySQL(initial, switch_to=switch_to) as server:
        with pytest.raises(ConfigurationError) as info:
            getattr(MySQLAdapter(), call)(target(server.port, "mysql"))
        message = str(info.value)
        assert f"the server at 127.0.0.1:{server.port} asked for the password in clear text" in message
        assert "refuses unless the credential allows weak password authentication" in message
        assert info.value.kind == "configuration" and PASSWORD not in message
        server.wait_idle()
        assert server.connections >= 1 and not server.saw(PASSWORD)
        if switch_to is None:  # refused before the handshake response: nothing at all was sent
            assert server.received() == b""
        else:  # the handshake response carried a scramble only, and the switch got no answer
            assert server.after_request() == b""


def test_mysql_clear_password_needs_verified_tls_even_when_the_credential_allows_weak_auth(
    fake_mysql: FakeMySQL,
) -> None:
    """allow_weak_auth alone is not enough: the cleartext plugin also needs verified TLS (and there is none here)."""
    with pytest.raises(ConfigurationError, match="for clear text only over verified TLS"):
        MySQLAdapter().test_connection(target(fake_mysql.port, "mysql", allow_weak_auth=True))
    never_sent(fake_mysql)


def test_the_fake_mysql_gets_the_password_from_an_unguarded_client(fake_mysql: FakeMySQL) -> None:
    """The control: Connector/C as it comes, with no restricted_auth, sends the password in clear when asked."""
    import MySQLdb

    with pytest.raises(MySQLdb.OperationalError) as info:
        MySQLdb.connect(host="127.0.0.1", port=fake_mysql.port, user=USER, password=PASSWORD, connect_timeout=3)
    assert info.value.args[0] == 1045  # the fake's "Access denied", after it took the password
    fake_mysql.wait_idle()
    assert fake_mysql.saw(PASSWORD + "\x00")  # mysql_clear_password: the password, NUL-terminated


def test_a_server_error_that_is_not_utf8_is_classified_not_a_crash() -> None:
    """mysqlclient leaves NULL in the args of an error whose text is not UTF-8; reading it killed the process."""
    with (
        FakeMySQL(switch_to=None, error_message=b"denied \xff\xfe\xfd") as server,
        pytest.raises(PermissionDenied, match="not valid UTF-8") as info,
    ):
        MySQLAdapter().test_connection(target(server.port, "mysql"))
    assert info.value.__context__ is not None and info.value.__context__.args[0] == 1045
    assert "valid UTF-8" in repr(info.value.__context__.args)


def test_caching_sha2_full_authentication_gives_a_fake_server_the_password_unless_refused() -> None:
    """Without TLS, caching_sha2_password's full authentication encrypts the password to the server's own key."""
    import MySQLdb

    with FakeMySQL("caching_sha2_password", switch_to=None, full_auth=True) as control:
        with pytest.raises(MySQLdb.OperationalError):
            MySQLdb.connect(host="127.0.0.1", port=control.port, user=USER, password=PASSWORD, connect_timeout=3)
        control.wait_idle()
        assert control.recovered and control.recovered[0].rstrip(b"\x00") == PASSWORD.encode()
    with FakeMySQL("caching_sha2_password", switch_to=None, full_auth=True) as server:
        with pytest.raises(ConfigurationError, match="asked for the password in clear text"):
            MySQLAdapter().test_connection(target(server.port, "mysql"))
        server.wait_idle()
        assert server.received() == b"" and server.recovered == []  # refused at the greeting: nothing sent


def test_allowed_plugins_follow_the_credential_and_the_tls_actually_used() -> None:
    plain, weak = target(1, "mysql"), target(1, "mysql", allow_weak_auth=True)
    hashing = ("mysql_native_password", "client_ed25519", "parsec")
    sha2 = "caching_sha2_password"
    assert allowed_auth_plugins(plain, {}) == hashing
    assert allowed_auth_plugins(weak, {}) == (*hashing, sha2, "sha256_password")
    verified = {"ssl_mode": "VERIFY_IDENTITY", "ssl": {"ca": "/ca.pem"}}
    assert allowed_auth_plugins(plain, verified) == (*hashing, sha2)
    assert allowed_auth_plugins(weak, verified) == (*hashing, sha2, "sha256_password", "mysql_clear_password", "dialog")
    # over TLS that verifies nothing caching_sha2_password sends the password in clear
    unverified = {"ssl_mode": "REQUIRED"}
    assert "caching_sha2_password" not in allowed_auth_plugins(plain, unverified)
    assert "mysql_clear_password" not in allowed_auth_plugins(weak, unverified)


def test_the_restriction_file_stays_reachable() -> None:
    """Connector/C ignores an option file it cannot open, so the file must still be there at every connect."""
    plugins = ("mysql_native_password",)
    path = mysql_adapter._restricted_auth_file(plugins)
    with open(path) as handle:
        assert handle.read() == "[whalefall]\nrestricted-auth=mysql_native_password\n"
    if path.startswith("/proc/self/fd/"):  # Linux: an unlinked file, held open; nothing can remove it
        assert os.stat(path).st_nlink == 0
    assert mysql_adapter._restricted_auth_file(plugins) == path  # the same, checked, file next time


# --- through the product: an Operator cannot, and even an admin's mistake sends nothing -----------


@pytest.fixture
def groups(db) -> None:
    from sync.roles import ensure_role_groups

    ensure_role_groups()  # a transactional test elsewhere may have flushed them


@pytest.fixture
def api_for(groups, alice, bob) -> Any:
    users = {"alice": alice, "bob": bob}

    def make(name: str) -> APIClient:
        client = APIClient()
        token, _ = Token.objects.get_or_create(user=users[name])
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


@pytest.fixture
def admin_for(groups, alice, bob) -> Any:
    users = {"alice": alice, "bob": bob}

    def make(name: str) -> Client:
        client = Client()
        client.force_login(users[name])
        return client

    return make


def credential(name: str, *, hosts: str, ports: str, db_types: list[str], weak: bool = False) -> Credential:
    cred = Credential(name=name, username=USER, allowed_hosts=hosts, allowed_ports=ports, allowed_db_types=db_types)
    cred.allow_weak_auth = weak
    cred.set_password(PASSWORD)
    cred.full_clean()
    cred.save()
    return cred


def admin_form(instance: Any, **changes: Any) -> dict[str, Any]:
    form = {
        "name": instance.name,
        "db_type": instance.db_type,
        "environment": instance.environment,
        "is_active": "on",
        "host": instance.host,
        "port": str(instance.port),
        "database_name": "",
        "credential": instance.credential_id,
        "options": "{}",
        "description": "",
    }
    form.update(changes)
    return form


@pytest.mark.django_db
@pytest.mark.parametrize("db_type", ["postgresql", "mysql"])
def test_an_operator_cannot_point_a_production_credential_at_the_fake(
    db_type: str, api_for: Any, admin_for: Any, make_instance: Any
) -> None:
    fake = FakePostgres("cleartext") if db_type == "postgresql" else FakeMySQL()
    with fake:
        port = 5432 if db_type == "postgresql" else 3306
        prod = credential("prod", hosts="db.example.com", ports=str(port), db_types=[db_type])
        instance = make_instance(db_type, host="db.example.com", port=port, credential=prod)
        operator = api_for("bob")
        url = f"/api/v1/instances/{instance.pk}/"
        for change in ({"host": "127.0.0.1", "port": fake.port}, {"host": "127.0.0.1"}, {"port": fake.port}):
            response = operator.patch(url, change, format="json")
            assert response.status_code == 400, change
            assert response.json()["code"] == "connection_not_allowed"
        page = admin_for("bob").post(
            reverse("admin:instances_instance_change", args=[instance.pk]),
            admin_form(instance, host="127.0.0.1", port=str(fake.port)),
        )
        assert page.status_code == 200  # the form again, with the refusal
        assert "Only someone who may change credentials can change where an instance connects" in page.content.decode()
        body = {"name": "fake", "db_type": db_type, "host": "127.0.0.1", "port": fake.port, "credential": prod.pk}
        created = operator.post("/api/v1/instances/", body, format="json")
        assert created.status_code == 400 and "bound to the hosts db.example.com" in str(created.json())
        instance.refresh_from_db()
        assert (instance.host, instance.port) == ("db.example.com", port)
        fake.wait_idle()
        assert fake.connections == 0 and fake.received() == b""  # not even a connection


@pytest.mark.django_db
@pytest.mark.parametrize("db_type", ["postgresql", "mysql"])
def test_a_test_connection_or_sync_at_the_fake_sends_no_password(
    db_type: str, api_for: Any, admin_for: Any, make_instance: Any
) -> None:
    """An admin binds a credential to the fake's address and moves an instance there: still nothing leaks."""
    fake = FakePostgres("cleartext") if db_type == "postgresql" else FakeMySQL()
    with fake:
        lab = credential("lab", hosts="db.example.com\n127.0.0.1", ports=f"5432, 3306, {fake.port}", db_types=[db_type])
        instance = make_instance(db_type, host="db.example.com", port=5432, credential=lab)
        url = f"/api/v1/instances/{instance.pk}/"
        moved = api_for("alice").patch(url, {"host": "127.0.0.1", "port": fake.port}, format="json")
        assert moved.status_code == 200, moved.json()
        instance.refresh_from_db()
        where = f"127.0.0.1:{fake.port} asked for the password in clear text"

        # the admin's Test connection action, run by the Operator
        page = admin_for("bob").post(
            reverse("admin:instances_instance_changelist"),
            {"action": "test_connection", "_selected_action": [instance.pk]},
            follow=True,
        )
        text = page.content.decode()
        assert "[configuration error]" in text and where in text and PASSWORD not in text
        # the API's test-connection and sync, by the Operator
        tested = api_for("bob").post(f"{url}test-connection/").json()
        assert (tested["ok"], tested["error_kind"]) == (False, "configuration") and where in tested["message"]
        synced = api_for("bob").post(f"{url}sync/", {}, format="json")
        assert synced.status_code == 400 and synced.json()["code"] == "instance_misconfigured"
        assert where in str(synced.json()) and PASSWORD not in str(synced.json())
        # the engine itself (what the workers run)
        result = account_sync_run(instance=instance)
        assert (result.success, result.error_kind) == (False, "configuration") and where in result.message

        fake.wait_idle()
        assert fake.connections >= 4 and fake.asked()
        assert not fake.saw(PASSWORD) and fake.after_request() == b""


@pytest.mark.django_db
def test_the_product_control_weak_auth_allowed_sends_the_password(api_for: Any, make_instance: Any) -> None:
    """The control through the product: allow weak authentication on the credential, and the fake gets it."""
    with FakePostgres("cleartext") as fake:
        lab = credential("lab", hosts="127.0.0.1", ports=str(fake.port), db_types=["postgresql"], weak=True)
        instance = make_instance("postgresql", host="127.0.0.1", port=fake.port, credential=lab)
        tested = api_for("bob").post(f"/api/v1/instances/{instance.pk}/test-connection/").json()
        assert (tested["ok"], tested["error_kind"]) == (False, "permission")  # the fake's FATAL after the password
        fake.wait_idle()
        assert fake.saw(PASSWORD)

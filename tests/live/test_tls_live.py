"""Verified TLS against real servers: a PostgreSQL and a MariaDB the tests start with TLS on, and a CA of their own.

verify-full succeeds with the right CA; the wrong CA or a certificate for another host name fails
with a `configuration` error that says so, before any login; a client certificate from the
credential reaches the server. Through the product: an instance and a credential as a user saves
them (the tls option, the client key encrypted), and the connection test and a sync use them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import replace

import pytest

from accountsync.adapters.base import AdapterError, ConfigurationError, ConnectionTarget, TlsSettings
from accountsync.adapters.mysql import MySQLAdapter
from accountsync.adapters.postgresql import PostgreSQLAdapter
from tests.live import tlsservers
from tests.live.tlsservers import CERT_USER, MONITOR, PASSWORD, Pki, TlsServer

pytestmark = pytest.mark.live


def _unavailable(what: str, exc: Exception) -> None:
    message = f"cannot start a TLS {what} for the test: {exc}"
    if os.environ.get("WHALEFALL_REQUIRE_LIVE") == "1":
        pytest.fail(message + " (WHALEFALL_REQUIRE_LIVE=1)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return tlsservers.make_pki()


def _started(what: str, server: contextlib.AbstractContextManager[TlsServer]) -> Iterator[TlsServer]:
    try:
        running = server.__enter__()
    except Exception as exc:
        _unavailable(what, exc)
    try:
        yield running
    finally:
        server.__exit__(None, None, None)


@pytest.fixture(scope="module")
def tls_pg(pki: Pki) -> Iterator[TlsServer]:
    yield from _started("PostgreSQL", tlsservers.tls_postgres(pki))


@pytest.fixture(scope="module")
def tls_maria(pki: Pki) -> Iterator[TlsServer]:
    yield from _started("MariaDB", tlsservers.tls_mariadb(pki))


def _target(
    db_type: str, port: int, tls: TlsSettings, *, user: str = MONITOR, host: str = "127.0.0.1"
) -> ConnectionTarget:
    return ConnectionTarget(
        name=f"tls-{db_type}",
        db_type=db_type,
        host=host,
        port=port,
        username=user,
        password=PASSWORD,
        database_name="postgres" if db_type == "postgresql" else "",
        connect_timeout=10,
        query_timeout=30,
        tls_settings=tls,
    )


# --- PostgreSQL ------------------------------------------------------------------------


def test_postgresql_verify_full_with_the_right_ca(tls_pg: TlsServer, pki: Pki) -> None:
    target = _target("postgresql", tls_pg.port, TlsSettings(mode="verify-full", ca_pem=pki.ca_pem))
    assert PostgreSQLAdapter().test_connection(target).startswith("PostgreSQL")
    import psycopg

    from accountsync.adapters.postgresql import _connect

    with _connect(target, "postgres") as conn:  # the session itself is encrypted
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)
    assert isinstance(conn, psycopg.Connection)


@pytest.mark.parametrize("mode", ["verify-full", "verify-ca"])
def test_postgresql_refuses_a_certificate_from_another_ca(tls_pg: TlsServer, pki: Pki, mode: str) -> None:
    target = _target("postgresql", tls_pg.port, TlsSettings(mode=mode, ca_pem=pki.other_ca_pem))
    with pytest.raises(ConfigurationError) as info:
        PostgreSQLAdapter().test_connection(target)
    message = str(info.value)
    assert info.value.kind == "configuration"
    assert f"the TLS certificate of 127.0.0.1:{tls_pg.port} could not be verified" in message
    assert "certificate verify failed" in message and PASSWORD not in message


def test_postgresql_verify_full_refuses_a_certificate_for_another_name(tls_pg: TlsServer, pki: Pki) -> None:
    """The certificate names 127.0.0.1 only; reached as localhost it does not match (verify-ca accepts it)."""
    full = _target("postgresql", tls_pg.port, TlsSettings(mode="verify-full", ca_pem=pki.ca_pem), host="localhost")
    with pytest.raises(ConfigurationError) as info:
        PostgreSQLAdapter().test_connection(full)
    assert "could not be verified" in str(info.value) and "localhost" in str(info.value)
    chain_only = replace(full, tls_settings=TlsSettings(mode="verify-ca", ca_pem=pki.ca_pem))
    assert PostgreSQLAdapter().test_connection(chain_only).startswith("PostgreSQL")


def test_postgresql_client_certificate_from_the_credential(tls_pg: TlsServer, pki: Pki) -> None:
    without = _target("postgresql", tls_pg.port, TlsSettings(mode="verify-full", ca_pem=pki.ca_pem), user=CERT_USER)
    with pytest.raises(AdapterError) as info:
        PostgreSQLAdapter().test_connection(without)
    assert "certificate" in str(info.value).lower()
    with_cert = replace(
        without,
        tls_settings=TlsSettings(
            mode="verify-full",
            ca_pem=pki.ca_pem,
            client_cert_pem=pki.client_cert_pem,
            client_key_pem=pki.client_key_pem,
        ),
    )
    assert PostgreSQLAdapter().test_connection(with_cert).startswith("PostgreSQL")


def test_postgresql_without_tls_is_refused_by_this_server(tls_pg: TlsServer) -> None:
    """The control: the server really demands TLS, so the successes above went over it."""
    with pytest.raises(AdapterError) as info:
        PostgreSQLAdapter().test_connection(_target("postgresql", tls_pg.port, TlsSettings(mode="disable")))
    assert "no encryption" in str(info.value) or "reject" in str(info.value)


# --- MariaDB -----------------------------------------------------------------------------


def test_mariadb_verify_full_with_the_right_ca(tls_maria: TlsServer, pki: Pki) -> None:
    target = _target("mysql", tls_maria.port, TlsSettings(mode="verify-full", ca_pem=pki.ca_pem))
    assert "MariaDB" in MySQLAdapter().test_connection(target)
    conn = MySQLAdapter()._connect(target)
    try:
        cursor = conn.cursor()
        cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
        assert cursor.fetchone()[1].startswith("TLS")
    finally:
        conn.close()


def test_mariadb_sync_reads_the_catalog_over_verified_tls(tls_maria: TlsServer, pki: Pki) -> None:
    target = _target("mysql", tls_maria.port, TlsSettings(mode="verify-full", ca_pem=pki.ca_pem))
    catalog = MySQLAdapter().fetch(target)
    names = {account.username for account in catalog.accounts}
    assert MONITOR in names


@pytest.mark.parametrize("mode", ["verify-full", "verify-ca"])
def test_mariadb_refuses_a_certificate_from_another_ca(tls_maria: TlsServer, pki: Pki, mode: str) -> None:
    target = _target("mysql", tls_maria.port, TlsSettings(mode=mode, ca_pem=pki.other_ca_pem))
    with pytest.raises(ConfigurationError) as info:
        MySQLAdapter().test_connection(target)
    message = str(info.value)
    assert f"the TLS certificate of 127.0.0.1:{tls_maria.port} could not be verified" in message
    assert info.value.kind == "configuration" and PASSWORD not in message


def test_mariadb_refuses_a_certificate_for_another_name(tls_maria: TlsServer, pki: Pki) -> None:
    target = _target("mysql", tls_maria.port, TlsSettings(mode="verify-full", ca_pem=pki.ca_pem))
    tlsservers.swap_certificate(tls_maria, pki.misnamed_cert_pem, pki.misnamed_key_pem)
    try:
        with pytest.raises(ConfigurationError, match="could not be verified"):
            MySQLAdapter().test_connection(target)
    finally:
        tlsservers.swap_certificate(tls_maria, pki.server_cert_pem, pki.server_key_pem)
    assert "MariaDB" in MySQLAdapter().test_connection(target)  # the right name again: connects


def test_mariadb_without_tls_is_refused_by_this_server(tls_maria: TlsServer) -> None:
    """The control: the account must use TLS (REQUIRE SSL), so the successes above went over it."""
    with pytest.raises(AdapterError, match="denied"):
        MySQLAdapter().test_connection(_target("mysql", tls_maria.port, TlsSettings(mode="disable")))


# --- through the product ---------------------------------------------------------------------


@pytest.mark.django_db
def test_an_instance_saved_with_verify_full_connects_and_syncs(
    tls_pg: TlsServer, tls_maria: TlsServer, pki: Pki
) -> None:
    from accountsync.connection import instance_connection_test
    from instances.models import Credential, Instance

    credential = Credential(
        name="tls-monitor",
        username=CERT_USER,
        allowed_hosts="127.0.0.1",
        tls_client_cert=pki.client_cert_pem,
    )
    credential.set_password(PASSWORD)
    credential.set_tls_client_key(pki.client_key_pem)
    credential.full_clean()
    credential.save()
    stored = Credential.objects.values_list("tls_client_key_encrypted", flat=True).get(pk=credential.pk)
    assert "PRIVATE KEY" not in stored  # encrypted at rest
    pg = Instance(
        name="tls-pg",
        db_type="postgresql",
        host="127.0.0.1",
        port=tls_pg.port,
        database_name="postgres",
        credential=credential,
        options={"tls": {"mode": "verify-full", "ca": pki.ca_pem}},
    )
    pg.full_clean()
    pg.save()
    result = instance_connection_test(instance=pg)
    assert result.ok, result.message
    pg.options = {"tls": {"mode": "verify-full", "ca": pki.other_ca_pem}}
    pg.save()
    result = instance_connection_test(instance=pg)
    assert not result.ok and result.error_kind == "configuration" and "could not be verified" in result.message

    monitor = Credential(name="tls-maria-monitor", username=MONITOR, allowed_hosts="127.0.0.1")
    monitor.set_password(PASSWORD)
    monitor.save()
    maria = Instance.objects.create(
        name="tls-maria",
        db_type="mysql",
        host="127.0.0.1",
        port=tls_maria.port,
        credential=monitor,
        options={"tls": {"mode": "verify-full", "ca": pki.ca_pem}},
    )
    from sync.services import sync_accounts

    result = sync_accounts(instance=maria, sync_type="manual_single")
    assert result["success"], result["message"]
    assert maria.accounts.filter(username=MONITOR).exists()

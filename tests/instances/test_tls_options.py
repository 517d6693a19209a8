"""One TLS option schema for every family (#17 part 3): validated where it is saved, wired into each driver.

The live half (real TLS servers, verify-full with the right and the wrong CA or name) is
tests/live/test_tls_live.py; here: the schema's refusals through the model, the admin and the API;
the client key stored encrypted and never shown; and the keywords each driver receives.
"""

from __future__ import annotations

import os
import ssl

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accountsync.adapters import mysql, oracle, postgresql, sqlserver
from accountsync.adapters.base import ConfigurationError, ConnectionTarget, TlsSettings
from instances.models import Credential, Instance
from tests.live.tlsservers import make_pki

PKI = make_pki()


def target(
    db_type: str = "postgresql", tls: TlsSettings | None = None, options: dict | None = None
) -> ConnectionTarget:
    return ConnectionTarget(
        name="t",
        db_type=db_type,
        host="db.example.com",
        port=5432,
        username="mon",
        password="pw",
        database_name="ORCL" if db_type == "oracle" else "",
        options=options or {},
        tls_settings=tls,
    )


# --- the schema ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("db_type", "tls", "expected"),
    [
        ("postgresql", {"mode": "verify-ful"}, "tls.mode must be one of disable, require, verify-ca, verify-full"),
        ("postgresql", {"mode": "verify-full", "cafile": "/etc/x"}, "unknown key(s) cafile; valid keys: ca, mode"),
        ("mysql", {"mode": "verify-full", "ca": "not a certificate"}, "tls.ca is not a PEM certificate bundle"),
        ("mysql", {"mode": "require", "ca": PKI.ca_pem}, "tls.ca is only used with mode verify-ca or verify-full"),
        ("sqlserver", {"mode": "verify-full", "ca": PKI.ca_pem}, "system trust store only"),
        ("postgresql", {"trust_server_certificate": True}, "tls.trust_server_certificate is a SQL Server setting"),
        ("sqlserver", {"trust_server_certificate": "yes"}, "must be true or false"),
        ("oracle", ["require"], "tls must be an object"),
    ],
)
def test_a_bad_tls_option_is_refused_with_what_is_wrong(db_type, tls, expected) -> None:
    instance = Instance(db_type=db_type, options={"tls": tls})
    with pytest.raises(ValidationError) as info:
        instance.clean()
    assert any(expected in message for message in info.value.message_dict["options"]), info.value.message_dict


@pytest.mark.parametrize(
    ("db_type", "tls"),
    [
        ("postgresql", {"mode": "verify-full", "ca": PKI.ca_pem}),
        ("mysql", {"mode": "verify-ca", "ca": PKI.ca_pem + PKI.other_ca_pem}),  # a bundle
        ("oracle", {"mode": "require"}),
        ("sqlserver", {"mode": "verify-full", "trust_server_certificate": False}),
        ("postgresql", "disable"),  # the short form
    ],
)
def test_a_good_tls_option_is_accepted(db_type, tls) -> None:
    Instance(db_type=db_type, options={"tls": tls}).clean()


@pytest.fixture
def api_as():
    def make(user) -> APIClient:
        client = APIClient()
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


@pytest.mark.django_db
def test_the_api_refuses_a_bad_tls_option_and_saves_a_good_one(api_as, alice, make_credential, make_instance) -> None:
    instance = make_instance("postgresql", port=5432)
    url = f"/api/v1/instances/{instance.pk}/"
    bad = api_as(alice).patch(url, {"options": {"tls": {"mode": "verify-full", "ca": "junk"}}}, format="json")
    assert bad.status_code == 400 and "tls.ca is not a PEM certificate bundle" in str(bad.json()["options"])
    good = api_as(alice).patch(url, {"options": {"tls": {"mode": "verify-full", "ca": PKI.ca_pem}}}, format="json")
    assert good.status_code == 200, good.json()
    instance.refresh_from_db()
    assert instance.options["tls"]["ca"] == PKI.ca_pem


@pytest.mark.django_db
def test_the_admin_refuses_a_bad_tls_option(alice, make_instance) -> None:
    instance = make_instance("mysql", port=3306)
    client = Client()
    client.force_login(alice)
    form = {
        "name": instance.name,
        "db_type": "mysql",
        "environment": instance.environment,
        "is_active": "on",
        "host": "127.0.0.1",
        "port": "3306",
        "database_name": "",
        "credential": instance.credential_id,
        "options": '{"tls": {"mode": "verify_full"}}',
        "description": "",
    }
    page = client.post(reverse("admin:instances_instance_change", args=[instance.pk]), form)
    assert page.status_code == 200 and "tls.mode must be one of" in page.content.decode()
    instance.refresh_from_db()
    assert instance.options == {}


# --- the client certificate on the credential -----------------------------------------------


@pytest.mark.django_db
def test_the_client_key_is_encrypted_write_only_and_must_match_the_certificate(alice, bob, api_as) -> None:
    api = api_as(alice)
    body = {
        "name": "with-cert",
        "username": "mon",
        "password": "pw",
        "tls_client_cert": PKI.client_cert_pem,
        "tls_client_key": PKI.server_key_pem,  # not this certificate's key
    }
    mismatch = api.post("/api/v1/credentials/", body, format="json")
    assert mismatch.status_code == 400 and "does not belong to the client certificate" in str(mismatch.json())
    created = api.post("/api/v1/credentials/", {**body, "tls_client_key": PKI.client_key_pem}, format="json")
    assert created.status_code == 201, created.json()
    data = created.json()
    assert data["has_tls_client_key"] is True and "tls_client_key" not in data
    credential = Credential.objects.get(pk=data["id"])
    assert "PRIVATE KEY" not in credential.tls_client_key_encrypted
    assert credential.get_tls_client_key().strip() == PKI.client_key_pem.strip()
    key_body = PKI.client_key_pem.splitlines()[1]
    for user in (alice, bob):  # nobody reads it back: not the API, not the admin page
        assert key_body not in api_as(user).get(f"/api/v1/credentials/{credential.pk}/").content.decode()
    client = Client()
    client.force_login(alice)
    page = client.get(reverse("admin:instances_credential_change", args=[credential.pk]))
    assert page.status_code == 200 and key_body not in page.content.decode()
    # the key reaches the driver's target, and only there
    instance = Instance.objects.create(
        name="pg-cert", db_type="postgresql", host="127.0.0.1", port=5432, credential=credential
    )
    built = ConnectionTarget.from_instance(instance)
    assert built.tls.client_key_pem.strip() == PKI.client_key_pem.strip()
    assert key_body not in repr(built) and key_body not in repr(built.tls)
    # removing it through the API
    assert (
        api.patch(
            f"/api/v1/credentials/{credential.pk}/", {"tls_client_cert": "", "tls_client_key": ""}, format="json"
        ).status_code
        == 200
    )
    credential.refresh_from_db()
    assert not credential.has_tls_client_key and credential.tls_client_cert == ""


@pytest.mark.django_db
def test_the_admin_stores_the_client_key_and_keeps_it_when_left_empty(alice) -> None:
    client = Client()
    client.force_login(alice)
    form = {
        "name": "admin-cert",
        "username": "mon",
        "password": "pw",
        "allowed_hosts": "127.0.0.1",
        "allowed_ports": "",
        "tls_client_cert": PKI.client_cert_pem,
        "tls_client_key": PKI.client_key_pem,
        "description": "",
    }
    assert client.post(reverse("admin:instances_credential_add"), form).status_code == 302
    credential = Credential.objects.get(name="admin-cert")
    assert credential.get_tls_client_key().strip() == PKI.client_key_pem.strip()
    change = reverse("admin:instances_credential_change", args=[credential.pk])
    assert client.post(change, {**form, "tls_client_key": "", "description": "kept"}).status_code == 302
    credential.refresh_from_db()
    assert credential.has_tls_client_key and credential.description == "kept"
    page = client.post(change, {**form, "tls_client_key": "", "tls_client_cert": PKI.server_cert_pem})
    assert page.status_code == 200 and "does not belong to the client certificate" in page.content.decode()
    # a form shown again with an error never echoes a key that was typed into it
    mismatch = client.post(change, {**form, "tls_client_key": PKI.server_key_pem})
    assert "does not belong" in mismatch.content.decode()
    assert PKI.server_key_pem.splitlines()[1] not in mismatch.content.decode()
    assert client.post(change, {**form, "tls_client_key": "", "clear_tls_client": "on"}).status_code == 302
    credential.refresh_from_db()
    assert not credential.has_tls_client_key and credential.tls_client_cert == ""


# --- what each driver receives --------------------------------------------------------------


def test_postgresql_keywords() -> None:
    assert postgresql.tls_params(target()) == {"sslmode": "prefer"}  # no option: as before
    assert postgresql.tls_params(target(tls=TlsSettings(mode="disable"))) == {"sslmode": "disable"}
    verify = postgresql.tls_params(target(tls=TlsSettings(mode="verify-full", ca_pem=PKI.ca_pem)))
    assert verify["sslmode"] == "verify-full"
    with open(verify["sslrootcert"]) as handle:
        assert handle.read() == PKI.ca_pem
    system = postgresql.tls_params(target(tls=TlsSettings(mode="verify-ca")))
    assert system["sslrootcert"] == postgresql.SYSTEM_CA_BUNDLE  # not ~/.postgresql of the WhaleFall user
    client = TlsSettings(mode="require", client_cert_pem=PKI.client_cert_pem, client_key_pem=PKI.client_key_pem)
    params = postgresql.tls_params(target(tls=client))
    with open(params["sslkey"]) as handle:
        assert handle.read() == PKI.client_key_pem
    if params["sslkey"].startswith("/proc/self/fd/"):  # unlinked: no other process finds the key on disk
        assert os.stat(params["sslkey"]).st_nlink == 0
    # a target built from the option alone (no credential) reads it the same way
    from_option = postgresql.tls_params(target(options={"tls": {"mode": "verify-full", "ca": PKI.ca_pem}}))
    assert from_option["sslmode"] == "verify-full" and from_option["sslrootcert"] == verify["sslrootcert"]


def test_mysql_keywords_and_the_plugins_they_allow() -> None:
    assert mysql.tls_params(target("mysql")) == {}
    assert mysql.tls_params(target("mysql", tls=TlsSettings(mode="require"))) == {"ssl_mode": "REQUIRED"}
    full = mysql.tls_params(target("mysql", tls=TlsSettings(mode="verify-full", ca_pem=PKI.ca_pem)))
    assert full["ssl_mode"] == "VERIFY_IDENTITY" and set(full["ssl"]) == {"ca"}
    assert "caching_sha2_password" in mysql.allowed_auth_plugins(target("mysql"), full)  # verified TLS
    assert "caching_sha2_password" not in mysql.allowed_auth_plugins(target("mysql"), {"ssl_mode": "REQUIRED"})
    via_options = mysql.tls_params(target("mysql", options={"tls": {"mode": "verify-ca", "ca": PKI.ca_pem}}))
    assert via_options["ssl_mode"] == "VERIFY_CA" and via_options["ssl"]["ca"] == full["ssl"]["ca"]


def test_sqlserver_keywords() -> None:
    assert "Encrypt=yes;TrustServerCertificate=no" in sqlserver.connection_string(target("sqlserver"))
    for mode in ("require", "verify-ca", "verify-full"):  # always verified: the driver has no CA-only check
        string = sqlserver.connection_string(target("sqlserver", tls=TlsSettings(mode=mode)))
        assert "Encrypt=yes;TrustServerCertificate=no" in string
    assert "Encrypt=no" in sqlserver.connection_string(target("sqlserver", tls=TlsSettings(mode="disable")))
    trusting = TlsSettings(mode="require", trust_server_certificate=True)
    assert "TrustServerCertificate=yes" in sqlserver.connection_string(target("sqlserver", tls=trusting))
    with pytest.raises(ConfigurationError, match="system trust store"):
        sqlserver.connection_string(target("sqlserver", tls=TlsSettings(mode="verify-full", ca_pem=PKI.ca_pem)))


def test_oracle_keywords() -> None:
    assert oracle.tls_params(target("oracle")) == {}
    assert oracle.tls_params(target("oracle", tls=TlsSettings(mode="disable"))) == {}
    full = oracle.tls_params(target("oracle", tls=TlsSettings(mode="verify-full", ca_pem=PKI.ca_pem)))
    assert full["protocol"] == "tcps" and full["ssl_server_dn_match"] is True
    context: ssl.SSLContext = full["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "WhaleFall test CA"),),)]
    chain = oracle.tls_params(target("oracle", tls=TlsSettings(mode="verify-ca", ca_pem=PKI.ca_pem)))
    assert chain["ssl_server_dn_match"] is False and not chain["ssl_context"].check_hostname
    encrypted = oracle.tls_params(target("oracle", tls=TlsSettings(mode="require")))["ssl_context"]
    assert encrypted.verify_mode == ssl.CERT_NONE

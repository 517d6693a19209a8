"""Bound credentials (#17 part 1): a credential is used only where it is bound, and only those who may change
credentials can change where an instance connects.

The threat: an Operator (edits instances, may not see or change credentials) points an instance with a
production credential at a server of theirs and reads the password there. The refusal must come before
any connection: a listening socket on loopback proves nothing ever reaches it.
"""

from __future__ import annotations

import socket
import threading

import pytest
from django.apps import apps as django_apps
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accountsync.adapters.base import ConfigurationError, ConnectionTarget
from accountsync.services import account_sync_run
from instances.models import Credential, Instance, port_ranges

pytestmark = pytest.mark.django_db


class Listener:
    """A loopback TCP port that counts the connections made to it (nothing should ever arrive)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def api_client():
    def make(user) -> APIClient:
        client = APIClient()
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


@pytest.fixture
def client_for(alice, bob, charlie):
    users = {"alice": alice, "bob": bob, "charlie": charlie}

    def make(name: str) -> Client:
        client = Client()
        client.force_login(users[name])
        return client

    return make


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


def bound(make_credential, name: str = "prod", **binding) -> Credential:
    credential = make_credential(name=name)
    for key, value in binding.items():
        setattr(credential, key, value)
    credential.full_clean()
    credential.save()
    return credential


def test_binding_rules(make_credential):
    credential = bound(
        make_credential,
        allowed_db_types=["postgresql"],
        allowed_hosts="db-*.PROD.example.com\n10.0.1.*",
        allowed_ports="5432, 6000-6010",
    )
    ok = credential.binding_refusal
    assert ok(db_type="postgresql", host="db-7.prod.example.com", port=5432) == ""
    assert ok(db_type="postgresql", host="10.0.1.20", port=6005) == ""
    assert "not mysql" in ok(db_type="mysql", host="10.0.1.20", port=5432)
    assert "not 'evil.example.net'" in ok(db_type="postgresql", host="evil.example.net", port=5432)
    assert "not 6011" in ok(db_type="postgresql", host="10.0.1.20", port=6011)
    assert credential.is_bound and not make_credential(name="free").is_bound
    assert port_ranges("") == [] and port_ranges("1-2,3") == [(1, 2), (3, 3)]
    for bad in ("70000", "6010-6000", "ssh"):
        with pytest.raises(ValidationError):
            bound(make_credential, name=f"bad-{bad}", allowed_ports=bad)


def test_a_sync_elsewhere_is_refused_before_any_connection(make_credential, make_instance, listener):
    credential = bound(make_credential, allowed_hosts="db.example.com")
    instance = make_instance("postgresql", host="127.0.0.1", port=listener.port, credential=credential)
    with pytest.raises(ConfigurationError, match=r"may not be used for postgresql at 127\.0\.0\.1"):
        ConnectionTarget.from_instance(instance)
    result = account_sync_run(instance=instance)
    assert (result.success, result.error_kind) == (False, "configuration")
    assert "bound to the hosts db.example.com" in result.message
    assert listener.accepted == 0
    # bound to the right place, the same sync does connect (and fails there, being no database)
    credential.allowed_hosts = "127.0.0.1"
    credential.save()
    instance.refresh_from_db()
    assert account_sync_run(instance=instance).error_kind != "configuration"
    assert listener.accepted >= 1


def test_an_operator_cannot_move_an_instance_through_the_api(api_client, alice, bob, make_credential, make_instance):
    prod = bound(make_credential, allowed_hosts="db.example.com\n127.0.0.1")
    instance = make_instance("postgresql", host="db.example.com", port=5432, credential=prod)
    url = f"/api/v1/instances/{instance.pk}/"
    operator = api_client(bob)
    for change, field in (
        ({"host": "127.0.0.1"}, "host"),
        ({"port": 6543}, "port"),
        ({"db_type": "mysql"}, "db_type"),
        ({"credential": make_credential(name="other").pk}, "credential"),
        ({"options": {"tls": {"mode": "disable"}}}, "options"),
    ):
        response = operator.patch(url, change, format="json")
        assert response.status_code == 400, change
        assert response.json()["code"] == "connection_not_allowed" and field in response.json()
    instance.refresh_from_db()
    assert (instance.host, instance.port, instance.credential_id, instance.options) == (
        "db.example.com",
        5432,
        prod.pk,
        {},
    )
    assert operator.patch(url, {"options": {"connect_timeout": 3}}, format="json").status_code == 200
    assert operator.patch(url, {"description": "moved?"}, format="json").status_code == 200
    # creating: only with a credential bound to where the instance goes
    free = make_credential(name="unbound")
    body = {"name": "new", "db_type": "postgresql", "host": "127.0.0.1", "credential": free.pk}
    assert operator.post("/api/v1/instances/", body, format="json").json()["code"] == "connection_not_allowed"
    body["credential"] = prod.pk
    assert operator.post("/api/v1/instances/", {**body, "host": "evil.example.net"}, format="json").status_code == 400
    assert operator.post("/api/v1/instances/", body, format="json").status_code == 201
    # an admin (may change credentials) may move it, within the credential's binding
    admin = api_client(alice)
    assert admin.patch(url, {"host": "127.0.0.1"}, format="json").status_code == 200
    refused = admin.patch(url, {"host": "evil.example.net"}, format="json")
    assert refused.status_code == 400 and "bound to the hosts" in refused.json()["credential"][0]


def test_an_operator_cannot_move_an_instance_through_the_admin(client_for, make_credential, make_instance):
    prod = bound(make_credential, allowed_hosts="db.example.com")
    instance = make_instance("postgresql", host="db.example.com", port=5432, credential=prod)
    url = reverse("admin:instances_instance_change", args=[instance.pk])
    form = {
        "name": instance.name,
        "db_type": "postgresql",
        "environment": instance.environment,
        "is_active": "on",
        "host": "127.0.0.1",
        "port": "5432",
        "database_name": "",
        "credential": prod.pk,
        "options": "{}",
        "description": "",
    }
    page = client_for("bob").post(url, form)
    assert page.status_code == 200  # the form again, with the error
    assert "Only someone who may change credentials can change where an instance connects" in page.content.decode()
    instance.refresh_from_db()
    assert instance.host == "db.example.com"
    assert client_for("bob").post(url, {**form, "host": "db.example.com", "description": "ok"}).status_code == 302


def test_existing_credentials_are_bound_to_where_they_are_used(make_credential, make_instance):
    from importlib import import_module

    used = make_credential(name="used")
    make_instance("postgresql", host="DB1.example.com", port=5432, credential=used)
    make_instance("mysql", host="db2.example.com", port=3307, credential=used)
    idle = make_credential(name="idle")
    Credential.objects.update(allowed_hosts="", allowed_ports="", allowed_db_types=[], allow_weak_auth=False)
    import_module("instances.migrations.0004_credential_binding").bind_existing(django_apps, None)
    used.refresh_from_db()
    idle.refresh_from_db()
    assert used.allowed_db_types == ["mysql", "postgresql"]
    assert used.allowed_hosts.splitlines() == ["db1.example.com", "db2.example.com"]
    assert used.allowed_ports == "3307, 5432" and used.allow_weak_auth is True
    assert Instance.objects.filter(credential=used).count() == 2
    assert (idle.allowed_hosts, idle.is_bound) == ("", False)

"""Test connection against the live local servers, through the admin action."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from accountsync.connection import instance_connection_test
from instances.models import Credential, Instance
from tests.livedb import MARIADB, POSTGRES

pytestmark = pytest.mark.live


def _instance(name: str, db_type: str, port: int, username: str, password: str, **kw) -> Instance:
    cred = Credential(name=f"cred-{name}", username=username)
    cred.set_password(password)
    cred.save()
    return Instance.objects.create(name=name, db_type=db_type, host="127.0.0.1", port=port, credential=cred, **kw)


@pytest.fixture
def mariadb_monitor(mariadb_admin, unique_prefix):
    """A real monitoring user with a password, dropped afterwards."""
    user, password = f"{unique_prefix}_mon", "Mon-Pa55-" + unique_prefix
    cur = mariadb_admin.cursor()
    cur.execute("CREATE USER %s@'127.0.0.1' IDENTIFIED BY %s", (user, password))
    cur.execute("CREATE USER %s@'localhost' IDENTIFIED BY %s", (user, password))
    try:
        yield user, password
    finally:
        cur.execute("DROP USER IF EXISTS %s@'127.0.0.1'", (user,))
        cur.execute("DROP USER IF EXISTS %s@'localhost'", (user,))


@pytest.mark.django_db
def test_admin_action_shows_versions_of_live_servers(client, mariadb_admin, postgres_admin):
    admin = get_user_model().objects.create_superuser("alice", "a@example.com", "pw-alice-123")
    client.force_login(admin)
    maria = _instance("live-mariadb", "mysql", MARIADB["port"], "root", "")
    pg = _instance("live-postgres", "postgresql", POSTGRES["port"], "postgres", "", database_name="postgres")
    resp = client.post(
        reverse("admin:instances_instance_changelist"),
        {"action": "test_connection", "_selected_action": [maria.pk, pg.pk]},
        follow=True,
    )
    html = resp.content.decode()
    assert "[live-mariadb] connected, MariaDB 10." in html
    assert "[live-postgres] connected, PostgreSQL 1" in html
    assert "2 of 2 instances reachable" in html
    maria.refresh_from_db()
    pg.refresh_from_db()
    assert maria.version.startswith("MariaDB ")
    assert pg.version.startswith("PostgreSQL ")


@pytest.mark.django_db
def test_wrong_password_is_a_permission_error_without_the_password(mariadb_monitor, caplog):
    user, password = mariadb_monitor
    wrong = password + "-WRONG-xyz"
    inst = _instance("wrong-pw", "mysql", MARIADB["port"], user, wrong)
    result = instance_connection_test(instance=inst)
    assert not result.ok
    assert result.error_kind == "permission"
    assert "authentication failed" in result.message
    assert "wrong-pw" in result.message
    assert wrong not in result.message and wrong not in caplog.text

    ok = instance_connection_test(instance=_instance("right-pw", "mysql", MARIADB["port"], user, password))
    assert ok.ok, ok.message


@pytest.mark.django_db
def test_unresolvable_host_is_a_connection_error(mariadb_admin):
    inst = _instance("nowhere", "mysql", MARIADB["port"], "root", "secret-nowhere-1")
    Instance.objects.filter(pk=inst.pk).update(host="no-such-host.invalid")
    inst.refresh_from_db()
    result = instance_connection_test(instance=inst)
    assert not result.ok
    assert result.error_kind == "connection"
    assert "secret-nowhere-1" not in result.message

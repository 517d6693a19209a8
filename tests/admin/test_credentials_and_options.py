"""Issue #22 parts 2 and 6: an empty password reads as one; instance options are checked per database type."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from django.apps import apps as django_apps
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from instances import crypto
from instances.models import Credential, Instance, instance_option_errors, valid_option_keys

pytestmark = pytest.mark.django_db

CREDENTIALS = reverse("admin:instances_credential_changelist")


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


# --- part 2: credentials ---------------------------------------------------------------


def test_a_credential_added_with_an_empty_password_is_shown_as_empty_password(client_for, alice):
    client = client_for("alice")
    add = client.get(reverse("admin:instances_credential_add")).content.decode()
    assert "keep the current password" not in add  # there is no current password yet
    assert "Leave empty for an account without a password" in add
    assert 'name="clear_password"' not in add
    assert "keep the current key" not in add and 'name="clear_tls_client"' not in add  # no key to keep or remove
    resp = client.post(reverse("admin:instances_credential_add"), {"name": "sock", "username": "monitor"})
    assert resp.status_code == 302, resp.content[:2000]
    cred = Credential.objects.get(name="sock")
    assert cred.password_encrypted == "" and not cred.has_password and cred.get_password() == ""
    listing = client.get(CREDENTIALS).content.decode()
    assert "empty password" in listing and "set (encrypted)" not in listing
    assert api(alice).get(f"/api/v1/credentials/{cred.pk}/").json()["has_password"] is False

    change = client.get(reverse("admin:instances_credential_change", args=[cred.pk])).content.decode()
    assert "This credential has an empty password" in change and 'name="clear_password"' not in change


def test_a_set_password_reads_set_and_can_still_be_cleared(client_for, alice, make_credential):
    cred = make_credential(password="pw-Set-1234")
    client = client_for("alice")
    assert "set (encrypted)" in client.get(CREDENTIALS).content.decode()
    assert api(alice).get(f"/api/v1/credentials/{cred.pk}/").json()["has_password"] is True
    change = client.get(reverse("admin:instances_credential_change", args=[cred.pk])).content.decode()
    assert "Leave empty to keep the current password" in change and 'name="clear_password"' in change


def test_set_password_with_an_empty_string_stores_none():
    cred = Credential(name="x", username="u")
    cred.set_password("")
    assert cred.password_encrypted == "" and not cred.has_password
    cred.set_password("pw")
    assert cred.has_password and cred.get_password() == "pw"


def test_the_migration_clears_encrypted_empty_passwords(make_credential):
    legacy = make_credential(name="legacy", password="x")
    Credential.objects.filter(pk=legacy.pk).update(password_encrypted=crypto.encrypt(""))  # what the add form stored
    kept = make_credential(name="kept", password="pw-Kept-77")
    undecryptable = make_credential(name="rotated", password="x")
    Credential.objects.filter(pk=undecryptable.pk).update(password_encrypted="gAAAA-not-a-token")
    migration = importlib.import_module("instances.migrations.0006_empty_passwords_stored_as_none")
    migration.clear_encrypted_empty_passwords(django_apps, None)
    assert Credential.objects.get(pk=legacy.pk).password_encrypted == ""
    assert Credential.objects.get(pk=kept.pk).get_password() == "pw-Kept-77"
    assert Credential.objects.get(pk=undecryptable.pk).password_encrypted == "gAAAA-not-a-token"


# --- part 6: instance options ----------------------------------------------------------


@pytest.mark.parametrize(
    ("db_type", "options", "message"),
    [
        ("mysql", {"databases": ["app"]}, "Unknown option(s) databases"),
        ("postgresql", {"databse": ["app"]}, "Unknown option(s) databse"),
        ("postgresql", {"databases": "app"}, "databases must be a list of database names"),
        ("postgresql", {"databases": ["app", ""]}, "databases must be a list of database names"),
        ("postgresql", {"databases": [1]}, "databases must be a list of database names"),
        ("sqlserver", {"database_batch_size": "50"}, "database_batch_size must be a whole number"),
        ("sqlserver", {"database_batch_size": 0}, "database_batch_size must be a whole number"),
        ("oracle", {"include_oracle_maintained": "yes"}, "include_oracle_maintained must be true or false"),
        ("sqlserver", {"availability_group": "yes"}, "availability_group must be true or false"),
        ("postgresql", {"availability_group": True}, "Unknown option(s) availability_group"),
        ("oracle", {"databases": []}, "Unknown option(s) databases"),
        ("mysql", {"query_timeout": "slow"}, "query_timeout must be a number of seconds"),
        ("mysql", {"query_timeout": 0}, "query_timeout must be a number of seconds"),
        ("mysql", {"connect_timeout": True}, "connect_timeout must be a number of seconds"),
        ("mysql", {"tls": {"mode": "verify_full"}}, "tls.mode must be one of"),
    ],
)
def test_bad_options_are_refused_per_database_type(db_type, options, message):
    errors = instance_option_errors(options, db_type)
    assert any(message in e for e in errors), errors
    with pytest.raises(ValidationError) as info:
        Instance(db_type=db_type, options=options).clean()
    assert any(message in e for e in info.value.message_dict["options"])


@pytest.mark.parametrize(
    ("db_type", "options"),
    [
        ("mysql", {"connect_timeout": 5, "query_timeout": 120, "tls": {"mode": "require"}}),
        ("postgresql", {"databases": ["sales", "postgres"]}),
        ("postgresql", {"databases": []}),
        ("sqlserver", {"database_batch_size": 50, "tls": {"mode": "verify-full", "trust_server_certificate": False}}),
        ("sqlserver", {"availability_group": True}),
        ("oracle", {"include_oracle_maintained": True}),
        ("mysql", {}),
    ],
)
def test_the_documented_options_pass(db_type, options):
    assert instance_option_errors(options, db_type) == []


def test_an_unknown_key_is_refused_with_the_list_of_valid_ones():
    [error] = instance_option_errors({"connect_timout": 5}, "postgresql")
    assert "Unknown option(s) connect_timout" in error
    assert "PostgreSQL" in error and ", ".join(valid_option_keys("postgresql")) in error
    assert valid_option_keys("postgresql") == ["connect_timeout", "databases", "query_timeout", "tls"]
    assert valid_option_keys("mysql") == ["connect_timeout", "query_timeout", "tls"]


def test_the_help_text_examples_are_valid_options():
    """Each example in the options help text passes the validation of its database type."""
    import json
    import re

    text = str(Instance._meta.get_field("options").help_text)
    examples = {
        "postgresql": '{"databases": ["sales", "postgres"]}',
        "sqlserver": '{"database_batch_size": 50, "availability_group": true}',
        "oracle": '{"include_oracle_maintained": false}',
        "mysql": '{"connect_timeout": 5}',
    }
    for db_type, example in examples.items():
        assert example in text
        assert instance_option_errors(json.loads(example), db_type) == []
    tls = re.search(r'"tls": (\{"mode": "verify-full"[^}]*\})', text)
    assert tls and "mode" in tls.group(1)
    # the docs give the same examples
    doc_text = (Path(__file__).resolve().parents[2] / "docs" / "monitoring-accounts.md").read_text()
    assert '{"databases": ["sales", "postgres"]}' in doc_text and '{"include_oracle_maintained": false}' in doc_text
    assert '{"availability_group": true}' in doc_text


def _instance_form(cred, **extra) -> dict:
    return {
        "name": "opt",
        "db_type": "postgresql",
        "environment": "production",
        "host": "127.0.0.1",
        "port": "5432",
        "credential": cred.pk,
        "options": "{}",
        "is_active": "on",
        **extra,
    }


def test_the_admin_refuses_unknown_or_mistyped_options(client_for, make_credential):
    cred = make_credential()
    client = client_for("alice")
    url = reverse("admin:instances_instance_add")
    resp = client.post(url, _instance_form(cred, options='{"databses": ["app"]}'))
    assert resp.status_code == 200
    html = resp.content.decode()
    assert "Unknown option(s) databses" in html and "connect_timeout, databases, query_timeout, tls" in html
    resp = client.post(url, _instance_form(cred, options='{"databases": "app"}'))
    assert "databases must be a list of database names" in resp.content.decode()
    assert not Instance.objects.filter(name="opt").exists()
    resp = client.post(url, _instance_form(cred, options='{"databases": ["app"]}'))
    assert resp.status_code == 302
    assert Instance.objects.get(name="opt").options == {"databases": ["app"]}


def test_the_api_refuses_unknown_or_mistyped_options(alice, make_credential, make_instance):
    inst = make_instance(db_type="mysql", name="api-opt")
    url = f"/api/v1/instances/{inst.pk}/"
    resp = api(alice).patch(url, {"options": {"databases": ["app"]}}, format="json")
    assert resp.status_code == 400
    assert "Unknown option(s) databases" in str(resp.json()["options"])
    assert "connect_timeout, query_timeout, tls" in str(resp.json()["options"])
    resp = api(alice).patch(url, {"db_type": "postgresql", "options": {"databases": "app"}}, format="json")
    assert resp.status_code == 400 and "must be a list of database names" in str(resp.json()["options"])
    resp = api(alice).patch(url, {"db_type": "postgresql", "options": {"databases": ["app"]}}, format="json")
    assert resp.status_code == 200, resp.json()


def test_test_connection_refuses_bad_options_before_connecting(client_for, make_instance, alice):
    """Options stored before the validation (or written past it) never test as "connected"."""
    inst = make_instance(db_type="postgresql", name="stale-opts", port=1)
    Instance.objects.filter(pk=inst.pk).update(options={"databases": "app", "colour": "blue"})
    resp = client_for("alice").post(
        reverse("admin:instances_instance_changelist"),
        {"action": "test_connection", "_selected_action": [inst.pk]},
        follow=True,
    )
    html = resp.content.decode()
    assert "[configuration error] stale-opts: invalid options: Unknown option(s) colour" in html
    assert "databases must be a list of database names" in html and "connected" not in html
    body = api(alice).post(f"/api/v1/instances/{inst.pk}/test-connection/").json()
    assert body["ok"] is False and body["error_kind"] == "configuration", body

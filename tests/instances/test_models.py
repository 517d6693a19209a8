"""Validation of instances gives clear, field-level messages."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from instances.models import Instance


def build(cred, **kw) -> Instance:
    data = {"name": "x", "db_type": "mysql", "host": "db1.example.com", "port": 3306, "credential": cred}
    data.update(kw)
    return Instance(**data)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("port", 0),
        ("port", 70000),
        ("db_type", "mongodb"),
        ("host", "http://db1"),
        ("host", "db 1"),
        ("host", ""),
        ("options", {"connect_timeout": "fast"}),
        ("options", {"connect_timeout": -1}),
    ],
)
def test_invalid_values_are_rejected_per_field(make_credential, field, value):
    inst = build(make_credential(), **{field: value})
    with pytest.raises(ValidationError) as info:
        inst.full_clean()
    assert field in info.value.message_dict


@pytest.mark.django_db
@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "db-1.prod.internal", "localhost", "2001:db8::5"])
def test_valid_hosts_pass(make_credential, host):
    build(make_credential(), host=host).full_clean()


@pytest.mark.django_db
def test_name_is_unique(make_credential):
    cred = make_credential()
    build(cred).save()
    with pytest.raises(ValidationError) as info:
        build(cred).full_clean()
    assert "name" in info.value.message_dict


@pytest.mark.django_db
def test_connect_timeout_default_and_override(make_credential, settings):
    settings.WHALEFALL_CONNECT_TIMEOUT = 5.0
    assert build(make_credential()).connect_timeout == 5.0
    assert build(make_credential(name="b"), options={"connect_timeout": 2}).connect_timeout == 2.0


def test_unknown_db_type_is_a_configuration_error():
    from accountsync.adapters.base import ConfigurationError, get_adapter

    with pytest.raises(ConfigurationError, match="unsupported database type 'mongodb'"):
        get_adapter("mongodb")

"""Credentials are encrypted at rest, rotate cleanly and never leak."""

from __future__ import annotations

import logging

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from accountsync.adapters.base import ConfigurationError, ConnectionTarget
from instances.crypto import CredentialDecryptError
from instances.models import Credential

SECRET = "Tr0ub4dor&3-unique-7731"


def raw_column(pk: int) -> str:
    with connection.cursor() as cur:
        cur.execute("SELECT password FROM instances_credential WHERE id = %s", [pk])
        return cur.fetchone()[0]


@pytest.mark.django_db
def test_password_is_stored_encrypted_and_decrypts(make_credential, settings):
    cred = make_credential(password=SECRET)
    stored = raw_column(cred.pk)
    assert SECRET not in stored
    assert stored != SECRET
    assert Fernet(settings.WHALEFALL_FIELD_KEYS[0].encode()).decrypt(stored.encode()).decode() == SECRET
    assert Credential.objects.get(pk=cred.pk).get_password() == SECRET


@pytest.mark.django_db
def test_each_encryption_is_unique(make_credential):
    a = make_credential(name="a", password=SECRET)
    b = make_credential(name="b", password=SECRET)
    assert raw_column(a.pk) != raw_column(b.pk)


@pytest.mark.django_db
def test_rotation_reencrypts_with_newest_key(make_credential, settings):
    old_key = settings.WHALEFALL_FIELD_KEYS[0]
    cred = make_credential(password=SECRET)
    before = raw_column(cred.pk)
    new_key = Fernet.generate_key().decode()
    settings.WHALEFALL_FIELD_KEYS = [new_key, old_key]
    call_command("rotate_field_keys", stdout=open("/dev/null", "w"))  # noqa: SIM115
    after = raw_column(cred.pk)
    assert after != before
    assert Fernet(new_key.encode()).decrypt(after.encode()).decode() == SECRET
    settings.WHALEFALL_FIELD_KEYS = [new_key]  # the old key can now be dropped
    assert Credential.objects.get(pk=cred.pk).get_password() == SECRET


@pytest.mark.django_db
def test_rotation_refuses_when_a_credential_cannot_be_decrypted(make_credential, settings):
    make_credential(name="good", password=SECRET)
    settings.WHALEFALL_FIELD_KEYS = [Fernet.generate_key().decode()]
    bad = make_credential(name="bad", password="other")
    settings.WHALEFALL_FIELD_KEYS = [Fernet.generate_key().decode(), settings.WHALEFALL_FIELD_KEYS[0]]
    before = raw_column(bad.pk)
    with pytest.raises(CommandError, match="good"):
        call_command("rotate_field_keys")
    assert raw_column(bad.pk) == before  # rolled back: nothing half-rotated


@pytest.mark.django_db
def test_rotated_away_key_is_an_error_never_an_empty_password(make_instance, settings):
    instance = make_instance()
    settings.WHALEFALL_FIELD_KEYS = [Fernet.generate_key().decode()]
    cred = Credential.objects.get(pk=instance.credential_id)
    with pytest.raises(CredentialDecryptError, match="key rotated"):
        cred.get_password()
    instance.refresh_from_db()
    with pytest.raises(ConfigurationError, match="cannot be decrypted"):
        ConnectionTarget.from_instance(instance)


@pytest.mark.django_db
def test_password_absent_from_repr_str_and_target_repr(make_instance):
    instance = make_instance(credential=None)
    cred = instance.credential
    cred.set_password(SECRET)
    cred.save()
    instance.refresh_from_db()
    target = ConnectionTarget.from_instance(instance)
    assert target.password == SECRET
    for text in (repr(cred), str(cred), repr(target), str(target), repr(instance)):
        assert SECRET not in text


@pytest.mark.django_db
def test_connection_failure_logs_and_messages_carry_no_secret(make_instance, caplog):
    from accountsync.connection import instance_connection_test

    instance = make_instance(port=1)  # nothing listens on port 1
    cred = instance.credential
    cred.set_password(SECRET)
    cred.save()
    with caplog.at_level(logging.DEBUG):
        result = instance_connection_test(instance=instance)
    assert not result.ok
    assert result.error_kind == "connection"
    assert instance.name in result.message
    assert SECRET not in result.message
    assert SECRET not in caplog.text

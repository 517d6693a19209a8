"""Instances and credentials: CRUD, the write-only password, filters and protected deletes."""

from __future__ import annotations

import pytest

from instances.models import Credential, Instance

pytestmark = pytest.mark.django_db


def test_credential_password_is_write_only_and_encrypted(api_client, alice):
    client = api_client(alice)
    created = client.post("/api/v1/credentials/", {"name": "mon", "username": "monitor", "password": "pw-Secret-9"})
    assert created.status_code == 201
    body = created.json()
    assert "password" not in body
    assert body["has_password"] is True
    cred = Credential.objects.get(pk=body["id"])
    assert cred.get_password() == "pw-Secret-9"
    assert "pw-Secret-9" not in cred.password_encrypted

    # omitted: kept; given: replaced
    client.patch(f"/api/v1/credentials/{cred.pk}/", {"description": "ops"})
    cred.refresh_from_db()
    assert cred.get_password() == "pw-Secret-9"
    client.patch(f"/api/v1/credentials/{cred.pk}/", {"password": "pw-New-10"})
    cred.refresh_from_db()
    assert cred.get_password() == "pw-New-10"
    assert "pw-New-10" not in client.get(f"/api/v1/credentials/{cred.pk}/").content.decode()
    # an empty password stores none, like the admin's "Clear password"
    assert client.patch(f"/api/v1/credentials/{cred.pk}/", {"password": ""}).json()["has_password"] is False
    cred.refresh_from_db()
    assert cred.get_password() == ""


def test_instance_crud_with_credential_by_id_and_tags_by_name(api_client, bob, make_credential):
    from instances.models import Tag

    cred = make_credential()
    cred.allowed_hosts = "*.example.com"  # an Operator may attach only a credential bound to where it goes
    cred.save()
    Tag.objects.create(name="prod")
    client = api_client(bob)
    created = client.post(
        "/api/v1/instances/",
        {"name": "pg1", "db_type": "postgresql", "host": "db.example.com", "credential": cred.pk, "tags": ["prod"]},
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["port"] == 5432  # the database type's default
    assert body["credential"] == cred.pk
    assert body["credential_name"] == cred.name
    assert body["tags"] == ["prod"]
    url = f"/api/v1/instances/{body['id']}/"
    assert client.patch(url, {"options": {"connect_timeout": 3}}).json()["options"] == {"connect_timeout": 3}
    assert Instance.objects.get(pk=body["id"]).connect_timeout == 3.0
    assert client.delete(url).status_code == 204
    assert not Instance.objects.filter(pk=body["id"]).exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"host": "http://bad host/"}, "host"),
        ({"port": 70000}, "port"),
        ({"db_type": "db2"}, "db_type"),
        ({"credential": 999999}, "credential"),
        ({"options": {"connect_timeout": "soon"}}, "options"),
        ({"options": [1, 2]}, "options"),
        ({"tags": ["no-such-tag"]}, "tags"),
    ],
)
def test_invalid_instance_fields_are_400_with_the_field_message(api_client, alice, make_credential, payload, field):
    cred = make_credential()
    body = {"name": "x", "db_type": "mysql", "host": "127.0.0.1", "credential": cred.pk, **payload}
    response = api_client(alice).post("/api/v1/instances/", body, format="json")
    assert response.status_code == 400
    data = response.json()
    assert data["code"] == "invalid"
    assert data[field] and isinstance(data[field], list)
    assert not Instance.objects.exists()


def test_deleting_an_instance_with_history_is_409_protected(api_client, alice, make_instance, make_history):
    instance = make_instance()
    make_history(instance, 1)
    response = api_client(alice).delete(f"/api/v1/instances/{instance.pk}/")
    assert response.status_code == 409
    assert response.json()["code"] == "protected"
    assert Instance.objects.filter(pk=instance.pk).exists()


def test_deleting_a_credential_in_use_is_409_protected(api_client, alice, make_instance):
    instance = make_instance()
    response = api_client(alice).delete(f"/api/v1/credentials/{instance.credential_id}/")
    assert response.status_code == 409
    assert response.json()["code"] == "protected"


def test_instance_filters_and_search(api_client, charlie, make_instance):
    make_instance(name="alpha-mysql", db_type="mysql")
    make_instance(name="beta-pg", db_type="postgresql", port=5432, is_active=False, environment="staging")
    client = api_client(charlie)

    def names(query: str) -> list[str]:
        response = client.get(f"/api/v1/instances/{query}")
        assert response.status_code == 200, response.json()
        return [row["name"] for row in response.json()["results"]]

    assert names("") == ["alpha-mysql", "beta-pg"]
    assert names("?db_type=postgresql") == ["beta-pg"]
    assert names("?is_active=true") == ["alpha-mysql"]
    assert names("?environment=staging") == ["beta-pg"]
    assert names("?search=alpha") == ["alpha-mysql"]
    assert names("?ordering=-name") == ["beta-pg", "alpha-mysql"]
    bad = client.get("/api/v1/instances/?db_type=db2")
    assert bad.status_code == 400
    assert "db_type" in bad.json()


def test_unknown_instance_is_404_json(api_client, alice):
    for url in ("/api/v1/instances/999999/", "/api/v1/instances/abc/", "/api/v1/instances/0.5/sync/"):
        response = api_client(alice).get(url)
        assert response.status_code == 404, url
        assert response.json()["code"] == "not_found"


def test_test_connection_reports_a_classified_failure(api_client, bob, unreachable_instance):
    instance = unreachable_instance()
    response = api_client(bob).post(f"/api/v1/instances/{instance.pk}/test-connection/")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is False
    assert body["error_kind"] == "connection"
    assert instance.name in body["message"]

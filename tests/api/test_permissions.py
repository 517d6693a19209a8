"""Who may do what through the API: the admin's roles (alice admin, bob operator, charlie viewer)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from sync.models import SyncSession
from tests.conftest import ROLE_PASSWORDS

pytestmark = pytest.mark.django_db

LISTS = [
    "/api/v1/credentials/",
    "/api/v1/instances/",
    "/api/v1/sync-sessions/",
    "/api/v1/accounts/",
    "/api/v1/change-logs/",
]


@pytest.mark.parametrize("url", LISTS)
def test_every_role_reads_every_list_and_anonymous_gets_401(url, api_client, alice, bob, charlie):
    for user in (alice, bob, charlie):
        assert api_client(user).get(url).status_code == 200, user.username
    response = api_client().get(url)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response.headers["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize("url", LISTS)
def test_a_user_without_a_role_is_refused(url, api_client, django_user_model):
    nobody = django_user_model.objects.create_user("nobody", password="nobody-Pa55-word")
    response = api_client(nobody).get(url)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_a_bad_token_is_401(api_client):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef0123456789abcdef01234567")
    response = client.get("/api/v1/instances/")
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


def test_session_authentication_works_like_the_admin_login(charlie):
    client = APIClient()
    assert client.login(username="charlie", password=ROLE_PASSWORDS["charlie"])
    assert client.get("/api/v1/instances/").status_code == 200
    assert client.post("/api/v1/sync-sessions/", {"all": True}, format="json").status_code == 403


def test_only_admins_manage_credentials(api_client, alice, bob, charlie):
    body = {"name": "c1", "username": "mon", "password": "pw-1"}
    for user in (bob, charlie):
        assert api_client(user).post("/api/v1/credentials/", body).status_code == 403
    assert api_client(alice).post("/api/v1/credentials/", body).status_code == 201


def test_operators_manage_instances_viewers_do_not(api_client, bob, charlie, make_credential):
    cred = make_credential()
    cred.allowed_hosts = "127.0.0.1"  # Operators attach only credentials bound to where they go
    cred.save()
    body = {"name": "db1", "db_type": "mysql", "host": "127.0.0.1", "credential": cred.pk}
    assert api_client(charlie).post("/api/v1/instances/", body).status_code == 403
    created = api_client(bob).post("/api/v1/instances/", body)
    assert created.status_code == 201
    url = f"/api/v1/instances/{created.json()['id']}/"
    assert api_client(charlie).patch(url, {"description": "x"}).status_code == 403
    assert api_client(charlie).delete(url).status_code == 403
    assert api_client(bob).patch(url, {"description": "x"}).status_code == 200
    assert api_client(bob).delete(url).status_code == 204


def test_starting_cancelling_and_retrying_need_run_sync(api_client, charlie, unreachable_instance, make_session):
    instance = unreachable_instance()
    session = make_session([instance], ["failed"])
    viewer = api_client(charlie)
    for url in (
        f"/api/v1/instances/{instance.pk}/sync/",
        "/api/v1/sync-sessions/",
        f"/api/v1/sync-sessions/{session.session_id}/cancel/",
        f"/api/v1/sync-sessions/{session.session_id}/retry-failed/",
    ):
        response = viewer.post(url, {"instance_ids": [instance.pk]} if url.endswith("sessions/") else {})
        assert response.status_code == 403, url
        assert "sync.run_sync" in response.json()["detail"]
    assert SyncSession.objects.count() == 1
    # nor test a connection: it connects out with the production credential and records the version
    response = viewer.post(f"/api/v1/instances/{instance.pk}/test-connection/")
    assert response.status_code == 403 and "sync.run_sync" in response.json()["detail"]


def test_anonymous_cannot_start_anything(api_client, unreachable_instance):
    instance = unreachable_instance()
    assert api_client().post(f"/api/v1/instances/{instance.pk}/sync/").status_code == 401
    assert api_client().post("/api/v1/sync-sessions/", {"all": True}).status_code == 401
    assert SyncSession.objects.count() == 0


def test_operator_starts_a_session(api_client, bob, unreachable_instance):
    instance = unreachable_instance()
    response = api_client(bob).post("/api/v1/sync-sessions/", {"instance_ids": [instance.pk]})
    assert response.status_code == 202
    assert response.json()["created_by"] == "bob"

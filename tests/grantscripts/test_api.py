"""The grant-script endpoints: text/plain scripts, JSON errors, permissions, audit."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent, AuditKind
from tests.grantscripts.conftest import PASSWORD, account

pytestmark = pytest.mark.django_db


def events(what: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(kind=AuditKind.EXPORT, details__kind=what).order_by("id"))


def test_account_script_for_a_viewer_is_text_and_audited(api_client, charlie, mysql_instance) -> None:
    user = account(mysql_instance, "app'x")
    response = api_client(charlie).get(f"/api/v1/accounts/{user.pk}/grant-script/", HTTP_ACCEPT="text/plain")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert response["Content-Disposition"] == f'attachment; filename="grant-script-account-{user.pk}.sql"'
    text = response.content.decode()
    assert "GRANT INSERT ON `sales`.* TO `app'x`@`%` WITH GRANT OPTION;" in text
    assert PASSWORD not in text
    [event] = events("grant_script")
    assert event.actor == charlie and event.via == "api" and event.object_id == str(user.pk)
    assert event.details["at"] is None


def test_account_script_at_a_time(api_client, charlie, mysql_instance) -> None:
    user = account(mysql_instance, "app'x")
    response = api_client(charlie).get(f"/api/v1/accounts/{user.pk}/grant-script/?at=2000-01-01T00:00:00Z")
    assert response.status_code == 200
    assert "no snapshot at that time" in response.content.decode()
    assert events("grant_script")[0].details["at"] == "2000-01-01T00:00:00+00:00"


def test_instance_script_streams_every_account(api_client, charlie, mysql_instance) -> None:
    response = api_client(charlie).get(f"/api/v1/instances/{mysql_instance.pk}/grant-script/")
    assert response.status_code == 200 and response.streaming
    text = b"".join(response.streaming_content).decode()
    assert "CREATE ROLE `reader`;" in text and "CREATE USER `app'x`@`%`" in text
    assert events("grant_script")[0].object_type == "instances.instance"


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/v1/accounts/999999/grant-script/", 404, "not_found"),
        ("/api/v1/instances/999999/grant-script/", 404, "not_found"),
        ("/api/v1/accounts/{account}/grant-script/?at=yesterday", 400, "invalid_datetime"),
        ("/api/v1/accounts/{account}/grant-script/?at=2026-13-45", 400, "invalid_datetime"),
    ],
)
def test_errors_are_json(api_client, charlie, mysql_instance, path, status, code) -> None:
    url = path.format(account=account(mysql_instance, "app'x").pk)
    response = api_client(charlie).get(url, HTTP_ACCEPT="text/plain")
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == code
    assert not events("grant_script")


def test_permissions(api_client, django_user_model, mysql_instance) -> None:
    user = account(mysql_instance, "app'x")
    assert api_client(None).get(f"/api/v1/accounts/{user.pk}/grant-script/").status_code == 401
    nobody = django_user_model.objects.create_user("nobody", password="x-Pa55-word-1")
    response = api_client(nobody).get(f"/api/v1/accounts/{user.pk}/grant-script/")
    assert response.status_code == 403 and response.json()["code"] == "permission_denied"
    response = api_client(nobody).post("/api/v1/grant-scripts/revoke/", {"account": user.pk, "roles": ["'reader'"]})
    assert response.status_code == 403
    assert not AuditEvent.objects.filter(kind=AuditKind.EXPORT).exists()


def test_revoke_script(api_client, charlie, mysql_instance) -> None:
    user = account(mysql_instance, "app'x")
    body = {
        "account": user.pk,
        "privileges": [{"scope": "database:sales", "privilege": "INSERT"}],
        "roles": ["'reader'"],
    }
    response = api_client(charlie).post("/api/v1/grant-scripts/revoke/", body, format="json")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert "REVOKE INSERT ON `sales`.* FROM `app'x`@`%`;" in text
    assert "REVOKE `reader` FROM `app'x`@`%`;" in text
    [event] = events("revoke_script")
    assert event.details["privileges"] == 1 and event.details["roles"] == 1


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"account": "{account}"}, "privileges", "empty"),
        ({"account": "{account}", "privileges": [{"scope": "bogus", "privilege": "SELECT"}]}, "privileges", "invalid"),
        ({"account": "{account}", "privileges": [{"scope": "database:sales"}]}, "privileges", "invalid"),
        ({"account": "{account}", "privileges": "SELECT"}, "privileges", "invalid"),
        ({"account": "{account}", "roles": ["no identity"]}, "roles", "invalid"),
        ({"account": 999999, "roles": ["'reader'"]}, "account", "invalid"),
        ({"account": "x", "roles": ["'reader'"]}, "account", "invalid"),
        ({"roles": ["'reader'"]}, "account", "required"),
    ],
)
def test_malformed_revoke_requests(api_client, charlie, mysql_instance, body, field, code) -> None:
    pk = account(mysql_instance, "app'x").pk
    body = {k: (pk if v == "{account}" else v) for k, v in body.items()}
    response = api_client(charlie).post("/api/v1/grant-scripts/revoke/", body, format="json")
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    payload = response.json()
    assert field in payload, payload
    assert not events("revoke_script")

"""No response of the API ever contains a credential's password, for any role or endpoint."""

from __future__ import annotations

import pytest

from tests.api.conftest import SECRET

pytestmark = pytest.mark.django_db


def test_no_response_contains_the_credential_password(
    api_client, alice, bob, charlie, make_credential, unreachable_instance, make_session, make_history
):
    cred = make_credential(name="scan", password=SECRET)
    instance = unreachable_instance("scan-db", credential=cred)
    make_history(instance, 2)
    session = make_session([instance], ["failed"])
    record = session.records.get()
    bodies: list[tuple[str, str, int, str]] = []

    def collect(user, method: str, url: str, data=None) -> None:
        client = api_client(user)
        response = (
            getattr(client, method)(url, data, format="json") if data is not None else getattr(client, method)(url)
        )
        bodies.append((user.username, url, response.status_code, response.content.decode()))

    for user in (alice, bob, charlie):
        for url in (
            "/api/v1/credentials/",
            f"/api/v1/credentials/{cred.pk}/",
            "/api/v1/instances/",
            f"/api/v1/instances/{instance.pk}/",
            "/api/v1/sync-sessions/",
            f"/api/v1/sync-sessions/{session.session_id}/",
            f"/api/v1/sync-records/?ids={record.pk}",
            f"/api/v1/sync-records/{record.pk}/",
            "/api/v1/accounts/",
            "/api/v1/change-logs/",
            "/api/schema/",
        ):
            collect(user, "get", url)
        collect(user, "post", f"/api/v1/instances/{instance.pk}/sync/", {})
        collect(user, "post", f"/api/v1/instances/{instance.pk}/test-connection/", {})
        collect(user, "post", "/api/v1/sync-sessions/", {"instance_ids": [instance.pk]})
    collect(alice, "post", "/api/v1/credentials/", {"name": "new", "username": "u", "password": SECRET})
    collect(alice, "patch", f"/api/v1/credentials/{cred.pk}/", {"password": SECRET})
    collect(alice, "post", "/api/v1/credentials/", {"name": "scan", "username": "u", "password": SECRET})  # 400

    statuses = {status for _, _, status, _ in bodies}
    assert {200, 201, 400, 403} <= statuses  # successes and errors were both scanned
    leaks = [(who, url) for who, url, _, body in bodies if SECRET in body]
    assert leaks == []

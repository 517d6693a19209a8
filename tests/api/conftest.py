"""API fixtures: token clients for alice/bob/charlie and instances that fail fast.

Instances point at a closed port on 127.0.0.1 with a one-second connect
timeout, so a sync or connection test started through the API fails for real
(connection refused) and quickly.
"""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.sync.conftest import closed_port

SECRET = "s3cr3t-Pa55"  # the password tests/conftest.py's make_credential stores


@pytest.fixture
def api_client():
    """``api_client(user)``: a client authenticated with the user's API token (None: anonymous)."""

    def make(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


@pytest.fixture
def unreachable_instance(make_instance):
    """An active instance on a closed local port: its syncs fail with a connection error at once."""

    def make(name: str = "unreachable", **kw):
        kw.setdefault("options", {"connect_timeout": 1})
        return make_instance(name=name, port=closed_port(), **kw)

    return make

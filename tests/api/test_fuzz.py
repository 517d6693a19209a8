"""Schemathesis over the generated OpenAPI schema: every operation, a bounded number of examples.

Each generated request goes through the real WSGI application (token auth as
alice, who may do everything). The checks: no 5xx, every status code, content
type and body is what the schema documents, and no response ever contains the
credential password. Syncs started here hit a closed local port (refused at
once); sessions are created but never enqueued (the test transaction never
commits, so their on_commit hooks never run).

Not checked: Schemathesis's negative_data_rejection. DRF and django-filter are
lenient on purpose (a number for a text field becomes text, an empty or
repeated filter value is ignored), and the API keeps those conventions.
"""

from __future__ import annotations

import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application
from tests.api.conftest import SECRET
from tests.sync.conftest import closed_port

MAX_EXAMPLES = 5

schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))


def no_secret_in_response(ctx, response, case) -> None:
    """The stored credential password must never come back, whatever was asked."""
    assert SECRET not in response.text, f"credential password in the response to {case.method} {case.path}"


@pytest.fixture
def keep_test_connection():
    """Like Django's test client: the WSGI handler must not close the test transaction's connection."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_data(keep_test_connection, alice, make_credential, make_instance):
    """A few rows for path ids to hit: a credential with a password, instances, a session with records."""
    from django.utils import timezone

    from accountsync.models import AccountChangeLog, AccountPermission, InstanceAccount
    from sync.services import sync_session_start

    cred = make_credential(name="fuzz-cred", password=SECRET)
    instances = [
        make_instance(name=f"fuzz-{i}", port=closed_port(), credential=cred, options={"connect_timeout": 1})
        for i in range(1, 4)
    ]
    sync_session_start(instances=instances[:2], sync_type="manual_batch", created_by=alice, enqueue=False)
    now = timezone.now()
    account = InstanceAccount.objects.create(
        instance=instances[0], identity="'app'@'%'", username="app", host="%", first_seen_at=now, last_seen_at=now
    )
    AccountPermission.objects.create(
        account=account,
        instance=instances[0],
        snapshot={"privileges": []},
        digest="0" * 64,
        collected_at=now,
        valid_from=now,
    )
    AccountChangeLog.objects.create(
        instance=instances[0], account=account, change_type="added", summary="added", detected_at=now
    )
    return Token.objects.get_or_create(user=alice)[0].key


@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_conforms_to_its_schema(case, fuzz_data):
    case.call_and_validate(
        app=application,
        headers={"Authorization": f"Token {fuzz_data}"},
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
        additional_checks=[no_secret_in_response],
    )

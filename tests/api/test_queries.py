"""List endpoints run the same number of queries for 3 rows as for a full page."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

pytestmark = pytest.mark.django_db

# token lookup, user permissions (user + groups), count, page, and at most two prefetches
MAX_QUERIES = 8


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, response.json()
    return len(ctx.captured_queries)


@pytest.fixture
def populate(make_instance, make_history, make_session, make_credential):
    """``populate(n)``: n more instances (with tags), each with 1 account and a session of its own."""
    from instances.models import Tag

    tags = [Tag.objects.get_or_create(name=f"t{i}")[0] for i in range(2)]
    counter = {"n": 0}

    def grow(n: int) -> None:
        for _ in range(n):
            counter["n"] += 1
            instance = make_instance(name=f"q{counter['n']}", credential=make_credential(name=f"c{counter['n']}"))
            instance.tags.set(tags)
            make_history(instance, 1, prefix=f"a{counter['n']}_")
            make_session([instance], ["completed"])

    return grow


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/instances/",
        "/api/v1/credentials/",
        "/api/v1/sync-sessions/",
        "/api/v1/accounts/",
        "/api/v1/change-logs/",
    ],
)
def test_list_query_count_does_not_grow_with_the_page(url, api_client, alice, populate, django_assert_max_num_queries):
    client = api_client(alice)
    populate(3)
    client.get(url)  # warm caches that are per process, not per request (content types)
    small = _queries(client, url)
    populate(17)
    full = _queries(client, url)
    assert full == small
    with django_assert_max_num_queries(MAX_QUERIES):
        assert len(client.get(url).json()["results"]) == 20


def test_session_detail_and_batch_details_are_constant(api_client, alice, populate, make_session, make_instance):
    from sync.models import SyncInstanceRecord

    client = api_client(alice)
    few = make_session([make_instance(name=f"d{i}") for i in range(2)])
    many = make_session([make_instance(name=f"e{i}") for i in range(15)])
    assert _queries(client, f"/api/v1/sync-sessions/{few.session_id}/") == _queries(
        client, f"/api/v1/sync-sessions/{many.session_id}/"
    )
    ids_few = ",".join(str(pk) for pk in SyncInstanceRecord.objects.filter(session=few).values_list("pk", flat=True))
    ids_many = ",".join(str(pk) for pk in SyncInstanceRecord.objects.filter(session=many).values_list("pk", flat=True))
    assert _queries(client, f"/api/v1/sync-records/?ids={ids_few}") == _queries(
        client, f"/api/v1/sync-records/?ids={ids_many}"
    )

"""End to end on a real `manage.py qcluster`: the sync commits, a worker posts, the receiver
fails once, django-q2's scheduler runs the retry, the delivery ends sent."""

from __future__ import annotations

import pytest

from alerts.models import AlertChannel, AlertDelivery
from sync.services import sync_accounts
from tests.alerts.conftest import account
from tests.cluster.conftest import qcluster, wait_for  # noqa: F401 - the fixture is used by name

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


def test_a_real_worker_delivers_and_retries_after_a_failure(server, make_instance, receiver, qcluster):  # noqa: F811
    AlertChannel.objects.create(name="ops", kind="webhook", webhook_url=receiver.url)
    inst = make_instance()
    server.accounts = [account("dba")]
    assert sync_accounts(instance=inst, sync_type="manual_single")["success"]
    server.accounts = [account("dba", superuser=True)]
    receiver.statuses = [500]
    result = sync_accounts(instance=inst, sync_type="manual_single")  # queued on commit, returns at once
    assert result["success"] and result["details"]["alerts"] == {"escalations": 1, "deliveries": 1}
    assert receiver.requests == []  # nothing was sent by the sync itself

    cluster = qcluster(workers=1, WHALEFALL_ALERT_BACKOFF_SECONDS="1")
    wait_for(lambda: len(receiver.requests) >= 1, 60, "the first attempt", cluster)
    # the retry is a django-q2 schedule, which the cluster's scheduler checks about every 30 s
    wait_for(lambda: AlertDelivery.objects.get().status == "sent", 100, "the retry to be sent", cluster)
    delivery = AlertDelivery.objects.get()
    assert (delivery.attempts, delivery.last_error) == (2, "")
    assert len(receiver.requests) == 2 and receiver.bodies()[0] == receiver.bodies()[1]
    assert receiver.bodies()[1]["account"]["identity"] == "'dba'@'localhost'"

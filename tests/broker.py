"""A task broker that is down for real: django-q2's Redis broker pointed at a closed local port.

``async_task`` then fails the way it does in production when Redis is unreachable
(``redis.ConnectionError`` from the push), with nothing of WhaleFall's own mocked.
django-q2 reads ``Q_CLUSTER`` once, into ``django_q.conf.Conf`` at import, and
``get_broker`` builds a broker from ``Conf`` on every call (no cache), so both the
setting and the ``Conf`` values are switched, and restored after the test.

The broker errors surface from ``transaction.on_commit``, which never runs inside a
test's wrapping transaction: tests that use this need ``django_db(transaction=True)``.
"""

from __future__ import annotations

import pytest
from django_q.conf import Conf

from tests.sync.conftest import closed_port


@pytest.fixture
def broker_down(settings, monkeypatch) -> str:
    """Point django-q2 at Redis on a closed port; returns the broker URL."""
    url = f"redis://127.0.0.1:{closed_port()}/0"
    cluster = {k: v for k, v in settings.Q_CLUSTER.items() if k != "orm"}
    settings.Q_CLUSTER = {**cluster, "redis": url}
    for name, value in (("ORM", None), ("REDIS", url), ("DJANGO_REDIS", None), ("BROKER_CLASS", None)):
        monkeypatch.setattr(Conf, name, value)
    monkeypatch.setattr(Conf, "SYNC", False)
    return url


@pytest.fixture
def role_groups_back(db) -> None:
    """Recreate the role groups a transactional test's flush removed (see tests/admin/conftest.py)."""
    from sync.roles import ensure_role_groups

    ensure_role_groups()

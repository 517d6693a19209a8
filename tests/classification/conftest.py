"""Fixtures shared with the API and admin tests: token clients, logged-in role clients, the role groups."""

import importlib

import pytest

from tests.admin.conftest import client_for, role_groups  # noqa: F401
from tests.api.conftest import api_client  # noqa: F401
from tests.broker import broker_down  # noqa: F401
from tests.browser.conftest import admin_login, page  # noqa: F401  (the browser fixture is the session one, tests/conftest.py)
from tests.livedb import mariadb_admin, postgres_admin, unique_prefix  # noqa: F401


@pytest.fixture(autouse=True)
def shipped_defaults(request):
    """The six shipped categories with their rules, as migration 0002 makes them, for every database test here.

    A transactional test elsewhere (the browser tests) flushes the tables, the shipped defaults
    with them, and these tests read them; get_or_create keeps this a no-op when they are there.
    """
    if request.node.get_closest_marker("django_db") is None:
        return
    request.getfixturevalue("transactional_db" if "live_server" in request.fixturenames else "db")
    from django.apps import apps

    defaults = importlib.import_module("classification.migrations.0002_defaults")
    defaults.create_defaults(apps, None)

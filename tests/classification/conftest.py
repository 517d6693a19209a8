"""Fixtures shared with the API and admin tests: token clients, logged-in role clients, the role groups."""

from tests.admin.conftest import client_for, role_groups  # noqa: F401
from tests.api.conftest import api_client  # noqa: F401
from tests.broker import broker_down  # noqa: F401
from tests.browser.conftest import admin_login, browser, page  # noqa: F401
from tests.livedb import mariadb_admin, postgres_admin, unique_prefix  # noqa: F401

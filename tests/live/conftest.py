"""Live fixtures live in tests/livedb.py; re-exported for imports from here."""

from tests.livedb import mariadb_admin, postgres_admin, unique_prefix  # noqa: F401

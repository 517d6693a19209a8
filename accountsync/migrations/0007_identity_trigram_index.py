"""A trigram index on the account identity (PostgreSQL), so "anywhere in the identity" is indexed.

Why: every list keyed by account (change log, findings, snapshots) resolves its search text to
account ids first (accountsync.selectors.account_ids_matching), which is an ``icontains`` over the
accounts table; on a million accounts that is a sequential scan without this index. pg_trgm is a
trusted extension (PostgreSQL 13+), so the database owner may create it; when the role may not,
the migration says so and goes on: the search still works, only slower (docs/operations.md).
Other databases get nothing: SQLite's tables are small, and MySQL is not an app database here.
"""

from django.db import DatabaseError, migrations, transaction

INDEX = "acct_identity_trgm_idx"


def forwards(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        try:
            with transaction.atomic(using=connection.alias):
                cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except DatabaseError as exc:
            print(f"\n  pg_trgm not available ({exc}); account search runs unindexed (docs/operations.md)")
            return
        cursor.execute(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON accountsync_instanceaccount "
            "USING gin ((UPPER(identity::text)) gin_trgm_ops)"
        )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("accountsync", "0006_coverage_gaps")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]

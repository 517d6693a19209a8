"""A GIN index on the capabilities of the open snapshots (PostgreSQL), for the grant_admin / wildcard_host filters.

Why: the account list's capability filters (accountsync.selectors.account_capability_filter) ask for
accounts whose current snapshot's ``capabilities`` array contains a name. Without an index PostgreSQL
reads every open snapshot's JSON to find the few that do (0.66 s and more on a million accounts, most
of it for the capped count). The index is on exactly the expression Django writes for
``snapshot__capabilities__contains`` (``snapshot -> 'capabilities'``), ``jsonb_path_ops`` (it serves
``@>`` only, and is smaller than the default class), and partial on ``valid_to IS NULL``, the filter's
other condition, so closed history rows do not grow it. Other databases get nothing: SQLite matches the
array's text, and its tables are small.
"""

from django.db import migrations

INDEX = "perm_open_caps_gin"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON accountsync_accountpermission "
            "USING gin ((snapshot -> 'capabilities') jsonb_path_ops) WHERE valid_to IS NULL"
        )
        # statistics on the new expression now, not at the next autovacuum: until then the planner guesses
        cursor.execute("ANALYZE accountsync_accountpermission")


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("accountsync", "0009_server_facts_backfill")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]

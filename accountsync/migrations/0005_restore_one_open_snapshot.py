"""Put back the partial unique index `accountsync_one_open_snapshot` where 0004 dropped it.

Why it went missing: 0004 turns `db_index` off on `AccountPermission.account`. For that,
Django's `BaseDatabaseSchemaEditor._alter_field` drops *every* btree index the database reports
on exactly that one column, except the names in `Meta.indexes` (it cannot tell a `db_index`
index from another by anything but its name, Django ticket #28053). `Meta.constraints` are not
excluded. On PostgreSQL a conditional `UniqueConstraint` is no table constraint but a plain
`CREATE UNIQUE INDEX ... WHERE valid_to IS NULL` on `(account_id)`, so introspection reports it as
a btree index on that column and 0004 ran `DROP INDEX IF EXISTS "accountsync_one_open_snapshot"`
along with `accountsync_accountpermission_account_id_9f677106`. The migration state still holds
the constraint, so `makemigrations` saw nothing wrong. SQLite kept it: its `AlterField` rebuilds
the table and re-creates every index and constraint from the model state.

So the database may or may not have the index, and the state already has it: this migration
only touches the schema (no state operation), drops the index if it is there and creates it
from the model's own constraint, so every backend ends with the definition the model declares.
Running it again (e.g. after `migrate accountsync 0004`) gives the same result. Backends
without partial indexes (MySQL) never create the constraint, and Django skips it there too.

If a PostgreSQL database collected two open snapshots for one account while the index was
missing, the re-creation fails; the error names the accounts, and which snapshot stays open is
an operator's decision (history is never rewritten here).
"""

from django.db import migrations
from django.db.models import Count

CONSTRAINT_NAME = "accountsync_one_open_snapshot"


def restore_one_open_snapshot(apps, schema_editor):
    model = apps.get_model("accountsync", "AccountPermission")
    constraint = next(c for c in model._meta.constraints if c.name == CONSTRAINT_NAME)
    connection = schema_editor.connection
    if not connection.features.supports_partial_indexes:
        return
    with connection.cursor() as cursor:
        present = CONSTRAINT_NAME in connection.introspection.get_constraints(cursor, model._meta.db_table)
    if present:
        schema_editor.remove_constraint(model, constraint)
    else:
        duplicates = list(
            model.objects.using(connection.alias)
            .filter(valid_to__isnull=True)
            .values("account_id")
            .annotate(n=Count("id"))
            .filter(n__gt=1)
            .values_list("account_id", flat=True)[:20]
        )
        if duplicates:
            raise RuntimeError(
                f"cannot restore {CONSTRAINT_NAME}: accounts with more than one open permission snapshot "
                f"(valid_to IS NULL): {duplicates}; close all but one of each, then migrate again"
            )
    schema_editor.add_constraint(model, constraint)


class Migration(migrations.Migration):
    dependencies = [
        ("accountsync", "0004_drop_covered_fk_indexes"),
    ]

    operations = [
        migrations.RunPython(restore_one_open_snapshot, migrations.RunPython.noop, elidable=False),
    ]

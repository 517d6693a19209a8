"""The database has every constraint and index the models declare (issue 18).

Migration state and the real schema can disagree: on PostgreSQL, accountsync 0004's `AlterField`
dropped the partial unique index `accountsync_one_open_snapshot` while the state kept it, and
`makemigrations` saw nothing. So this compares the models (not the migrations) with what the
database reports after `migrate`, on whichever backend the suite runs on (SQLite by default,
PostgreSQL with DATABASE_URL=postgres://...).

Matched by name where the model gives one (Meta.constraints, Meta.indexes), by columns and
uniqueness where Django names it (unique fields, unique_together, db_index fields, foreign
keys, primary keys). Whether an index is partial is read from the catalog (pg_index.indpred,
SQLite's PRAGMA index_list), since Django's introspection reports a partial unique index as a
plain unique one on SQLite. A field with db_index=False expects no index of its own: the models
say a composite index already leads with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings
from django.db import IntegrityError, connection, models, transaction
from django.utils import timezone

ROOT = Path(settings.BASE_DIR).resolve()
OWN_APPS = {"instances", "accountsync", "sync", "findings", "alerts"}  # apps that have models today


def project_models() -> list[type[models.Model]]:
    """Every concrete, managed model (auto-created M2M tables included) of the apps in this repository."""
    venv = ROOT / ".venv"
    found = []
    for config in apps.get_app_configs():
        path = Path(config.path).resolve()
        if not path.is_relative_to(ROOT) or path.is_relative_to(venv):
            continue
        for model in config.get_models(include_auto_created=True):
            opts = model._meta
            if opts.managed and not opts.proxy and not opts.swapped:
                found.append(model)
    return found


@dataclass(frozen=True)
class Expected:
    what: str  # "unique constraint", "check constraint", "index", "unique", "db_index", "foreign key", "primary key"
    columns: tuple[str, ...]
    name: str | None = None  # given by the model: match by name
    unique: bool = False
    partial: bool = False
    references: tuple[str, str] | None = None  # (table, column) for a foreign key

    def describe(self, model) -> str:
        name = f" {self.name!r}" if self.name else ""
        where = " (partial)" if self.partial else ""
        return f"{model._meta.label}: {self.what}{name} on {model._meta.db_table}({', '.join(self.columns)}){where}"


def _columns(model, field_names) -> tuple[str, ...]:
    return tuple(model._meta.get_field(name.lstrip("-")).column for name in field_names)


def expected_for(model) -> list[Expected]:
    """What the model declares, as the current backend should have created it."""
    opts = model._meta
    features = connection.features
    out = [Expected("primary key", (opts.pk.column,))]
    for constraint in opts.constraints:
        if isinstance(constraint, models.UniqueConstraint):
            if constraint.condition is not None and not features.supports_partial_indexes:
                continue  # Django does not create it there (MySQL), by design
            out.append(
                Expected(
                    "unique constraint",
                    _columns(model, constraint.fields) if constraint.fields else (),
                    name=constraint.name,
                    unique=True,
                    partial=constraint.condition is not None,
                )
            )
        elif isinstance(constraint, models.CheckConstraint):
            if features.supports_table_check_constraints:
                out.append(Expected("check constraint", (), name=constraint.name))
        else:  # pragma: no cover - a new kind of constraint needs a rule here
            raise AssertionError(f"{opts.label}: no rule for {type(constraint).__name__} {constraint.name!r}")
    for index in opts.indexes:
        if index.condition is not None and not features.supports_partial_indexes:
            continue
        out.append(
            Expected(
                "index",
                _columns(model, index.fields) if index.fields else (),
                name=index.name,
                partial=index.condition is not None,
            )
        )
    for fields in opts.unique_together:
        out.append(Expected("unique_together", _columns(model, fields), unique=True))
    for field in opts.local_concrete_fields:
        if field.primary_key:
            continue
        if field.unique:
            out.append(Expected("unique", (field.column,), unique=True))
        elif field.db_index:
            out.append(Expected("db_index", (field.column,)))
        if field.remote_field is not None and field.db_constraint and features.supports_foreign_keys:
            target = field.target_field
            out.append(
                Expected("foreign key", (field.column,), references=(target.model._meta.db_table, target.column))
            )
    return out


def partial_index_names(cursor, table: str) -> set[str]:
    """Names of the table's partial indexes, from the catalog (introspection does not say)."""
    if connection.vendor == "postgresql":
        cursor.execute(
            "SELECT ic.relname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
            "JOIN pg_class tc ON tc.oid = i.indrelid "
            "WHERE tc.relname = %s AND tc.relnamespace = current_schema()::regnamespace AND i.indpred IS NOT NULL",
            [table],
        )
        return {row[0] for row in cursor.fetchall()}
    if connection.vendor == "sqlite":
        cursor.execute(f"PRAGMA index_list({connection.ops.quote_name(table)})")
        return {row[1] for row in cursor.fetchall() if row[4]}  # seq, name, unique, origin, partial
    return set()


def _matches(expected: Expected, info: dict, partial: bool) -> bool:
    if expected.what == "primary key":
        return bool(info["primary_key"]) and tuple(info["columns"]) == expected.columns
    if expected.what == "check constraint":
        return bool(info["check"])
    if expected.what == "foreign key":
        return (
            info["foreign_key"] is not None
            and tuple(info["foreign_key"]) == expected.references
            and tuple(info["columns"]) == expected.columns
        )
    if partial != expected.partial:
        return False
    if expected.columns and tuple(info["columns"]) != expected.columns:
        return False
    if expected.unique:
        return bool(info["unique"]) and not info["primary_key"]
    # a plain index: not unique, and an index (not a constraint)
    return bool(info["index"]) and not info["unique"] and not info["primary_key"]


def schema_problems(model) -> list[str]:
    """One line per declared constraint or index the database does not have as declared."""
    table = model._meta.db_table
    with connection.cursor() as cursor:
        actual = connection.introspection.get_constraints(cursor, table)
        partial = partial_index_names(cursor, table)
    problems = []
    for expected in expected_for(model):
        if expected.name is not None:
            info = actual.get(expected.name)
            if info is None:
                problems.append(f"{expected.describe(model)}: missing")
            elif not _matches(expected, info, expected.name in partial):
                found = "partial " if expected.name in partial else ""
                problems.append(f"{expected.describe(model)}: differs, the database has {found}{info}")
        elif not any(_matches(expected, info, name in partial) for name, info in actual.items()):
            problems.append(f"{expected.describe(model)}: missing")
    return problems


MODELS = project_models()


def test_models_of_every_own_app_are_compared():
    labels = {model._meta.app_label for model in MODELS}
    assert labels >= OWN_APPS, f"project_models() lost apps: {sorted(OWN_APPS - labels)}"
    assert all(not Path(apps.get_app_config(label).path).is_relative_to(ROOT / ".venv") for label in labels)
    assert {"auth", "contenttypes", "django_q", "admin"}.isdisjoint(labels)
    if connection.features.supports_partial_indexes:
        permission = next(m for m in MODELS if m._meta.label == "accountsync.AccountPermission")
        one_open = Expected(
            "unique constraint", ("account_id",), "accountsync_one_open_snapshot", unique=True, partial=True
        )
        assert one_open in expected_for(permission)


@pytest.mark.django_db
@pytest.mark.parametrize("model", MODELS, ids=lambda model: model._meta.label)
def test_database_has_what_the_model_declares(model):
    problems = schema_problems(model)
    assert not problems, f"{connection.vendor}: declared but not in the database:\n" + "\n".join(problems)


@pytest.mark.django_db
def test_a_dropped_partial_unique_index_is_reported():
    """The comparison is not vacuous: drop the index as 0004 did on PostgreSQL (rolled back with the test)."""
    from accountsync.models import AccountPermission

    if not connection.features.supports_partial_indexes:
        pytest.skip("no partial indexes on this backend")
    assert schema_problems(AccountPermission) == []
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX {connection.ops.quote_name('accountsync_one_open_snapshot')}")
    assert schema_problems(AccountPermission) == [
        "accountsync.AccountPermission: unique constraint 'accountsync_one_open_snapshot' on "
        "accountsync_accountpermission(account_id) (partial): missing"
    ]


@pytest.mark.django_db
def test_a_full_unique_index_in_place_of_a_partial_one_is_reported():
    """A unique index over the same column without the WHERE is not the declared constraint."""
    from accountsync.models import AccountPermission

    if not connection.features.supports_partial_indexes:
        pytest.skip("no partial indexes on this backend")
    name = connection.ops.quote_name("accountsync_one_open_snapshot")
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX {name}")
        cursor.execute(f"CREATE UNIQUE INDEX {name} ON accountsync_accountpermission (account_id)")
    (problem,) = schema_problems(AccountPermission)
    assert problem.startswith("accountsync.AccountPermission: unique constraint 'accountsync_one_open_snapshot'")
    assert ": differs, the database has {" in problem


def _account(make_instance):
    from accountsync.models import InstanceAccount

    now = timezone.now()
    instance = make_instance()
    account = InstanceAccount.objects.create(
        instance=instance, identity="app@%", username="app", host="%", first_seen_at=now, last_seen_at=now
    )
    return instance, account, now


def test_two_open_snapshots_of_one_account_are_refused(make_instance):
    """Behavioural proof of accountsync_one_open_snapshot: closed rows may pile up, open ones may not."""
    from accountsync.models import AccountPermission

    if not connection.features.supports_partial_indexes:
        pytest.skip("no partial indexes on this backend")
    instance, account, now = _account(make_instance)

    def snapshot(valid_from, valid_to=None):
        return AccountPermission.objects.create(
            account=account,
            instance=instance,
            snapshot={},
            digest="0" * 64,
            collected_at=valid_from,
            valid_from=valid_from,
            valid_to=valid_to,
        )

    snapshot(now - timedelta(days=2), now - timedelta(days=1))
    snapshot(now - timedelta(days=1), now)
    snapshot(now)
    with pytest.raises(IntegrityError), transaction.atomic():
        snapshot(now + timedelta(seconds=1))
    assert AccountPermission.objects.filter(account=account, valid_to__isnull=True).count() == 1


def test_two_open_findings_of_one_rule_are_refused(make_instance):
    """The other partial unique the sync relies on, findings_one_open_per_rule, holds too."""
    from findings.models import Finding

    if not connection.features.supports_partial_indexes:
        pytest.skip("no partial indexes on this backend")
    instance, account, now = _account(make_instance)

    def finding(rule_code, is_open=True):
        return Finding.objects.create(
            instance=instance,
            account=account,
            rule_code=rule_code,
            severity="high",
            first_seen_at=now,
            is_open=is_open,
            resolved_at=None if is_open else now,
        )

    finding("superuser", is_open=False)
    finding("superuser", is_open=False)
    finding("superuser")
    finding("no_password")
    with pytest.raises(IntegrityError), transaction.atomic():
        finding("superuser")

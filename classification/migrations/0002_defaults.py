"""The shipped, editable default classifications and their rules (docs/classification.md, "Defaults")."""

from django.db import migrations
from django.utils import timezone

WRITE = ["INSERT", "UPDATE", "DELETE", "TRUNCATE", "MERGE", "ALL PRIVILEGES", "CONTROL", "INSERT ANY TABLE",
         "UPDATE ANY TABLE", "DELETE ANY TABLE"]  # fmt: skip
READ = ["SELECT", "ALL PRIVILEGES", "CONTROL", "SELECT ANY TABLE", "READ ANY TABLE"]

DEFAULTS = [
    (
        "superuser",
        "Superuser-equivalent",
        6,
        "#b71c1c",
        "Holds SUPERUSER directly or through roles (MySQL ALL/SUPER on *.*, PostgreSQL SUPERUSER, "
        "SQL Server sysadmin/CONTROL SERVER, Oracle DBA, ...).",
        {"has_capability": "SUPERUSER"},
    ),
    (
        "can-grant",
        "Can grant",
        5,
        "#e65100",
        "Can give privileges to others: GRANT_ADMIN, or a privilege held WITH GRANT OPTION.",
        {"any": [{"has_capability": "GRANT_ADMIN"}, {"has_privilege": {"privilege": "*", "grantable": True}}]},
    ),
    (
        "writes-production",
        "Writes production data",
        4,
        "#f9a825",
        "On a production instance: may insert, update or delete rows (or is a superuser).",
        {
            "all": [
                {"environment": "production"},
                {"any": [{"has_capability": "SUPERUSER"}, {"has_privilege": {"privilege": WRITE}}]},
            ]
        },
    ),
    (
        "reads-production",
        "Reads production data",
        3,
        "#1565c0",
        "On a production instance: may read rows (or is a superuser).",
        {
            "all": [
                {"environment": "production"},
                {"any": [{"has_capability": "SUPERUSER"}, {"has_privilege": {"privilege": READ}}]},
            ]
        },
    ),
    (
        "locked-expired",
        "Locked or expired",
        2,
        "#607d8b",
        "Locked, or its password or validity has expired.",
        {"any": [{"locked": True}, {"expired": True}]},
    ),
    (
        "unused-role",
        "Unused roles",
        1,
        "#9e9e9e",
        "Roles that no account or role holds.",
        {"all": [{"kind": "role"}, {"is_held": False}, {"not": {"name": ["public", "PUBLIC"]}}]},
    ),
]


def create_defaults(apps, schema_editor):
    Classification = apps.get_model("classification", "Classification")
    Rule = apps.get_model("classification", "ClassificationRule")
    Version = apps.get_model("classification", "ClassificationRuleVersion")
    now = timezone.now()
    for code, name, risk, color, description, expression in DEFAULTS:
        category, created = Classification.objects.get_or_create(
            code=code, defaults={"name": name, "risk_level": risk, "color": color, "description": description}
        )
        if not created:
            continue
        rule = Rule.objects.create(
            classification=category, name=name, db_type="", expression=expression, version=1, updated_at=now
        )
        Version.objects.create(
            rule=rule, version=1, name=name, db_type="", expression=expression, is_enabled=True,
            comment="shipped default", created_at=now,
        )  # fmt: skip


def remove_defaults(apps, schema_editor):
    Classification = apps.get_model("classification", "Classification")
    Classification.objects.filter(code__in=[d[0] for d in DEFAULTS]).delete()


class Migration(migrations.Migration):
    dependencies = [("classification", "0001_initial")]

    operations = [migrations.RunPython(create_defaults, remove_defaults)]

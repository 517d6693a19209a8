# Server facts stored once per version, not in every sync record (accountsync/facts.py).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accountsync", "0007_identity_trigram_index"),
        ("instances", "0006_empty_passwords_stored_as_none"),
    ]

    operations = [
        migrations.CreateModel(
            name="InstanceServerFacts",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("facts", models.JSONField(verbose_name="facts")),
                ("digest", models.CharField(max_length=64, verbose_name="digest")),
                ("valid_from", models.DateTimeField(verbose_name="valid from")),
                ("valid_to", models.DateTimeField(blank=True, null=True, verbose_name="valid to")),
                ("session_id", models.UUIDField(blank=True, null=True, verbose_name="first seen in session")),
                (
                    "instance",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="server_facts",
                        to="instances.instance",
                        verbose_name="instance",
                    ),
                ),
            ],
            options={
                "verbose_name": "server facts",
                "verbose_name_plural": "server facts",
                "ordering": ["instance_id", "-valid_from"],
                "indexes": [models.Index(fields=["instance", "valid_from"], name="facts_instance_from_idx")],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("valid_to__isnull", True)),
                        fields=("instance",),
                        name="accountsync_one_open_facts",
                    )
                ],
            },
        ),
    ]

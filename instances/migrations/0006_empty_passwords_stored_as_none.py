"""Empty passwords stored as none, and the options help text that lists each database type's keys.

Credentials saved with an empty password through the admin's add form held an encrypted empty string.

``Credential.set_password("")`` now stores nothing (``has_password`` false, shown as "empty password");
this clears the encrypted empty strings already stored, so old and new rows read the same. A password
that does not decrypt with the configured keys is left as it is.
"""

from django.db import migrations, models


def clear_encrypted_empty_passwords(apps, schema_editor):
    from instances.crypto import CredentialDecryptError, decrypt

    Credential = apps.get_model("instances", "Credential")
    empty = []
    for pk, token in Credential.objects.exclude(password_encrypted="").values_list("pk", "password_encrypted"):
        try:
            if decrypt(token) == "":
                empty.append(pk)
        except CredentialDecryptError:
            continue
    if empty:
        Credential.objects.filter(pk__in=empty).update(password_encrypted="")


class Migration(migrations.Migration):
    dependencies = [("instances", "0005_credential_tls_client")]

    operations = [
        migrations.RunPython(clear_encrypted_empty_passwords, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="instance",
            name="options",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text=(
                    'A JSON object. Every type: {"connect_timeout": 5} (seconds, default 5), "query_timeout" '
                    '(seconds, default 300), "tls": {"mode": "verify-full", "ca": "-----BEGIN CERTIFICATE-----…"} '
                    '(modes: disable, require, verify-ca, verify-full). PostgreSQL: {"databases": ["sales", '
                    '"postgres"]} (default: every database). SQL Server: {"database_batch_size": 50, '
                    '"availability_group": true}. Oracle: {"include_oracle_maintained": false} (default true). '
                    "Unknown keys are refused; see docs/monitoring-accounts.md."
                ),
                verbose_name="options",
            ),
        ),
    ]

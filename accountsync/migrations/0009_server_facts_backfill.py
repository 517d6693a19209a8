"""Versions of the server facts that old sync records carried inline (accountsync/facts.py).

Why: before 0008 each successful record copied the instance's server-wide facts (PUBLIC's
grants, ...) into its details; the point-in-time readers (effective access through Oracle's
PUBLIC at a moment) now read InstanceServerFacts, so the moments before the upgrade need
versions too. Each instance's completed records are walked in order and a version starts
wherever the facts' digest changes. The records are left as they are (history is not
rewritten; `record_server_facts` reads their inline form). Reversing deletes nothing the
records need: it removes the versions again.
"""

import hashlib
import json

from django.db import migrations

# frozen copy of accountsync.facts.SERVER_FACT_KEYS as of this migration
KEYS = (
    "default_password_lifetime",
    "public_grants",
    "container",
    "unreadable_views",
    "pdbs_read",
    "pdbs_not_read",
    "container_public_grants",
)


def _digest(facts):
    text = json.dumps(facts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def forwards(apps, schema_editor):
    Record = apps.get_model("sync", "SyncInstanceRecord")
    Facts = apps.get_model("accountsync", "InstanceServerFacts")
    already = set(Facts.objects.values_list("instance_id", flat=True).distinct())
    rows = (
        Record.objects.filter(status="completed", instance_id__isnull=False, details__has_any_keys=list(KEYS))
        .exclude(instance_id__in=already)
        .order_by("instance_id", "completed_at", "id")
        .values_list("instance_id", "completed_at", "started_at", "created_at", "session_id", "details")
    )
    pending = []
    current = None  # (instance_id, digest, version)
    for instance_id, completed_at, started_at, created_at, session_id, details in rows.iterator(chunk_size=200):
        if not isinstance(details, dict):
            continue
        facts = {k: details[k] for k in KEYS if k in details}
        at = completed_at or started_at or created_at
        digest = _digest(facts)
        if current is not None and current[0] == instance_id:
            if current[1] == digest:
                continue
            current[2].valid_to = at
        version = Facts(instance_id=instance_id, facts=facts, digest=digest, valid_from=at, session_id=session_id)
        pending.append(version)
        current = (instance_id, digest, version)
        if len(pending) >= 200:
            # the last one may still be closed by the next record: keep it back
            Facts.objects.bulk_create(pending[:-1])
            pending = pending[-1:]
    Facts.objects.bulk_create(pending)


def backwards(apps, schema_editor):
    apps.get_model("accountsync", "InstanceServerFacts").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accountsync", "0008_server_facts"),
        ("sync", "0008_record_error_code"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]

"""Create or update WhaleFall's django-q2 schedules, by name (idempotent)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django_q.models import Schedule

SCHEDULES = {
    "whalefall: daily account sync": {
        "func": "sync.tasks.run_scheduled_sync",
        "schedule_type": Schedule.CRON,
        "cron_setting": "WHALEFALL_SYNC_CRON",
    },
    "whalefall: reap stale sync records": {
        "func": "sync.tasks.reap_stale_records",
        "schedule_type": Schedule.MINUTES,
        "minutes": 1,
    },
    # named as a string, like config/urls.py names api.urls: sync never imports alerts (docs/alerts.md)
    "whalefall: operational alert check": {
        "func": "alerts.tasks.check_operational_alerts",
        "schedule_type": Schedule.MINUTES,
        "minutes": 15,
    },
    # people and groups from LDAP/AD, then every instance relinked (docs/directory.md); a string, as above
    "whalefall: directory sync": {
        "func": "directory.tasks.run_directory_sync",
        "schedule_type": Schedule.MINUTES,
        "minutes": 60,
    },
    # each classification's count of the day, for the dashboard's 30-day chart (docs/classification.md); a string
    "whalefall: classification daily counts": {
        "func": "classification.tasks.store_daily_counts",
        "schedule_type": Schedule.MINUTES,
        "minutes": 1440,
    },
    # archive then prune history older than WHALEFALL_RETENTION_DAYS; does nothing while that is 0 (docs/retention.md)
    "whalefall: history retention": {
        "func": "exports.tasks.run_history_retention",
        "schedule_type": Schedule.MINUTES,
        "minutes": 1440,
    },
}


def _valid_cron(expr: str) -> bool:
    try:
        from croniter import croniter
    except ImportError:  # django-q2 needs croniter for CRON schedules; without it, check the shape
        return len(expr.split()) == 5
    return croniter.is_valid(expr)


class Command(BaseCommand):
    help = (
        "Create or update the daily sync, reaper and operational alert check schedules "
        "(safe to run any number of times)."
    )

    def handle(self, *args: object, **options: object) -> None:
        for name, spec in SCHEDULES.items():
            defaults = {"func": spec["func"], "schedule_type": spec["schedule_type"], "repeats": -1}
            if spec["schedule_type"] == Schedule.CRON:
                cron = getattr(settings, spec["cron_setting"])
                if not _valid_cron(cron):
                    raise CommandError(f"{spec['cron_setting']}={cron!r} is not a valid cron expression")
                defaults["cron"] = cron
            else:
                defaults["minutes"] = spec["minutes"]
            schedule, created = Schedule.objects.update_or_create(name=name, defaults=defaults)
            self.stdout.write(f"{'created' if created else 'updated'}: {name} ({schedule.func})")

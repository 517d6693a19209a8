"""Run the operational alert check now, sending its alerts from this process (docs/alerts.md).

For cron, next to the django-q2 schedule "whalefall: operational alert check": when the
cluster is down, nothing syncs and nothing runs the schedule, which is exactly when an
instance goes stale; this command finds it all the same and sends the alert itself
instead of queueing it for workers that are not there. It also sends operational
deliveries that were written earlier and never taken by a worker. Safe to run while the
cluster runs too: an open alert is never sent twice, and a delivery is claimed before it
is sent.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from alerts.operational import deliveries_send_now, operational_check, operational_unsent


class Command(BaseCommand):
    help = (
        "Check every active instance for staleness and failed syncs in a row, and the scheduler; "
        "send the alerts from this process (for cron, also when the django-q2 cluster is down)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--queue",
            action="store_true",
            help="Hand the alerts to the django-q2 workers instead of sending them from this process.",
        )
        parser.add_argument("--json", action="store_true", help="Print the outcome as one JSON object.")

    def handle(self, *args: object, **options: object) -> None:
        queue = bool(options["queue"])
        summary = operational_check(queue=queue)
        sent: dict[int, str] = {}
        if not queue:
            sent = deliveries_send_now([*summary.deliveries, *operational_unsent()])
        if options["json"]:
            self.stdout.write(json.dumps({**summary.as_dict(), "sent": sent}, sort_keys=True))
            return
        for problem in summary.scheduler_problems:
            self.stderr.write(f"scheduler: {problem}")
        for name, kind in summary.opened:
            self.stdout.write(f"opened: {kind} {name}")
        for name, kind in summary.closed:
            self.stdout.write(f"closed: {kind} {name}")
        outcome = ", ".join(f"{n} {status}" for status, n in _count(sent.values()).items()) or "none"
        self.stdout.write(
            f"checked {summary.checked} active instance(s): {len(summary.opened)} alert(s) opened, "
            f"{len(summary.closed)} closed; deliveries: " + (f"{len(summary.deliveries)} queued" if queue else outcome)
        )


def _count(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts

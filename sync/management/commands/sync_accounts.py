"""``manage.py sync_accounts``: sync account permissions of one, several or all instances now.

Exit codes are part of the interface so cron and CI can act on them: 0 every instance
synced and read entirely, 1 at least one failed (details printed), 2 bad usage (nothing
ran), 3 the task broker is unreachable (``--async``: the session's tasks could not be
queued; the records not queued are failed with error kind ``broker``, so retry the
session's failed instances once the broker is back), 4 every instance synced but at least
one completed with coverage gaps (a scope the monitoring login could not read: its last
known grants are kept; each result lists its ``gaps`` with the fix; scopes the options leave
out are listed too, as ``out_of_scope``, but are no gap). Errors (2, 3) are one line on
stderr, never a traceback.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accountsync.coverage import result_gaps, unreadable_count
from audit.models import AuditVia
from instances.models import Instance
from sync.models import (
    RECORD_TERMINAL,
    SyncInstanceRecord,
    SyncRecordStatusChoices,
    SyncSession,
    SyncSessionStatusChoices,
    SyncTypeChoices,
)
from sync.services import SyncBrokerError, SyncRequestError, sync_accounts, sync_session_run, sync_session_start

EXIT_BROKER = 3
EXIT_GAPS = 4


def _record_result(record: SyncInstanceRecord) -> dict[str, Any]:
    """A finished record in the shape of a sync result dict."""
    return {
        "instance": record.instance_name,
        "instance_id": record.instance_id,
        "record_id": record.pk,
        "status": record.status,
        "success": record.status == SyncRecordStatusChoices.COMPLETED,
        "message": record.error_message or record.status,
        "error_kind": record.error_kind or None,
        "synced_count": record.items_synced,
        "added_count": record.items_created,
        "modified_count": record.items_updated,
        "removed_count": record.items_deleted,
        "coverage_gaps": record.coverage_gaps,
        "gaps": result_gaps(record.details),
    }


def _usage(message: str) -> CommandError:
    return CommandError(message, returncode=2)


def _text(value: str, option: str) -> str:
    """A name from the command line that a database can compare: no NUL, no lone surrogate.

    Why: bytes that are not UTF-8 in argv reach Python as lone surrogates, which no
    database driver can encode (a traceback instead of a usage error).
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _usage(f"{option} {value!r} is not valid UTF-8 text.") from None
    if "\x00" in value:
        raise _usage(f"{option} {value!r} contains a NUL character.")
    return value


class Command(BaseCommand):
    help = (
        "Sync accounts and permissions now. One --instance runs as manual_single (no session); "
        "several instances or --all run as one manual_batch session (needs --user). --type overrides."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--instance", action="append", default=[], metavar="NAME|ID", help="repeatable")
        parser.add_argument("--all", action="store_true", help="every active instance")
        parser.add_argument("--type", dest="sync_type", help=f"one of {', '.join(SyncTypeChoices.values)}")
        parser.add_argument(
            "--user",
            help="username recorded as the session's creator (manual_batch/manual_task) and in the audit trail",
        )
        parser.add_argument("--force", action="store_true", help="override the mass-removal guard")
        parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
        parser.add_argument(
            "--async",
            dest="run_async",
            action="store_true",
            help="enqueue a session on the django-q2 workers (default type manual_task) and print its id",
        )
        parser.add_argument("--wait", action="store_true", help="with --async: follow the session to its end")
        parser.add_argument(
            "--timeout", type=float, default=3600, help="with --wait: give up after this many seconds (exit 1)"
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["wait"] and not opts["run_async"]:
            raise _usage("--wait follows an --async session; add --async (without it the sync runs here anyway).")
        if not math.isfinite(opts["timeout"]) or opts["timeout"] <= 0:  # float() reads "nan": it would never end
            raise _usage(f"--timeout {opts['timeout']!r} must be a positive number of seconds.")
        instances = self._select(opts["instance"], opts["all"])
        sync_type = opts["sync_type"] or (
            SyncTypeChoices.MANUAL_TASK
            if opts["run_async"]
            else SyncTypeChoices.MANUAL_SINGLE
            if len(instances) == 1 and not opts["all"]
            else SyncTypeChoices.MANUAL_BATCH
        )
        if sync_type not in SyncTypeChoices.values:
            raise _usage(f"unknown --type {sync_type!r}; use one of {', '.join(SyncTypeChoices.values)}.")
        user = self._user(opts["user"]) if opts["user"] else None
        self._tty = not opts["json"] and self.stdout.isatty()
        if opts["run_async"]:
            self._run_async(instances, sync_type, user, opts)
            return
        if sync_type == SyncTypeChoices.MANUAL_SINGLE:
            report = self._run_single(instances, opts["force"], opts["json"], user)
        else:
            try:
                session = sync_session_start(
                    instances=instances, sync_type=sync_type, created_by=user, enqueue=False, via=AuditVia.CLI
                )
            except SyncRequestError as exc:
                raise _usage(f"{exc} (command line: --user USERNAME, or --type scheduled_task)") from exc
            report = sync_session_run(
                session=session, force=opts["force"], progress=None if opts["json"] else self._progress
            )
        report["sync_type"] = sync_type
        self._finish(report, opts["json"])

    def _finish(self, report: dict[str, Any], as_json: bool) -> None:
        """Print the report; exit 1 if an instance failed, else 4 if one completed with coverage gaps."""
        for result in report["results"]:
            if "gaps" not in result:
                result["gaps"] = result_gaps(result.get("details"))
                result["coverage_gaps"] = unreadable_count(result["gaps"])
        failed = sum(1 for r in report["results"] if not r["success"])
        gapped = sum(1 for r in report["results"] if r["success"] and r["coverage_gaps"])
        report["with_gaps"] = gapped
        if as_json:
            self.stdout.write(json.dumps(report, default=str, indent=2))
        else:
            where = f" in session {report['session_id']}" if report.get("session_id") else ""
            with_gaps = f" ({gapped} with coverage gaps)" if gapped else ""
            self.stdout.write(f"{len(report['results']) - failed} ok{with_gaps}, {failed} failed{where}")
        if failed:
            sys.exit(1)
        if gapped:
            sys.exit(EXIT_GAPS)

    def _run_async(self, instances: list[Instance], sync_type: str, user: Any, opts: dict[str, Any]) -> None:
        """Enqueue a session for the workers; with --wait, poll it to the end (exit 0/1/4 like a local run)."""
        if sync_type == SyncTypeChoices.MANUAL_SINGLE:
            raise _usage("--async runs a session; use --type manual_task, manual_batch or scheduled_task.")
        try:
            session = sync_session_start(
                instances=instances,
                sync_type=sync_type,
                created_by=user,
                enqueue=True,
                force=opts["force"],
                via=AuditVia.CLI,
            )
        except SyncRequestError as exc:
            raise _usage(f"{exc} (command line: --user USERNAME, or --type scheduled_task)") from exc
        except SyncBrokerError as exc:
            raise self._broker_down(exc, opts["json"]) from exc
        if not opts["wait"]:
            if opts["json"]:
                self.stdout.write(json.dumps({"session_id": str(session.session_id), "status": session.status}))
            else:
                self.stdout.write(
                    f"enqueued session {session.session_id} ({len(instances)} instance(s)); "
                    "the workers run it (manage.py qcluster)."
                )
            return
        report = self._wait(session, opts["timeout"], opts["json"])
        gapped = sum(1 for r in report["results"] if r["success"] and r["coverage_gaps"])
        report["with_gaps"] = gapped
        if opts["json"]:
            self.stdout.write(json.dumps(report, default=str, indent=2))
        else:
            with_gaps = f" ({gapped} with coverage gaps)" if gapped else ""
            self.stdout.write(
                f"session {session.session_id} {report['status']}: {report['successful_instances']} ok{with_gaps}, "
                f"{report['failed_instances']} failed"
            )
        if report["status"] != "completed":
            sys.exit(1)
        if gapped:
            sys.exit(EXIT_GAPS)

    def _broker_down(self, exc: SyncBrokerError, as_json: bool) -> CommandError:
        """Exit 3 with one line on stderr: the session, that the broker is down, what to do."""
        cause = exc.__cause__
        why = " ".join(f"{type(cause).__name__}: {cause}".split())[:200] if cause is not None else ""
        why = f" ({why})" if why else ""
        if as_json:
            session = SyncSession.objects.filter(session_id=exc.session_id).first()
            self.stdout.write(
                json.dumps(
                    {
                        "session_id": str(exc.session_id),
                        "status": session.status if session else None,
                        "error_kind": "broker",
                        "not_queued": exc.not_queued,
                        "message": str(exc),
                    }
                )
            )
        return CommandError(
            f"the task broker is unreachable{why}: session {exc.session_id} could not be queued, "
            f"{exc.not_queued} instance(s) marked failed (error kind broker). "
            "Check Q_BROKER_URL and that the broker runs, then retry the session's failed instances.",
            returncode=EXIT_BROKER,
        )

    def _wait(self, session: SyncSession, timeout: float, as_json: bool) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        reported: set[int] = set()
        total = session.records.count()
        while True:
            session.refresh_from_db()
            for record in session.records.filter(status__in=RECORD_TERMINAL).exclude(pk__in=reported).order_by("pk"):
                reported.add(record.pk)
                if not as_json:
                    self._line(len(reported), total, record.instance_name, _record_result(record))
            if session.status != SyncSessionStatusChoices.RUNNING:
                break
            if time.monotonic() > deadline:
                self.stderr.write(f"gave up waiting after {timeout:g}s; session {session.session_id} is still running")
                break
            time.sleep(0.5)
        records = [_record_result(r) for r in session.records.order_by("pk")]
        return {
            "session_id": str(session.session_id),
            "status": session.status,
            "total_instances": session.total_instances,
            "successful_instances": session.successful_instances,
            "failed_instances": session.failed_instances,
            "results": records,
        }

    def _select(self, names: list[str], all_active: bool) -> list[Instance]:
        if all_active and names:
            raise _usage("use either --instance or --all, not both.")
        if all_active:
            instances = list(Instance.objects.filter(is_active=True).order_by("name"))
            if not instances:
                raise _usage("--all selected nothing: there is no active instance.")
            return instances
        if not names:
            raise _usage("nothing to sync: pass --instance NAME|ID (repeatable) or --all.")
        selected: dict[int, Instance] = {}
        for value in names:
            found = Instance.objects.filter(name=_text(value, "--instance")).first()
            # isascii: str.isdigit() is also true for "²" (int() refuses it) and "١٢" (int() reads 12)
            if found is None and value.isascii() and value.isdigit():
                found = Instance.objects.filter(pk=int(value)).first()
            if found is None:
                raise _usage(
                    f"unknown instance {value!r}: give an instance name or id (see the admin's instance list)."
                )
            selected.setdefault(found.pk, found)
        return list(selected.values())

    def _user(self, username: str) -> Any:
        user = get_user_model().objects.filter(username=_text(username, "--user")).first()
        if user is None:
            raise _usage(f"unknown --user {username!r}: give an existing username.")
        return user

    def _run_single(self, instances: list[Instance], force: bool, as_json: bool, user: Any = None) -> dict[str, Any]:
        results = []
        for index, instance in enumerate(instances, start=1):
            if not as_json:
                self._line(index, len(instances), instance.name, None)
            result = sync_accounts(
                instance=instance,
                sync_type=SyncTypeChoices.MANUAL_SINGLE,
                force=force,
                created_by=user,
                via=AuditVia.CLI,
            )
            result.update(instance=instance.name, instance_id=instance.pk)
            results.append(result)
            if not as_json:
                self._line(index, len(instances), instance.name, result)
        status = "completed" if all(r["success"] for r in results) else "failed"
        return {"session_id": None, "status": status, "results": results}

    def _progress(self, index: int, total: int, record: SyncInstanceRecord, result: dict[str, Any] | None) -> None:
        self._line(index, total, record.instance_name, result)

    def _line(self, index: int, total: int, name: str, result: dict[str, Any] | None) -> None:
        prefix = f"[{index}/{total}] {name}"
        if result is None:
            if self._tty:
                self.stdout.write(f"{prefix} ...", ending="")
                self.stdout.flush()
            return
        if result["success"]:
            gaps = result.get("gaps")
            if gaps is None:
                gaps = result_gaps(result.get("details"))
            unreadable = unreadable_count(gaps) > 0
            text = (self.style.WARNING if unreadable else self.style.SUCCESS)(
                f"{prefix} ok{' with gaps' if unreadable else ''}: {result['synced_count']} accounts, "
                f"+{result['added_count']} ~{result['modified_count']} -{result['removed_count']}"
                + "".join(
                    f"\n    {g['kind']}: {g['scope']}: {g['reason']}" + (f" (fix: {g['fix']})" if g["fix"] else "")
                    for g in gaps
                )
            )
        else:
            text = self.style.ERROR(f"{prefix} FAILED ({result.get('error_kind')}): {result['message']}")
        self.stdout.write(("\r" if self._tty else "") + text)

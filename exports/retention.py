"""History retention: archive, then prune, change logs and closed permission snapshots older than N days.

Why it lives in ``exports``: an archive is an export that nobody downloads. The change logs are
written by ``stream_export("change_logs", ...)`` itself and the snapshots by the ``permissions``
kind's own row builder, so an archive has the columns an admin export has (the snapshots add
``snapshot_id`` and ``valid_to``, which a current-permissions export does not need but an archive of
*closed* snapshots does), and whoever reads exports can read archives.

Why this order (docs/retention.md): nothing may be lost. For each kind, the rows to prune are
fixed first (older than the cutoff, at most the largest id seen then); they are written as gzip CSV
to a temporary name, flushed and fsynced, renamed, and read back. Only when every archive of the run
holds exactly the rows counted does anything get deleted, and then only rows whose id the archive
holds, re-checked against the cutoff, a few thousand per transaction. A crash before the delete
leaves every row and a complete archive; a crash during it leaves a complete archive and some rows
(the next run archives and prunes those). A run with nothing older writes no file.

What is never pruned: an open snapshot (``valid_to`` null, the account's current state), anything
newer than the cutoff, and any row another model points to with a foreign key (today
``alerts.AlertDelivery.change_log``, SET_NULL: deleting the change would silently cut the link from a
sent alert to the change it reported). The references are found through the model's reverse
relations, so a future foreign key to these models is honoured without changing this file.
"""

from __future__ import annotations

import csv
import fcntl
import gzip
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, Max, Model, OuterRef, Q, QuerySet
from django.utils import timezone

from accountsync.models import AccountChangeLog, AccountPermission
from audit.models import AuditKind, AuditVia
from audit.services import audit_record
from config.db import read_in_transaction
from config.logging import log_event
from config.textstream import encode_rows
from exports.columns import KINDS, Row
from exports.writers import CHUNK_SIZE, export_observed, stream_export

logger = logging.getLogger(__name__)

__all__ = [
    "SNAPSHOT_COLUMNS",
    "KindResult",
    "PruneResult",
    "RetentionError",
    "RetentionPolicy",
    "archived_ids",
    "history_prune",
    "retention_policy",
]

# what the snapshots' archive adds to the ``permissions`` export's columns
SNAPSHOT_COLUMNS = ("snapshot_id", "valid_to")
LOCK_NAME = ".history_prune.lock"


class RetentionError(Exception):
    """A prune that did not run or stopped before deleting (bad setting, unwritable archive, rows changed)."""


@dataclass(frozen=True)
class RetentionPolicy:
    """The settings of the policy, validated: ``days`` 0 means off."""

    days: int
    archive_dir: Path
    batch_size: int

    @property
    def enabled(self) -> bool:
        return self.days > 0


def _whole(value: Any, name: str, *, minimum: int) -> int:
    if isinstance(value, bool):
        raise RetentionError(f"{name}={value!r} is not a whole number.")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise RetentionError(f"{name}={value!r} is not a whole number.") from None
    if number < minimum:
        raise RetentionError(f"{name}={number} must be {minimum} or more.")
    return number


def retention_policy() -> RetentionPolicy:
    """The policy from settings; a negative or non-numeric value raises RetentionError naming the setting.

    Why again here when config/settings.py already checks: tests and ``override_settings`` set the
    values after start-up, and a bad value must stop a prune rather than delete with a default.
    """
    return RetentionPolicy(
        days=_whole(getattr(settings, "WHALEFALL_RETENTION_DAYS", 0), "WHALEFALL_RETENTION_DAYS", minimum=0),
        archive_dir=Path(
            getattr(settings, "WHALEFALL_RETENTION_ARCHIVE_DIR", "") or Path(settings.VAR_DIR) / "archive"
        ),
        batch_size=_whole(
            getattr(settings, "WHALEFALL_RETENTION_BATCH_SIZE", 5000), "WHALEFALL_RETENTION_BATCH_SIZE", minimum=1
        ),
    )


# --- what may be pruned -----------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    kind: str  # the export kind the archive is written as
    model: type[Model]
    id_column: str  # the archive column holding the row's primary key
    old: Callable[[datetime], Q]  # older than the cutoff (and, for snapshots, closed)


TARGETS = (
    _Target("change_logs", AccountChangeLog, "id", lambda cutoff: Q(detected_at__lt=cutoff)),
    _Target(
        "permissions",
        AccountPermission,
        "snapshot_id",
        lambda cutoff: Q(valid_to__isnull=False, valid_to__lt=cutoff),
    ),
)


def _references(model: type[Model]) -> list[Exists]:
    """One EXISTS per foreign key (or many-to-many) of another model pointing at ``model``."""
    found = []
    # include_hidden: a foreign key declared with related_name="+" is still a reference
    reverse = [
        f
        for f in model._meta.get_fields(include_hidden=True)
        if f.auto_created and not f.concrete and (f.one_to_many or f.one_to_one or f.many_to_many)
    ]
    for rel in reverse:
        target = getattr(rel, "field_name", None) if not rel.many_to_many else None
        found.append(Exists(rel.related_model._base_manager.filter(**{rel.field.name: OuterRef(target or "pk")})))
    return found


def _old(target: _Target, cutoff: datetime) -> QuerySet[Any]:
    return target.model._base_manager.filter(target.old(cutoff))


def _prunable(target: _Target, cutoff: datetime) -> QuerySet[Any]:
    """Rows of ``target`` older than ``cutoff`` that nothing references: what a run archives and deletes."""
    queryset = _old(target, cutoff)
    for reference in _references(target.model):
        queryset = queryset.filter(~reference)
    return queryset.order_by("pk")


def _referenced(target: _Target, cutoff: datetime) -> int:
    references = _references(target.model)
    if not references:
        return 0
    either = Q(references[0])
    for reference in references[1:]:
        either |= Q(reference)
    return _old(target, cutoff).filter(either).count()


# --- results --------------------------------------------------------------------------


@dataclass
class KindResult:
    """One kind's counts: ``eligible`` rows older than the cutoff and unreferenced, ``kept_referenced`` skipped."""

    kind: str
    eligible: int = 0
    kept_referenced: int = 0
    archived: int = 0
    pruned: int = 0
    archive: str | None = None


@dataclass
class PruneResult:
    """What one run did (or, with ``dry_run``, would do); ``enabled`` False: the policy is off, nothing ran."""

    enabled: bool
    days: int = 0
    cutoff: datetime | None = None
    dry_run: bool = False
    archiving: bool = True
    archive_dir: str | None = None
    kinds: list[KindResult] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cutoff"] = self.cutoff.isoformat() if self.cutoff else None
        return data


# --- the archive ------------------------------------------------------------------------


def _snapshot_rows(queryset: QuerySet[AccountPermission], count: list[int]) -> Iterator[Row]:
    """The ``permissions`` export's rows of each snapshot, with its id and ``valid_to``.

    A snapshot that held nothing still gets one row (``row_type`` ``none``): the archive must
    account for every snapshot it replaces, or its id could not be checked before the delete.
    """
    spec = KINDS["permissions"]
    rows = spec.fresh() if spec.fresh is not None else spec.rows
    for permission in read_in_transaction(spec.prepare(queryset).iterator(chunk_size=CHUNK_SIZE)):
        count[0] += 1
        extra = {"snapshot_id": permission.pk, "valid_to": permission.valid_to}
        empty = True
        for row in rows(permission):
            empty = False
            yield {**row, **extra}
        if empty:
            yield {
                "instance": permission.instance.name,
                "db_type": permission.instance.db_type,
                "account": permission.account.identity,
                "account_id": permission.account_id,
                "row_type": "none",
                "valid_from": permission.valid_from,
                **extra,
            }


def _archive_text(target: _Target, queryset: QuerySet[Any]) -> tuple[Iterator[str], Callable[[], int]]:
    """The archive's CSV text and a function giving how many database rows it held once consumed."""
    if target.kind == "change_logs":
        seen = [0]

        def done(rows: int, complete: bool) -> None:
            seen[0] = rows if complete else -1

        with export_observed(done):
            chunks, _type, _name = stream_export("change_logs", queryset, "csv")
        return chunks, lambda: seen[0]
    count = [0]
    columns = KINDS["permissions"].columns + SNAPSHOT_COLUMNS
    return encode_rows(columns, _snapshot_rows(queryset, count), "csv"), lambda: count[0]


def _archive_name(directory: Path, kind: str, cutoff: datetime, now: datetime) -> Path:
    stem = (
        f"whalefall-{kind.replace('_', '-')}-before-{cutoff.astimezone(UTC):%Y%m%dT%H%M%SZ}"
        f"-at-{now.astimezone(UTC):%Y%m%d-%H%M%S}"
    )
    path, n = directory / f"{stem}.csv.gz", 1
    while path.exists() or (directory / f".{path.name}.partial").exists():
        n += 1
        path = directory / f"{stem}-{n}.csv.gz"
    return path


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_gzip(path: Path, chunks: Iterator[str]) -> None:
    """Write ``chunks`` gzipped to ``.<name>.partial``, fsync it, rename it to ``path``, fsync the folder.

    Why a temporary name: a file under the final name is always complete, whatever crashed.
    The file is created 0600: it holds account names and their privileges.
    """
    partial = path.with_name(f".{path.name}.partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw:
            with gzip.GzipFile(filename=path.name[: -len(".gz")], mode="wb", fileobj=raw) as packed:
                for chunk in chunks:
                    packed.write(chunk.encode("utf-8"))
            raw.flush()
            os.fsync(raw.fileno())
        os.rename(partial, path)
        _fsync_dir(path.parent)
    except BaseException:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # ends the read's transaction before anything else uses the connection
        partial.unlink(missing_ok=True)
        raise


def archived_ids(path: Path | str, id_column: str) -> Iterator[int]:
    """The row ids an archive holds, in file order, each once (a snapshot spans several rows).

    Reading the whole file also checks gzip's CRC, so a damaged archive fails here, before any delete.
    """
    with gzip.open(path, "rt", encoding="utf-8-sig", newline="") as text:
        reader = csv.DictReader(text)
        if not reader.fieldnames or id_column not in reader.fieldnames:
            raise RetentionError(f"{path} has no {id_column!r} column: not a WhaleFall history archive.")
        last = None
        for row in reader:
            value = int(row[id_column])
            if value != last:
                yield value
                last = value


@contextmanager
def _run_lock(directory: Path) -> Iterator[None]:
    """One archiving run at a time per archive folder (the schedule and a command at once would archive twice)."""
    with open(directory / LOCK_NAME, "a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RetentionError(f"another history prune is running (lock {directory / LOCK_NAME}).") from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# --- the delete -------------------------------------------------------------------------


def _batches(ids: Iterable[int], size: int) -> Iterator[list[int]]:
    batch: list[int] = []
    for value in ids:
        batch.append(value)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _delete(target: _Target, cutoff: datetime, ids: Iterable[int], batch_size: int) -> int:
    """Delete the given ids that are still prunable, ``batch_size`` per transaction; returns how many went.

    Re-checking the cutoff and the references here means a damaged or foreign id list can never
    delete an open snapshot, a recent row or a referenced one.
    """
    pruned = 0
    label = target.model._meta.label
    for batch in _batches(ids, batch_size):
        with transaction.atomic():
            _n, per_model = _prunable(target, cutoff).filter(pk__in=batch).only("pk").delete()
        pruned += per_model.get(label, 0)
    return pruned


def _unarchived_ids(target: _Target, cutoff: datetime, last_id: int, batch_size: int) -> Iterator[int]:
    """The prunable ids up to ``last_id``, read ``batch_size`` at a time by id (``--no-archive``)."""
    after = 0
    while True:
        ids = list(
            _prunable(target, cutoff).filter(pk__gt=after, pk__lte=last_id).values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            return
        yield from ids
        after = ids[-1]


# --- the run ----------------------------------------------------------------------------


def _log(level: int, message: str, *, phase: str, **context: Any) -> None:
    log_event(
        logger,
        level,
        message,
        module="exports",
        operation="history_prune",
        instance_id=None,
        db_type=None,
        session_id=None,
        phase=phase,
        **context,
    )


def history_prune(
    *,
    days: int | None = None,
    archive_dir: Path | str | None = None,
    dry_run: bool = False,
    archive: bool = True,
    batch_size: int | None = None,
    actor: Any = None,
    via: str = AuditVia.SYSTEM,
    now: datetime | None = None,
) -> PruneResult:
    """Archive then prune history older than ``days`` (default: ``WHALEFALL_RETENTION_DAYS``; 0 = off).

    ``dry_run`` only counts. ``archive=False`` deletes without writing an archive: callers must
    make the operator say they have a backup (the command's ``--i-have-a-backup``). Raises
    RetentionError, having deleted nothing, when an archive cannot be written or does not hold
    exactly the rows counted. Every run that is not a dry run records a ``history_pruned`` audit event.
    """
    policy = retention_policy()
    days = policy.days if days is None else _whole(days, "days", minimum=1)
    if days == 0:
        _log(logging.DEBUG, "history retention is off (WHALEFALL_RETENTION_DAYS=0)", phase="off")
        return PruneResult(enabled=False)
    size = policy.batch_size if batch_size is None else _whole(batch_size, "batch size", minimum=1)
    directory = Path(archive_dir) if archive_dir else policy.archive_dir
    now = now or timezone.now()
    cutoff = now - timedelta(days=days)
    result = PruneResult(
        enabled=True,
        days=days,
        cutoff=cutoff,
        dry_run=dry_run,
        archiving=archive,
        archive_dir=str(directory) if archive else None,
    )
    started = time.monotonic()
    _log(logging.INFO, f"history prune: older than {cutoff.isoformat()} ({days} days)", phase="start", dry_run=dry_run)
    plans: list[tuple[_Target, KindResult, int]] = []
    for target in TARGETS:
        outcome = KindResult(kind=target.kind, kept_referenced=_referenced(target, cutoff))
        last_id = _prunable(target, cutoff).aggregate(last=Max("pk"))["last"]
        if last_id is not None:
            outcome.eligible = _prunable(target, cutoff).filter(pk__lte=last_id).count()
        result.kinds.append(outcome)
        if last_id is not None:
            plans.append((target, outcome, last_id))
    if dry_run:
        _log(logging.INFO, "history prune: dry run, nothing changed", phase="dry_run", **_counts(result))
        return result
    try:
        if archive and plans:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            with _run_lock(directory):
                _archive_all(plans, cutoff, now, directory)
                _delete_all(plans, cutoff, size)
        else:
            _delete_all(plans, cutoff, size)
    except (OSError, RetentionError) as exc:
        reason = exc if isinstance(exc, RetentionError) else f"archive error in {directory}: {exc}"
        done = f"{_pruned(result)} rows were deleted before it" if _pruned(result) else "nothing was deleted"
        error = RetentionError(f"{reason}; {done}.")
        _log(logging.ERROR, f"history prune failed: {error}", phase="failed", **_counts(result))
        _audit(result, actor=actor, via=via, error=str(error))
        raise error from exc
    except Exception as exc:  # the database went away mid-delete: what was deleted is archived; say so, then raise
        _log(logging.ERROR, f"history prune failed: {exc}", phase="failed", exc_info=True, **_counts(result))
        _audit(result, actor=actor, via=via, error=f"{type(exc).__name__}: {exc}")
        raise
    _log(
        logging.INFO,
        "history prune: done",
        phase="done",
        duration_ms=round((time.monotonic() - started) * 1000),
        **_counts(result),
    )
    _audit(result, actor=actor, via=via)
    return result


def _archive_all(
    plans: list[tuple[_Target, KindResult, int]], cutoff: datetime, now: datetime, directory: Path
) -> None:
    """Write and verify every kind's archive; on any failure remove this run's archives and raise (nothing deleted)."""
    written: list[Path] = []
    try:
        for target, outcome, last_id in plans:
            queryset = _prunable(target, cutoff).filter(pk__lte=last_id)
            path = _archive_name(directory, target.kind, cutoff, now)
            chunks, streamed = _archive_text(target, queryset)
            _write_gzip(path, chunks)
            written.append(path)
            held = sum(1 for _ in archived_ids(path, target.id_column))
            if not (streamed() == held == outcome.eligible):
                raise RetentionError(
                    f"the {target.kind} archive holds {held} rows, {outcome.eligible} were counted "
                    f"(rows changed while archiving); run it again"
                )
            outcome.archived, outcome.archive = held, str(path)
            _log(
                logging.INFO,
                f"history prune: archived {held} {target.kind} to {path}",
                phase="archived",
                kind=target.kind,
                rows=held,
            )
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        for _target, outcome, _last in plans:
            outcome.archived, outcome.archive = 0, None
        raise


def _delete_all(plans: list[tuple[_Target, KindResult, int]], cutoff: datetime, size: int) -> None:
    for target, outcome, last_id in plans:
        if outcome.archive:
            ids: Iterable[int] = archived_ids(outcome.archive, target.id_column)
        else:
            ids = _unarchived_ids(target, cutoff, last_id, size)
        outcome.pruned = _delete(target, cutoff, ids, size)
        _log(
            logging.INFO,
            f"history prune: deleted {outcome.pruned} {target.kind}",
            phase="pruned",
            kind=target.kind,
            rows=outcome.pruned,
        )


def _pruned(result: PruneResult) -> int:
    return sum(k.pruned for k in result.kinds)


def _counts(result: PruneResult) -> dict[str, int]:
    return {f"{k.kind}_{what}": getattr(k, what) for k in result.kinds for what in ("eligible", "archived", "pruned")}


def _audit(result: PruneResult, *, actor: Any, via: str, error: str | None = None) -> None:
    audit_record(
        AuditKind.HISTORY_PRUNED,
        actor=actor,
        via=via,
        object_type="history",
        object_repr=f"older than {result.cutoff:%Y-%m-%d %H:%M} UTC" if result.cutoff else "",
        details={
            "days": result.days,
            "cutoff": result.cutoff,
            "archived": result.archiving,
            "kinds": {
                k.kind: {
                    "eligible": k.eligible,
                    "kept_referenced": k.kept_referenced,
                    "archived": k.archived,
                    "pruned": k.pruned,
                    "archive": k.archive,
                }
                for k in result.kinds
            },
            "complete": error is None,
            **({"error": error} if error else {}),
        },
    )

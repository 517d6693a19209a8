"""Read queries for the admin and the API (HackSoft style: selectors read, services write).

Each returns a lazy queryset or one row so views can paginate and add
filters; joins are declared here so list pages stay at a fixed query count.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Case, DateTimeField, F, Q, QuerySet, When
from django.db.models.functions import Greatest

from accountsync.models import AccountChangeLog, AccountPermission, InstanceAccount
from instances.models import Instance


def account_list(*, instance: Instance | None = None, active: bool | None = True) -> QuerySet[InstanceAccount]:
    """Accounts of one instance (or all), active ones by default."""
    qs = InstanceAccount.objects.select_related("instance")
    if instance is not None:
        qs = qs.filter(instance=instance)
    if active is not None:
        qs = qs.filter(is_active=active)
    return qs.order_by("instance__name", "identity")


# --- last seen (issue 16): the last successful sync that saw the account ----------------

# the annotation ``with_last_seen`` adds; filter and order on it, never on the stored column
LAST_SEEN = "last_seen"


def last_seen_expression() -> Case:
    """When each account was last seen, as a database expression (the one rule for admin, API and exports).

    Why not the stored ``last_seen_at``: an unchanged account costs the sync no
    write, so that column keeps the time the row was last written. An active
    account was, by construction, seen by its instance's last successful sync,
    so its last seen is ``Instance.last_success_at`` (or the stored time if that
    is later, a row written by a sync whose success was not recorded). The
    stored time alone is the answer for a removed account (the engine sets it
    to the last successful sync that still listed it) and for an instance with
    no recorded success yet (never synced since the upgrade that added it).
    """
    return Case(
        When(
            is_active=True,
            instance__last_success_at__isnull=False,
            then=Greatest(F("instance__last_success_at"), F("last_seen_at")),
        ),
        default=F("last_seen_at"),
        output_field=DateTimeField(),
    )


def with_last_seen(queryset: QuerySet[InstanceAccount]) -> QuerySet[InstanceAccount]:
    """Accounts annotated with their true last seen as ``last_seen`` (see ``last_seen_expression``).

    An annotation on the instance join, not a lookup per row: a list, a page or
    an export of any size keeps its query count. A queryset that already has it
    is returned as it is.
    """
    if LAST_SEEN in queryset.query.annotations:
        return queryset
    return queryset.annotate(**{LAST_SEEN: last_seen_expression()})


def account_last_seen(account: InstanceAccount) -> datetime:
    """One account's true last seen: the ``last_seen`` annotation, else the same rule in Python.

    The Python form is for an account loaded without ``with_last_seen`` (it
    reads ``account.instance``, a query unless that was joined).
    """
    annotated = getattr(account, LAST_SEEN, None)
    if annotated is not None:
        return annotated
    success = account.instance.last_success_at if account.is_active else None
    if success is None:
        return account.last_seen_at
    return max(success, account.last_seen_at)


def account_current_permission(*, account: InstanceAccount) -> AccountPermission | None:
    """The open snapshot, or None for a removed account (its snapshot was closed)."""
    return AccountPermission.objects.filter(account=account, valid_to__isnull=True).first()


def account_permission_at(*, account: InstanceAccount, at: datetime) -> AccountPermission | None:
    """What the account could do at `at`: the row whose validity interval contains it."""
    return (
        AccountPermission.objects.filter(account=account, valid_from__lte=at)
        .filter(Q(valid_to__isnull=True) | Q(valid_to__gt=at))
        .order_by("-valid_from")
        .first()
    )


def account_permission_history(*, account: InstanceAccount) -> QuerySet[AccountPermission]:
    return AccountPermission.objects.filter(account=account).order_by("-valid_from", "-id")


def change_log_list(
    *,
    instance: Instance | None = None,
    account: InstanceAccount | None = None,
    change_type: str | None = None,
    since: datetime | None = None,
) -> QuerySet[AccountChangeLog]:
    """Change log newest first; filters match the (instance|account|change_type, detected_at) indexes."""
    qs = AccountChangeLog.objects.select_related("instance", "account")
    if instance is not None:
        qs = qs.filter(instance=instance)
    if account is not None:
        qs = qs.filter(account=account)
    if change_type:
        qs = qs.filter(change_type=change_type)
    if since is not None:
        qs = qs.filter(detected_at__gte=since)
    return qs.order_by("-detected_at", "-id")


def account_capability_filter(
    queryset: QuerySet[InstanceAccount], *, capability: str, present: bool = True
) -> QuerySet[InstanceAccount]:
    """Accounts whose current snapshot lists `capability` (or, with present=False, does not).

    Capabilities (GRANT_ADMIN, WILDCARD_HOST, ...) exist only in the snapshot
    JSON, roles held included. PostgreSQL and MySQL test JSON containment;
    SQLite has no JSON contains, so there the array's text is matched with the
    quotes around the name, which cannot match a longer capability name.
    On PostgreSQL the containment is served by the partial GIN index
    ``perm_open_caps_gin`` (migration 0010) on ``snapshot -> 'capabilities'`` of
    the open snapshots: keep this exact expression and ``valid_to IS NULL``, or
    the planner reads every open snapshot's JSON again (issue #19).
    """
    from django.db import connection
    from django.db.models import Exists, OuterRef

    current = AccountPermission.objects.filter(account=OuterRef("pk"), valid_to__isnull=True)
    if connection.features.supports_json_field_contains:
        current = current.filter(snapshot__capabilities__contains=[capability])
    else:
        current = current.filter(snapshot__capabilities__icontains=f'"{capability}"')
    return queryset.filter(Exists(current)) if present else queryset.exclude(Exists(current))


# --- cross-instance account search and point-in-time changes (issue 10) ----------------

SEARCH_MODES = ("auto", "exact", "prefix", "host")
SEARCH_MAX_LENGTH = 255


class AccountSearchError(ValueError):
    """A search that cannot run (empty text, unknown mode); `field` and `code` say which, for a 400."""

    def __init__(self, message: str, *, field: str, code: str) -> None:
        super().__init__(message)
        self.field = field
        self.code = code


def _parse_account_query(q: str, mode: str) -> tuple[str, str | None, str | None, bool]:
    """``(how, username or prefix, host, host_prefix)`` from the search text and mode.

    ``how`` is ``exact`` or ``prefix`` for the name part, or ``any`` when only a
    host was given. Texts: ``app_rw`` (exact), ``app_*`` (prefix), ``app_rw@%``
    (name and MySQL host), ``host=%`` or ``@%`` (host only); a host ending with
    ``*`` matches hosts starting with the rest (``host=10.0.*``). In ``exact``
    and ``prefix`` modes the text is only a name, so a PostgreSQL role named
    ``svc@corp`` can still be found.
    """
    text = (q or "").strip()
    if mode not in SEARCH_MODES:
        raise AccountSearchError(
            f"Unknown search mode {mode!r}; use one of: {', '.join(SEARCH_MODES)}.", field="mode", code="invalid"
        )
    if not text:
        raise AccountSearchError("Give an account name, a prefix or a host to search for.", field="q", code="empty")
    if len(text) > SEARCH_MAX_LENGTH:
        raise AccountSearchError(f"At most {SEARCH_MAX_LENGTH} characters.", field="q", code="invalid")
    name: str | None
    host: str | None = None
    if text.lower().startswith("host="):
        name, host = None, text[5:]
    elif "@" in text and mode in ("auto", "host"):
        name, host = text.rsplit("@", 1)
        name = name.strip("'\"`") or None
        host = host.strip("'\"`")
    elif mode == "host":
        name, host = None, text
    else:
        name = text
    host_prefix = False
    if host is not None:
        if not host:
            raise AccountSearchError("Give a host after '@' or 'host=' (e.g. %).", field="q", code="empty")
        if host.endswith("*"):
            host, host_prefix = host[:-1], True
    if name is None:
        return "any", None, host, host_prefix
    how = "exact"
    if name.endswith("*"):
        name, how = name[:-1], "prefix"
        if not name:
            raise AccountSearchError("Give at least one character before '*'.", field="q", code="empty")
    elif mode == "prefix":
        how = "prefix"
    return how, name, host, host_prefix


def _prefix_filter(field: str, prefix: str) -> Q:
    """A case-sensitive "starts with" that the database can answer from an index.

    SQLite's LIKE ignores case and, with Django's ESCAPE clause, never uses an
    index; a half-open range on the (binary-collated) column does, and is exact
    for code points. PostgreSQL and MySQL get LIKE, which the ``*_pattern_ops``
    index (PostgreSQL) or the column index (MySQL) serves.
    """
    from django.db import connection

    if connection.vendor == "sqlite":
        return Q(**{f"{field}__gte": prefix, f"{field}__lt": prefix + "\U0010ffff"})
    return Q(**{f"{field}__startswith": prefix})


def _account_query(q: str, mode: str) -> Q:
    """The search text as one condition on the accounts table (``_parse_account_query``'s grammar)."""
    how, name, host, host_prefix = _parse_account_query(q, mode)
    query = Q()
    if how == "exact":
        query &= Q(username=name)
    elif how == "prefix":
        query &= _prefix_filter("username", name or "")
    if host is not None:
        query &= _prefix_filter("host", host) if host_prefix else Q(host=host)
    return query


def account_search(
    *, q: str, mode: str = "auto", active: bool | None = None, db_type: str | None = None
) -> QuerySet[InstanceAccount]:
    """Where does an account exist, across every instance and database type.

    One query: accounts matched on ``username`` (exact or prefix) and/or
    ``host`` through the (username, host) and (host, username) indexes, the
    instance joined, and the current snapshot's JSON as ``current_snapshot``
    (a correlated lookup on the one-open-snapshot index), so callers derive
    capabilities and privilege counts without a query per row. Removed
    accounts are included unless ``active`` says otherwise: "it existed here"
    is an answer too. Raises ``AccountSearchError`` for empty or bad input.
    """
    qs = InstanceAccount.objects.select_related("instance").filter(_account_query(q, mode))
    if active is not None:
        qs = qs.filter(is_active=active)
    if db_type:
        qs = qs.filter(instance__db_type=db_type)
    return with_current_snapshot(qs).order_by("username", "instance_id", "identity")


def instance_changes_between(*, instance: Instance, start: datetime, end: datetime) -> QuerySet[AccountChangeLog]:
    """The change log of ``instance`` detected in (start, end], oldest first.

    Why half-open this way: ``account_permission_at`` takes the snapshot valid
    *at* a time (valid_from <= T), so the changes in (T1, T2] are exactly
    what turns the picture at T1 into the picture at T2. Served by the
    (instance, detected_at) index.
    """
    if start > end:
        raise ValueError("start is after end")
    return (
        AccountChangeLog.objects.select_related("instance", "account")
        .filter(instance=instance, detected_at__gt=start, detected_at__lte=end)
        .order_by("detected_at", "id")
    )


def with_current_snapshot(queryset: QuerySet[InstanceAccount]) -> QuerySet[InstanceAccount]:
    """Accounts annotated with their open snapshot's JSON as ``current_snapshot`` (null once removed).

    A correlated subquery on the one-open-row-per-account index instead of a
    prefetch: a search page or an export of any size stays one query.
    """
    from django.db.models import JSONField, OuterRef, Subquery

    current = (
        AccountPermission.objects.filter(account=OuterRef("pk"), valid_to__isnull=True)
        .order_by()
        .values("snapshot")[:1]
    )
    return queryset.annotate(current_snapshot=Subquery(current, output_field=JSONField()))


def account_ids_matching(term: str) -> QuerySet[InstanceAccount]:
    """The ids of the accounts a search text names, for the lists keyed by account (changes, findings).

    Why a subquery of ids and not a search across the join: a change-log search that joins ten
    million rows to a million accounts and tests the text on both sides scans both tables twice
    (once for the count, once for the page). Resolving the text to accounts first reads the
    accounts table once (on PostgreSQL through the trigram index on the identity, migration 0007),
    and the change log is then read through its (account, detected_at) index. The grammar is the
    accounts list's: ``app_*``, ``app_rw@%``, ``host=10.0.*`` go through the indexed search; a text
    with ``@`` also finds identities holding it (a PostgreSQL role ``svc@corp``); any other text is
    found anywhere in the identity. One condition on one table, so the database can combine its
    indexes. Raises ``AccountSearchError`` for bad input.
    """
    text = term.strip()
    if not text:
        raise AccountSearchError("Give an account name, a prefix or a host to search for.", field="q", code="empty")
    contains = Q(identity__icontains=text)
    if "*" in text or text.lower().startswith("host="):
        query = _account_query(text, "auto")
    elif "@" in text:
        name, _at, host = text.rpartition("@")
        name, host = name.strip("'\"` "), host.strip("'\"` ")
        if host:
            try:
                query = _account_query(text, "auto") | contains
            except AccountSearchError:
                query = contains
        else:
            query = Q(username=name) | contains if name else contains
    else:
        query = contains
    return InstanceAccount.objects.filter(query).values("pk")

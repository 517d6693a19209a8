"""The risk rule table: one entry per rule, evaluated on each account's canonical snapshot.

Why a table: severity, title and condition of every rule live in one place that
docs/findings.md mirrors, so adding or re-grading a rule is one entry, not an
`if` hidden in the sync. Each `check` is a pure function of a `Subject` (one
account as the last sync stored it) and the `Policy`; it returns the finding's
detail (why it holds) or None. Capabilities come from the adapters
(accountsync/adapters/*.py), already resolved through roles, so rules never
special-case a vendor except where the risk itself is vendor-specific.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from django.conf import settings
from django.utils.translation import gettext_noop

from config.scopes import split_scope
from findings.models import SeverityChoices

DETAIL_ITEMS = 20  # examples listed in a detail; the count says how many there are in all


@dataclass(frozen=True)
class Policy:
    """Which optional rules apply; from `settings.WHALEFALL_FINDINGS_POLICY` or the environment.

    `require_password_expiry`: report passwords that never expire (off by default:
    many fleets rotate by other means). `report_expired_passwords`: report
    expired passwords (on by default). `disabled_rules`: codes never reported.
    """

    require_password_expiry: bool = False
    report_expired_passwords: bool = True
    disabled_rules: frozenset[str] = frozenset()
    # DORMANT_PRIVILEGED: a privileged login with no login for this many days (0: never reported)
    dormant_days: int = 90


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def policy_from_settings() -> Policy:
    """The current policy: the Django setting wins, then WHALEFALL_FINDINGS_* environment variables."""
    configured: dict[str, Any] = dict(getattr(settings, "WHALEFALL_FINDINGS_POLICY", None) or {})
    disabled = configured.get("disabled_rules")
    if disabled is None:
        disabled = [c for c in os.environ.get("WHALEFALL_FINDINGS_DISABLED_RULES", "").split(",") if c.strip()]
    return Policy(
        require_password_expiry=bool(
            configured.get("require_password_expiry", _env_bool("WHALEFALL_FINDINGS_REQUIRE_PASSWORD_EXPIRY", False))
        ),
        report_expired_passwords=bool(
            configured.get("report_expired_passwords", _env_bool("WHALEFALL_FINDINGS_REPORT_EXPIRED", True))
        ),
        disabled_rules=frozenset(str(c).strip().upper() for c in disabled),
        dormant_days=_days(configured.get("dormant_days", os.environ.get("WHALEFALL_FINDINGS_DORMANT_DAYS")), 90),
    )


def _days(value: Any, default: int) -> int:
    """A number of days from the setting or the environment; an empty or unreadable value keeps the default."""
    try:
        return max(0, int(str(value).strip())) if value not in (None, "") else default
    except ValueError:
        return default


@dataclass(frozen=True)
class Subject:
    """One active account of one instance, as its current snapshot describes it."""

    db_type: str
    identity: str
    username: str
    kind: str
    snapshot: dict[str, Any]
    host: str | None = None
    capabilities: frozenset[str] = field(default=frozenset())
    context: dict[str, Any] = field(default_factory=dict)
    # what it can do through its roles (accountsync.effective EffectiveGrant dicts), where the refresh
    # computed it (accounts whose findings list grants: GRANT_OPTION); None: only the snapshot's own grants
    effective: tuple[dict[str, Any], ...] | None = None

    @classmethod
    def build(
        cls,
        *,
        db_type: str,
        identity: str,
        username: str,
        kind: str,
        snapshot: dict[str, Any],
        host: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> Subject:
        return cls(
            db_type=db_type,
            identity=identity,
            username=username,
            kind=kind,
            snapshot=snapshot,
            host=host,
            capabilities=frozenset(snapshot.get("capabilities") or ()),
            context=dict(context or {}),
        )

    @property
    def attributes(self) -> dict[str, Any]:
        return self.snapshot.get("attributes") or {}

    @property
    def locked(self) -> bool:
        return "LOCKED" in self.capabilities or bool(self.attributes.get("locked"))

    @property
    def can_log_in(self) -> bool:
        """Users and logins can authenticate; roles act through their members (who inherit)."""
        if self.kind not in ("user", "login"):
            return False
        attrs = self.attributes
        if attrs.get("schema_only") or attrs.get("login") is False or attrs.get("orphaned"):
            return False
        # SQL Server database users: WITHOUT LOGIN (NONE) and login-less INSTANCE users cannot connect.
        return attrs.get("authentication_type") not in ("NONE", "INSTANCE") or self.db_type != "sqlserver"

    @property
    def active_login(self) -> bool:
        return self.can_log_in and not self.locked


Check = Callable[[Subject, Policy], dict[str, Any] | None]


@dataclass(frozen=True)
class Rule:
    code: str
    severity: str
    title: str
    check: Check
    description: str


# --- checks --------------------------------------------------------------------------

PRIVILEGED = ("SUPERUSER", "GRANT_ADMIN", "CREATE_USER")
# MySQL/MariaDB plugins that do not use a stored password (the OS or a directory vouches).
SOCKET_PLUGINS = frozenset({"unix_socket", "auth_socket", "gssapi", "authentication_ldap_sasl", "pam", "auth_pam"})


def _examples(items: list[str]) -> dict[str, Any]:
    return {"count": len(items), "examples": items[:DETAIL_ITEMS]}


def _reasons(s: Subject, capability: str) -> list[str]:
    """Why the account holds `capability` when no single grant shows it (an escalation route; see the adapters)."""
    reasons = (s.attributes.get("capability_reasons") or {}).get(capability) or []
    return [str(r) for r in reasons][:DETAIL_ITEMS]


def _superuser(s: Subject, _p: Policy) -> dict[str, Any] | None:
    if "SUPERUSER" not in s.capabilities or not s.active_login:
        return None
    detail: dict[str, Any] = {"capabilities": sorted(set(PRIVILEGED) & s.capabilities)}
    if reasons := _reasons(s, "SUPERUSER"):
        detail["reasons"] = reasons
    return detail


def _grant_option(s: Subject, _p: Policy) -> dict[str, Any] | None:
    if "GRANT_ADMIN" not in s.capabilities or "SUPERUSER" in s.capabilities or not s.active_login:
        return None
    if s.effective is not None:  # through roles too, with the path
        grantable = [
            f"{g['privilege']} on {g['scope']}" + (f" (via {' → '.join(g['via'])})" if g.get("via") else "")
            for g in s.effective
            if g.get("grantable") and g.get("effect", "GRANT") == "GRANT" and g.get("active", True)
        ]
    else:
        grantable = [
            f"{p['privilege']} on {p['scope']}"
            for p in s.snapshot.get("privileges") or []
            if p.get("grantable") and p.get("effect", "GRANT") == "GRANT"
        ]
    admin_roles = [r["role"] for r in s.snapshot.get("roles") or [] if r.get("admin_option")]
    return {"grantable": _examples(grantable), "admin_roles": admin_roles[:DETAIL_ITEMS]}


def _wildcard_host(s: Subject, _p: Policy) -> dict[str, Any] | None:
    if "WILDCARD_HOST" not in s.capabilities or not s.active_login:
        return None
    return {"host": s.host if s.host is not None else ""}


def _anonymous(s: Subject, _p: Policy) -> dict[str, Any] | None:
    if "ANONYMOUS" not in s.capabilities or not s.active_login:
        return None
    return {"host": s.host if s.host is not None else ""}


def _plugins(s: Subject) -> list[str]:
    return [p.strip() for p in str(s.attributes.get("auth_plugin") or "").split(" OR ")]


def _empty_password(s: Subject, _p: Policy) -> dict[str, Any] | None:
    """NO_PASSWORD where a password would be checked; PostgreSQL has its own rule below.

    The MySQL adapter sets NO_PASSWORD only when a password plugin's stored
    secret is empty, so unix_socket/auth_socket accounts never reach here; the
    plugin test is kept as a second guard for snapshots written by other code.
    """
    if "NO_PASSWORD" not in s.capabilities or s.db_type == "postgresql" or not s.active_login:
        return None
    if all(p in SOCKET_PLUGINS for p in _plugins(s)):
        return None
    return {"auth_plugin": s.attributes.get("auth_plugin", "")}


def _passwordless_login(s: Subject, _p: Policy) -> dict[str, Any] | None:
    """PostgreSQL: a login role with no password authenticates only as pg_hba.conf says (peer, cert, trust)."""
    if "NO_PASSWORD" not in s.capabilities or s.db_type != "postgresql" or not s.active_login:
        return None
    return {"note": "no password: peer/ident/cert logins are fine, a 'trust' line in pg_hba.conf is not"}


def _password_expired(s: Subject, p: Policy) -> dict[str, Any] | None:
    if not p.report_expired_passwords or "EXPIRED" not in s.capabilities or not s.can_log_in:
        return None
    attrs = s.attributes
    keys = ("valid_until", "expiry_date", "password_last_changed", "password_last_set", "account_status")
    return {k: attrs[k] for k in keys if attrs.get(k) not in (None, "")}


def _never_expires_reason(s: Subject) -> str | None:
    attrs = s.attributes
    if s.db_type == "mysql":
        if "NO_PASSWORD" in s.capabilities or not any(p and p not in SOCKET_PLUGINS for p in _plugins(s)):
            return None
        if attrs.get("password_lifetime") == 0:
            return "PASSWORD EXPIRE NEVER"
        if attrs.get("password_lifetime") is None and s.context.get("default_password_lifetime") == 0:
            return "server default_password_lifetime is 0"
        return None
    if s.db_type == "postgresql":
        if attrs.get("password_set") is False:
            return None
        if attrs.get("valid_until") in (None, "infinity"):
            return "VALID UNTIL not set" if attrs.get("valid_until") is None else "VALID UNTIL 'infinity'"
        return None
    if s.db_type == "sqlserver":
        if attrs.get("type") == "S" and s.kind == "login" and attrs.get("expiration_checked") is False:
            return "CHECK_EXPIRATION = OFF"
        return None
    if s.db_type == "oracle" and attrs.get("authentication_type") == "PASSWORD" and not attrs.get("expiry_date"):
        return f"profile {attrs.get('profile') or '?'} sets no PASSWORD_LIFE_TIME"
    return None


def _password_never_expires(s: Subject, p: Policy) -> dict[str, Any] | None:
    if not p.require_password_expiry or not s.active_login or "EXPIRED" in s.capabilities:
        return None
    reason = _never_expires_reason(s)
    return {"reason": reason} if reason else None


def _locked_privileged(s: Subject, _p: Policy) -> dict[str, Any] | None:
    held = set(PRIVILEGED) & s.capabilities
    if not s.can_log_in or not s.locked or not held:
        return None
    return {"capabilities": sorted(held)}


def _login_day(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def _dormant_privileged(s: Subject, p: Policy) -> dict[str, Any] | None:
    """A login holding SUPERUSER, GRANT_ADMIN or CREATE_USER that nobody has used for `dormant_days` days.

    Only where the adapter records the last login (attribute `last_login`, a day: Oracle's
    DBA_USERS.LAST_LOGIN and V$PWFILE_USERS.LAST_LOGIN); an account never logged in counts from
    `created`. `last_login_partial` (an administrator on Oracle 12.1, whose AS SYSDBA logins are
    recorded nowhere) is left out rather than reported on a guess. The detail names the day, not
    a count of days, so it does not change from one sync to the next.
    """
    attrs = s.attributes
    if p.dormant_days <= 0 or "last_login" not in attrs or attrs.get("last_login_partial") or not s.active_login:
        return None
    held = set(PRIVILEGED) & s.capabilities
    since = _login_day(attrs.get("last_login") or attrs.get("created"))
    if not held or since is None:
        return None
    today = _login_day(s.context.get("today")) or datetime.now(UTC).date()
    if (today - since).days < p.dormant_days:
        return None
    return {
        "last_login": attrs.get("last_login"),
        "no_login_since": since.isoformat(),
        "dormant_days": p.dormant_days,
        "capabilities": sorted(held),
    }


def _orphaned(s: Subject, _p: Policy) -> dict[str, Any] | None:
    if "ORPHANED" not in s.capabilities:
        return None
    return {"database": s.attributes.get("database")}


_PG_DEFAULT_PUBLIC = {("database", "CONNECT"), ("database", "TEMPORARY"), ("routine", "EXECUTE")}


# SQL Server: what every database's public role holds out of the box (2016+), and the Microsoft-shipped
# objects Microsoft never grants to public (sysadmin only): a grant of those to public is always reported
_MSSQL_DATABASE_PUBLIC = {"VIEW ANY COLUMN ENCRYPTION KEY DEFINITION", "VIEW ANY COLUMN MASTER KEY DEFINITION"}
_MSSQL_SYSADMIN_ONLY = frozenset(
    {
        "xp_cmdshell", "sp_oacreate", "sp_oadestroy", "sp_oamethod", "sp_oagetproperty", "sp_oasetproperty",
        "sp_oageterrorinfo", "sp_oastop", "xp_regwrite", "xp_regdeletekey", "xp_regdeletevalue",
        "xp_regaddmultistring", "xp_regremovemultistring", "xp_instance_regwrite", "xp_instance_regdeletekey",
        "xp_instance_regdeletevalue", "xp_instance_regaddmultistring", "xp_instance_regremovemultistring",
    }
)  # fmt: skip


def _is_default_public_grant(s: Subject, privilege: dict[str, Any]) -> bool:
    """What SQL Server gives its `public` roles and PostgreSQL gives PUBLIC out of the box."""
    if s.db_type == "postgresql":
        return (privilege["scope"].split(":", 1)[0], privilege["privilege"]) in _PG_DEFAULT_PUBLIC
    if s.db_type != "sqlserver":
        return False
    scope, name = privilege["scope"], privilege["privilege"]
    if (scope, name) == ("global", "VIEW ANY DATABASE") or (
        name == "CONNECT" and scope.startswith("object:server.ENDPOINT")
    ):
        return True
    level, parts = split_scope(scope)
    if level == "database":  # a database's public role (`<db>::public`)
        return name in _MSSQL_DATABASE_PUBLIC
    # a grant on an object Microsoft ships (the adapter lists them: sys.all_objects.is_ms_shipped) is the
    # server's own, unless the object is one Microsoft keeps to sysadmin
    shipped = scope in set(s.attributes.get("ms_shipped_scopes") or ())
    return level in ("object", "column") and shipped and len(parts) > 2 and parts[2].lower() not in _MSSQL_SYSADMIN_ONLY


def _public_grants(s: Subject, _p: Policy) -> dict[str, Any] | None:
    """Grants to the PUBLIC pseudo-role reach every account (MariaDB 10.11+ PUBLIC, SQL Server's server and
    database `public` roles: every login and every database user is a member)."""
    if s.kind != "role" or s.username.upper() != "PUBLIC":
        return None
    granted = [
        f"{p['privilege']} on {p['scope']}"
        for p in s.snapshot.get("privileges") or []
        if p.get("effect", "GRANT") == "GRANT" and p["privilege"] != "USAGE" and not _is_default_public_grant(s, p)
    ]
    roles = [r["role"] for r in s.snapshot.get("roles") or []]
    if not granted and not roles:
        return None
    return {"privileges": _examples(granted), "roles": roles[:DETAIL_ITEMS]}


S = SeverityChoices
RULES: tuple[Rule, ...] = (
    Rule(
        "EMPTY_PASSWORD",
        S.CRITICAL,
        gettext_noop("Empty password"),
        _empty_password,
        "An unlocked login whose password plugin stores an empty secret: anyone who can reach the port logs in. "
        "Socket/peer plugins (unix_socket, auth_socket) are not passwords and never match.",
    ),
    Rule(
        "SUPERUSER",
        S.HIGH,
        gettext_noop("Superuser or equivalent"),
        _superuser,
        "An unlocked login holding SUPERUSER directly or through roles (MySQL ALL/SUPER on *.*, PostgreSQL "
        "SUPERUSER, SQL Server sysadmin/CONTROL SERVER, Oracle DBA/SYSDBA/GRANT ANY ...).",
    ),
    Rule(
        "ANONYMOUS",
        S.HIGH,
        gettext_noop("Anonymous account"),
        _anonymous,
        "A MySQL/MariaDB account with an empty user name: any user name matches it.",
    ),
    Rule(
        "PUBLIC_GRANTS",
        S.HIGH,
        gettext_noop("Privileges granted to PUBLIC"),
        _public_grants,
        "Privileges or roles granted to the PUBLIC pseudo-role reach every account, present and future "
        "(SQL Server's built-in VIEW ANY DATABASE and endpoint CONNECT, each database public role's VIEW ANY COLUMN "
        "ENCRYPTION/MASTER KEY DEFINITION and its grants on Microsoft-shipped objects but xp_cmdshell, the OLE "
        "Automation and registry-writing procedures; PostgreSQL's database CONNECT/TEMPORARY, "
        "schema USAGE and function EXECUTE are not reported).",
    ),
    Rule(
        "GRANT_OPTION",
        S.MEDIUM,
        gettext_noop("Can grant privileges to others"),
        _grant_option,
        "An unlocked, non-superuser login with GRANT OPTION, ADMIN OPTION, ownership (PostgreSQL) or "
        "db_owner/securityadmin (SQL Server): it can hand its rights on.",
    ),
    Rule(
        "WILDCARD_HOST",
        S.MEDIUM,
        gettext_noop("Wildcard host"),
        _wildcard_host,
        "A MySQL/MariaDB account whose host contains % or _ (or is empty): it may connect from many hosts.",
    ),
    Rule(
        "ORPHANED_USER",
        S.MEDIUM,
        gettext_noop("Orphaned SQL Server user"),
        _orphaned,
        "A SQL-authenticated database user whose SID matches no login: it keeps grants nobody can see by login.",
    ),
    Rule(
        "LOCKED_PRIVILEGED",
        S.LOW,
        gettext_noop("Locked but privileged"),
        _locked_privileged,
        "A locked or disabled login that still holds SUPERUSER, GRANT_ADMIN or CREATE_USER: unlocking it "
        "restores that power silently.",
    ),
    Rule(
        "DORMANT_PRIVILEGED",
        S.MEDIUM,
        gettext_noop("Dormant privileged account"),
        _dormant_privileged,
        "An unlocked login holding SUPERUSER, GRANT_ADMIN or CREATE_USER that has not logged in for "
        "dormant_days days (policy, default 90; Oracle: DBA_USERS.LAST_LOGIN, or since it was created): "
        "unused power is better revoked.",
    ),
    Rule(
        "PASSWORD_EXPIRED",
        S.LOW,
        gettext_noop("Expired password"),
        _password_expired,
        "The password has expired (policy: report_expired_passwords, on by default).",
    ),
    Rule(
        "PASSWORD_NEVER_EXPIRES",
        S.LOW,
        gettext_noop("Password never expires"),
        _password_never_expires,
        "An unlocked password login with no expiry (policy: require_password_expiry, off by default).",
    ),
    Rule(
        "PASSWORDLESS_LOGIN",
        S.INFO,
        gettext_noop("Login without a password (PostgreSQL)"),
        _passwordless_login,
        "A PostgreSQL login role with no password: it can only log in by pg_hba.conf methods (peer, cert, "
        "trust); not an empty password, but worth checking against pg_hba.conf.",
    ),
)

# every rule a finding can carry, by code: the table above (evaluated here) and the rules of the
# features above findings that open their own (baselines' drift, the directory's orphaned access),
# added by ``feature_rule_register``; titles, filters and alerts read them all from here
RULES_BY_CODE: dict[str, Rule] = {rule.code: rule for rule in RULES}
EVALUATED_CODES: frozenset[str] = frozenset(RULES_BY_CODE)


def _not_evaluated(_s: Subject, _p: Policy) -> dict[str, Any] | None:
    return None


def feature_rule_register(*, code: str, severity: str, title: str, description: str) -> Rule:
    """Declare a finding rule whose findings a feature above opens and resolves itself.

    Why here and not in the feature: the findings list, its rule filter, the dashboard and the
    alerts name every finding by its rule's title. ``findings_refresh`` never touches these codes;
    the feature reconciles them with ``findings.services.findings_reconcile``. Registering the same
    rule again (a second ``ready()``) is a no-op; another rule under a taken code is an error.
    """
    rule = Rule(code, severity, title, _not_evaluated, description)
    taken = RULES_BY_CODE.get(code)
    if taken is not None and (taken.severity, taken.title, taken.description) != (severity, title, description):
        raise ValueError(f"finding rule code {code!r} is taken")
    RULES_BY_CODE[code] = rule
    return rule


def evaluate(subject: Subject, policy: Policy) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every rule that holds for `subject`: {code: (severity, detail)}."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for rule in RULES:
        if rule.code in policy.disabled_rules:
            continue
        detail = rule.check(subject, policy)
        if detail is not None:
            found[rule.code] = (str(rule.severity), detail)
    return found

"""Per-family DDL from one stored snapshot: CREATE for the account, GRANT for what it holds, REVOKE on request.

Why pure functions over a `Subject` (no ORM): the same code serves an account's current
snapshot, one from any point in time, recorded snapshots in tests, and a replay under new
names (`Rename`, used by the live round trip to copy accounts onto a scratch database).
A statement is a `Line`: its text and the database it must run in (PostgreSQL `\\connect`,
SQL Server `USE`), so a script of many accounts switches database only when it has to.

What is never written: a password or hash. WhaleFall never reads them; an account that had
one is created with a placeholder (a random value nobody is told) that the DBA must replace.
"""

from __future__ import annotations

import re
import secrets
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from config.scopes import split_scope
from grantscripts.quoting import (
    bracket_ident,
    comment_text,
    dq_ident,
    mysql_account,
    mysql_ident,
    mysql_literal,
    mysql_parse_identity,
    nvarchar_literal,
    sq_literal,
)

FAMILIES = ("mysql", "postgresql", "sqlserver", "oracle")


class GrantScriptError(ValueError):
    """Input a script cannot be made from (an unknown scope, a malformed pair); `field` says which, for a 400."""

    def __init__(self, message: str, *, field: str = "privileges", code: str = "invalid") -> None:
        super().__init__(message)
        self.field = field
        self.code = code


@dataclass(frozen=True)
class Subject:
    """One account and the snapshot to script (None: it had none at that time)."""

    db_type: str
    identity: str
    username: str
    host: str | None
    kind: str
    snapshot: dict[str, Any] | None
    server_version: str = ""


@dataclass(frozen=True)
class Rename:
    """Names to use instead of the stored ones (account/role names, database names); absent ones stay."""

    accounts: Mapping[str, str] = field(default_factory=dict)
    databases: Mapping[str, str] = field(default_factory=dict)

    def account(self, name: str) -> str:
        return self.accounts.get(name, name)

    def database(self, name: str) -> str:
        return self.databases.get(name, name)


@dataclass(frozen=True)
class Options:
    """How statements are written: names to replace, the password placeholder, MySQL's sql_mode."""

    rename: Rename = field(default_factory=Rename)
    placeholder: str = ""
    no_backslash_escapes: bool = False

    def password(self) -> str:
        return self.placeholder or "wf-" + secrets.token_hex(12)


@dataclass(frozen=True)
class Line:
    """One statement (or comment) and the database it runs in (None: any, the cluster or server level)."""

    text: str
    database: str | None = None


def comment(text: str, database: str | None = None) -> Line:
    return Line("-- " + comment_text(text), database)


def _privileges(snapshot: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list((snapshot or {}).get("privileges") or [])


def _roles(snapshot: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list((snapshot or {}).get("roles") or [])


def _attributes(snapshot: dict[str, Any] | None) -> dict[str, Any]:
    return dict((snapshot or {}).get("attributes") or {})


def _capabilities(snapshot: dict[str, Any] | None) -> set[str]:
    return set((snapshot or {}).get("capabilities") or [])


def _grouped(privileges: Iterable[dict[str, Any]]) -> dict[tuple[str, str, bool], list[str]]:
    """(scope, effect, grantable) -> privilege names, in snapshot order (sorted by scope, then name)."""
    groups: dict[tuple[str, str, bool], list[str]] = defaultdict(list)
    for p in privileges:
        groups[(p["scope"], str(p.get("effect") or "GRANT").upper(), bool(p.get("grantable")))].append(p["privilege"])
    return groups


def _level(scope: str) -> tuple[str, list[str]]:
    level, parts = split_scope(scope)
    if level == "global" and not parts:
        return level, []
    if not parts or (any(p == "" for p in parts) and level != "proxy"):
        raise GrantScriptError(f"malformed scope {scope!r}")
    return level, parts


# =========================================================================================
# MySQL / MariaDB
# =========================================================================================

_MYSQL_PASSWORD_PLUGINS = frozenset(
    {"", "mysql_native_password", "mysql_old_password", "caching_sha2_password", "sha256_password", "ed25519", "parsec"}
)
_MYSQL_ONLY_PLUGINS = frozenset({"caching_sha2_password", "sha256_password", "auth_socket"})
_ROUTINE_SUFFIX = re.compile(r"\((procedure|function|package|package body)\)$")


class MySQLScript:
    """MySQL 5.7/8 and MariaDB. Names as backtick identifiers, so the text does not depend on sql_mode."""

    def __init__(self, options: Options) -> None:
        self.o = options

    def is_mariadb(self, subject: Subject) -> bool:
        version = subject.server_version.lower()
        if "mariadb" in version:
            return True
        if version:
            return False
        plugins = set(str(_attributes(subject.snapshot).get("auth_plugin") or "").split(" OR "))
        return not (plugins & _MYSQL_ONLY_PLUGINS)

    def account(self, identity: str) -> str:
        """The account (or role) an identity names, renamed, as backtick identifiers."""
        try:
            user, host = mysql_parse_identity(identity)
        except ValueError as exc:
            raise GrantScriptError(f"{identity!r} is not a MySQL account or role identity", field="roles") from exc
        return mysql_account(self.o.rename.account(user), host)

    def me(self, subject: Subject) -> str:
        return self.account(subject.identity)

    def header(self) -> list[Line]:
        mode = "NO_BACKSLASH_ESCAPES" if self.o.no_backslash_escapes else "a sql_mode without NO_BACKSLASH_ESCAPES"
        return [comment(f"string literals are written for {mode}; names are `backtick` identifiers")]

    def create(self, subject: Subject) -> list[Line]:
        me, attrs = self.me(subject), _attributes(subject.snapshot)
        caps = _capabilities(subject.snapshot)
        if subject.kind == "role":
            if subject.username == "PUBLIC" and subject.host in (None, ""):
                return [comment("PUBLIC exists on every server: not created")]
            return [Line(f"CREATE ROLE {me};")]
        lines = [
            Line(
                f"CREATE USER {me}{self._identified(subject, attrs, caps)}{self._require(attrs)}{self._limits(attrs)};"
            )
        ]
        lifetime = attrs.get("password_lifetime")
        if type(lifetime) is int:
            clause = "NEVER" if lifetime == 0 else f"INTERVAL {lifetime} DAY"
            lines.append(Line(f"ALTER USER {me} PASSWORD EXPIRE {clause};"))
        if attrs.get("failed_login_attempts") or attrs.get("password_lock_time_days"):
            lines.append(
                Line(
                    f"ALTER USER {me} FAILED_LOGIN_ATTEMPTS {int(attrs.get('failed_login_attempts') or 0)} "
                    f"PASSWORD_LOCK_TIME {int(attrs.get('password_lock_time_days') or 0)};"
                )
            )
        if attrs.get("password_expired"):
            lines.append(Line(f"ALTER USER {me} PASSWORD EXPIRE;"))
        if attrs.get("locked"):
            lines.append(Line(f"ALTER USER {me} ACCOUNT LOCK;"))
        return lines

    def _identified(self, subject: Subject, attrs: dict[str, Any], caps: set[str]) -> str:
        """The IDENTIFIED clause: the plugin, and a placeholder where the original has a secret."""
        plugins = [p for p in str(attrs.get("auth_plugin") or "").split(" OR ")]
        no_secret = "NO_PASSWORD" in caps
        mariadb = self.is_mariadb(subject)
        parts = []
        for plugin in plugins:
            secret = plugin in _MYSQL_PASSWORD_PLUGINS and not no_secret
            if not plugin:
                if secret:
                    parts.append(f"BY {mysql_literal(self.o.password())}")
                continue
            if mariadb:
                using = f" USING PASSWORD({mysql_literal(self.o.password())})" if secret else ""
                parts.append(f"{mysql_ident(plugin)}{using}")
            else:
                by = f" BY {mysql_literal(self.o.password())}" if secret else ""
                parts.append(f"{mysql_ident(plugin)}{by}")
        if not parts:
            return ""
        if len(parts) == 1 and parts[0].startswith("BY "):
            return " IDENTIFIED " + parts[0]
        if mariadb:
            return " IDENTIFIED VIA " + " OR ".join(parts)
        return " IDENTIFIED WITH " + parts[0]

    def _require(self, attrs: dict[str, Any]) -> str:
        ssl_type = str(attrs.get("ssl_type") or "").upper()
        lit = lambda text: mysql_literal(text, no_backslash_escapes=self.o.no_backslash_escapes)  # noqa: E731
        if ssl_type == "ANY":
            return " REQUIRE SSL"
        if ssl_type == "X509":
            return " REQUIRE X509"
        if ssl_type == "SPECIFIED":
            specs = [
                f"{word} {lit(str(attrs[key]))}"
                for word, key in (("ISSUER", "x509_issuer"), ("SUBJECT", "x509_subject"), ("CIPHER", "ssl_cipher"))
                if attrs.get(key)
            ]
            return " REQUIRE " + " AND ".join(specs) if specs else ""
        return ""

    @staticmethod
    def _limits(attrs: dict[str, Any]) -> str:
        names = (
            ("max_questions", "MAX_QUERIES_PER_HOUR"),
            ("max_updates", "MAX_UPDATES_PER_HOUR"),
            ("max_connections", "MAX_CONNECTIONS_PER_HOUR"),
            ("max_user_connections", "MAX_USER_CONNECTIONS"),
        )
        limits = [f"{word} {int(attrs[key])}" for key, word in names if attrs.get(key)]
        return " WITH " + " ".join(limits) if limits else ""

    def target(self, scope: str) -> tuple[str, str]:
        """(what the GRANT is ON, the level) for a stored scope."""
        level, parts = _level(scope)
        db = self.o.rename.database
        if level == "global":
            return "*.*", level
        if level == "database" and len(parts) == 1:
            return f"{mysql_ident(db(parts[0]))}.*", level
        if level == "object" and len(parts) == 2:
            return f"{mysql_ident(db(parts[0]))}.{mysql_ident(parts[1])}", level
        if level == "routine" and len(parts) == 2:
            match = _ROUTINE_SUFFIX.search(parts[1])
            if match:
                name = parts[1][: match.start()]
                kind = match.group(1).upper()
                return f"{kind} {mysql_ident(db(parts[0]))}.{mysql_ident(name)}", level
        if level == "proxy":
            return self.account(scope.split(":", 1)[1]), level
        if level == "column" and len(parts) == 3:
            return f"{mysql_ident(db(parts[0]))}.{mysql_ident(parts[1])}", level
        raise GrantScriptError(f"scope {scope!r} is not a MySQL grant scope")

    def grants(self, subject: Subject) -> list[Line]:
        me, out = self.me(subject), []
        privileges = _privileges(subject.snapshot)
        columns: dict[tuple[str, bool], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        denies = []
        for (scope, effect, grantable), names in _grouped(privileges).items():
            try:
                on, level = self.target(scope)
            except GrantScriptError as exc:  # a scope this writer cannot state: say so, write the rest
                out.append(comment(f"not written: {exc}"))
                continue
            if level == "column":
                for name in names:
                    columns[(on, grantable)][name].append(mysql_ident(split_scope(scope)[1][2]))
                continue
            if effect == "DENY":
                denies.append(Line(f"REVOKE {', '.join(names)} ON {on} FROM {me};"))
                continue
            if level == "proxy":
                out.append(Line(f"GRANT PROXY ON {on} TO {me}{' WITH GRANT OPTION' if grantable else ''};"))
                continue
            out.append(Line(f"GRANT {', '.join(names)} ON {on} TO {me}{' WITH GRANT OPTION' if grantable else ''};"))
        for (on, grantable), by_name in columns.items():
            privs = ", ".join(f"{name} ({', '.join(cols)})" for name, cols in by_name.items())
            out.append(Line(f"GRANT {privs} ON {on} TO {me}{' WITH GRANT OPTION' if grantable else ''};"))
        if denies:
            out.append(
                comment("partial revokes (MySQL 8, partial_revokes=ON): what the global grants do not give here")
            )
            out.extend(denies)
        return out

    def members(self, subject: Subject) -> list[Line]:
        me, out, defaults = self.me(subject), [], []
        for grant in _roles(subject.snapshot):
            role = self.account(grant["role"])
            out.append(Line(f"GRANT {role} TO {me}{' WITH ADMIN OPTION' if grant.get('admin_option') else ''};"))
            if grant.get("default") and subject.kind != "role":
                defaults.append(role)
        if defaults:
            if "@" not in _roles(subject.snapshot)[0]["role"] or self.is_mariadb(subject):
                # MariaDB: one default role per account
                out.append(Line(f"SET DEFAULT ROLE {defaults[0]} FOR {me};"))
                if len(defaults) > 1:
                    out.append(comment("MariaDB has one default role; the snapshot marks more as active at login"))
            else:
                out.append(Line(f"SET DEFAULT ROLE {', '.join(defaults)} TO {me};"))
        return out

    def revoke(self, subject: Subject, privileges: list[tuple[str, str]], roles: list[str]) -> list[Line]:
        me, out = self.me(subject), []
        held = {(p["scope"], p["privilege"]): p for p in _privileges(subject.snapshot)}
        for scope, privilege in privileges:
            on, level = self.target(scope)
            stored = held.get((scope, privilege))
            if stored is None:
                out.append(comment(f"{privilege} on {scope} is not in the snapshot; revoked anyway"))
            if stored is not None and str(stored.get("effect") or "GRANT").upper() == "DENY":
                out.append(Line(f"GRANT {privilege} ON {on} TO {me};  -- lifts the partial revoke"))
                continue
            what = f"{privilege} ({mysql_ident(split_scope(scope)[1][2])})" if level == "column" else privilege
            out.append(Line(f"REVOKE {what} ON {on} FROM {me};"))
            if stored is not None and stored.get("grantable") and level != "column":
                out.append(Line(f"REVOKE GRANT OPTION ON {on} FROM {me};"))
        for role in roles:
            out.append(Line(f"REVOKE {self.account(role)} FROM {me};"))
        return out


# =========================================================================================
# PostgreSQL
# =========================================================================================

_PG_ATTRIBUTES = (
    ("login", "LOGIN", "NOLOGIN"),
    ("superuser", "SUPERUSER", "NOSUPERUSER"),
    ("inherit", "INHERIT", "NOINHERIT"),
    ("createrole", "CREATEROLE", "NOCREATEROLE"),
    ("createdb", "CREATEDB", "NOCREATEDB"),
    ("replication", "REPLICATION", "NOREPLICATION"),
    ("bypassrls", "BYPASSRLS", "NOBYPASSRLS"),
)
_PG_DEFAULT_OBJTYPES = {"tables": "TABLES", "sequences": "SEQUENCES", "functions": "FUNCTIONS", "types": "TYPES"}
_PG_DEFAULT_OBJTYPES["schemas"] = "SCHEMAS"
_PG_OWNER_KIND = {"database": "DATABASE", "schema": "SCHEMA", "object": "TABLE", "routine": "ROUTINE"}
_PG_RESERVED = ("pg_",)


def _split_routine(text: str) -> tuple[str, str]:
    """`name(args)` -> (name, args): the first `(` whose rest is balanced (outside double quotes) up to the end."""
    for start, ch in enumerate(text):
        if ch != "(" or not text.endswith(")"):
            continue
        depth, quoted, ok = 0, False, True
        for i in range(start, len(text)):
            c = text[i]
            if c == '"':
                quoted = not quoted
            elif not quoted and c == "(":
                depth += 1
            elif not quoted and c == ")":
                depth -= 1
                if depth == 0 and i != len(text) - 1:
                    ok = False
                    break
        if ok and depth == 0 and not quoted:
            return text[:start], text[start + 1 : -1]
    raise GrantScriptError(f"routine {text!r} has no argument list")


class PostgreSQLScript:
    """PostgreSQL: cluster-wide statements first, then each database's, after a psql `\\connect`."""

    def __init__(self, options: Options) -> None:
        self.o = options

    def role(self, name: str) -> str:
        if name.lower() == "public":
            return "PUBLIC"
        return dq_ident(self.o.rename.account(name))

    def me(self, subject: Subject) -> str:
        return self.role(subject.username)

    def header(self) -> list[Line]:
        return [comment("for psql: \\connect switches database; literals assume standard_conforming_strings = on")]

    def create(self, subject: Subject) -> list[Line]:
        attrs = _attributes(subject.snapshot)
        if attrs.get("pseudo_role") or subject.username.lower() == "public":
            return [comment("PUBLIC exists in every cluster: not created")]
        if subject.username.startswith(_PG_RESERVED):
            return [comment(f"{subject.username} is a predefined role: not created")]
        words = [on if attrs.get(key) else off for key, on, off in _PG_ATTRIBUTES if key in attrs]
        if "connection_limit" in attrs and int(attrs["connection_limit"]) != -1:
            words.append(f"CONNECTION LIMIT {int(attrs['connection_limit'])}")
        if attrs.get("valid_until"):
            words.append(f"VALID UNTIL {sq_literal(str(attrs['valid_until']))}")
        if attrs.get("password_set"):
            words.append(f"PASSWORD {sq_literal(self.o.password())}")
        return [Line(f"CREATE ROLE {self.me(subject)}{' WITH ' + ' '.join(words) if words else ''};")]

    def target(self, scope: str) -> tuple[str | None, str, str]:
        """(database to run in, what the GRANT is ON, level) for a stored scope."""
        level, parts = _level(scope)
        db = self.o.rename.database
        if level == "database" and len(parts) == 1:
            return None, f"DATABASE {dq_ident(db(parts[0]))}", level
        if level == "schema" and len(parts) == 2:
            return db(parts[0]), f"SCHEMA {dq_ident(parts[1])}", level
        if level in ("object", "column") and len(parts) == 3 + (level == "column"):
            return db(parts[0]), f"TABLE {dq_ident(parts[1])}.{dq_ident(parts[2])}", level
        if level == "routine" and len(parts) == 3:
            name, args = _split_routine(parts[2])
            return db(parts[0]), f"ROUTINE {dq_ident(parts[1])}.{dq_ident(name)}({args})", level
        if level == "default" and len(parts) == 4:
            return db(parts[0]), "", level
        raise GrantScriptError(f"scope {scope!r} is not a PostgreSQL grant scope")

    def _default(self, scope: str, privileges: str, grantee: str, *, grant: bool, grantable: bool = False) -> str:
        _level_name, (_dbname, schema, objtype, creator) = split_scope(scope)
        objects = _PG_DEFAULT_OBJTYPES.get(objtype)
        if objects is None:
            raise GrantScriptError(f"default privileges on {objtype!r} cannot be written")
        where = "" if schema == "*" else f" IN SCHEMA {dq_ident(schema)}"
        action = (
            f"GRANT {privileges} ON {objects} TO {grantee}{' WITH GRANT OPTION' if grantable else ''}"
            if grant
            else f"REVOKE {privileges} ON {objects} FROM {grantee}"
        )
        return f"ALTER DEFAULT PRIVILEGES FOR ROLE {self.role(creator)}{where} {action};"

    def grants(self, subject: Subject) -> list[Line]:
        me, out = self.me(subject), []
        columns: dict[tuple[str | None, str, bool], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        owned = []
        for (scope, _effect, grantable), names in _grouped(_privileges(subject.snapshot)).items():
            try:
                database, on, level = self.target(scope)
            except GrantScriptError as exc:  # a scope this writer cannot state: say so, write the rest
                out.append(comment(f"not written: {exc}"))
                continue
            if "OWNER" in names:
                names = [n for n in names if n != "OWNER"]
                owned.append(Line(f"ALTER {_PG_OWNER_KIND[level]} {on.split(' ', 1)[1]} OWNER TO {me};", database))
            if not names:
                continue
            if level == "column":
                for name in names:
                    columns[(database, on, grantable)][name].append(dq_ident(split_scope(scope)[1][3]))
                continue
            option = " WITH GRANT OPTION" if grantable else ""
            if level == "default":
                out.append(Line(self._default(scope, ", ".join(names), me, grant=True, grantable=grantable), database))
                continue
            if level == "object" and "USAGE" in names:  # only sequences have USAGE; ON TABLE refuses it
                on = "SEQUENCE " + on.split(" ", 1)[1]
            out.append(Line(f"GRANT {', '.join(names)} ON {on} TO {me}{option};", database))
        for (database, on, grantable), by_name in columns.items():
            privs = ", ".join(f"{name} ({', '.join(cols)})" for name, cols in by_name.items())
            out.append(Line(f"GRANT {privs} ON {on} TO {me}{' WITH GRANT OPTION' if grantable else ''};", database))
        return owned + out

    def members(self, subject: Subject) -> list[Line]:
        me, attrs, out = self.me(subject), _attributes(subject.snapshot), []
        inherits = bool(attrs.get("inherit", True))
        unsettable = set(attrs.get("memberships_without_set") or [])
        for grant in _roles(subject.snapshot):
            options = []
            if grant.get("admin_option"):
                options.append(
                    "ADMIN OPTION" if not unsettable and bool(grant.get("default")) == inherits else "ADMIN TRUE"
                )
            if bool(grant.get("default")) != inherits or grant["role"] in unsettable:
                # PostgreSQL 16+: per-grant INHERIT and SET (before 16 the member's INHERIT decides)
                if options:
                    options = ["ADMIN TRUE"]
                options.append(f"INHERIT {'TRUE' if grant.get('default') else 'FALSE'}")
                if grant["role"] in unsettable:
                    options.append("SET FALSE")
            out.append(
                Line(f"GRANT {self.role(grant['role'])} TO {me}{' WITH ' + ', '.join(options) if options else ''};")
            )
        for role in attrs.get("memberships_without_set_or_inherit") or []:
            out.append(Line(f"GRANT {self.role(role)} TO {me} WITH INHERIT FALSE, SET FALSE;"))
        return out

    def revoke(self, subject: Subject, privileges: list[tuple[str, str]], roles: list[str]) -> list[Line]:
        me, out = self.me(subject), []
        held = {(p["scope"], p["privilege"]) for p in _privileges(subject.snapshot)}
        for scope, privilege in privileges:
            database, on, level = self.target(scope)
            if (scope, privilege) not in held:
                out.append(comment(f"{privilege} on {scope} is not in the snapshot; revoked anyway", database))
            if privilege == "OWNER":
                out.append(
                    comment(f"ownership of {scope} cannot be revoked: ALTER ... OWNER TO another role", database)
                )
                continue
            if level == "default":
                out.append(Line(self._default(scope, privilege, me, grant=False), database))
                continue
            if level == "column":
                out.append(
                    Line(f"REVOKE {privilege} ({dq_ident(split_scope(scope)[1][3])}) ON {on} FROM {me};", database)
                )
                continue
            if level == "object" and privilege == "USAGE":
                on = "SEQUENCE " + on.split(" ", 1)[1]
            out.append(Line(f"REVOKE {privilege} ON {on} FROM {me};", database))
        for role in roles:
            out.append(Line(f"REVOKE {self.role(role)} FROM {me};"))
        return out


# =========================================================================================
# SQL Server
# =========================================================================================

_SQLSERVER_CLASSES = {
    "SERVER_PRINCIPAL": "LOGIN",
    "ENDPOINT": "ENDPOINT",
    "AVAILABILITY_GROUP": "AVAILABILITY GROUP",
}


class SQLServerScript:
    """SQL Server: logins and server roles at server level, then each database after `USE`."""

    USER = "USER "
    ROLE = "ROLE "

    def __init__(self, options: Options) -> None:
        self.o = options

    def header(self) -> list[Line]:
        return [comment("for sqlcmd or SSMS: USE switches database; names are [bracketed]")]

    def name(self, name: str) -> str:
        return bracket_ident(self.o.rename.account(name))

    def _database(self, subject: Subject) -> str | None:
        db = _attributes(subject.snapshot).get("database")
        return self.o.rename.database(str(db)) if db else None

    def user_in(self, subject: Subject) -> dict[str, str]:
        """database -> the user name this account is in it (a login's mapped users; a database principal's own)."""
        if self._database(subject) is not None:
            return {self._database(subject): subject.username}
        users = {}
        for p in _privileges(subject.snapshot):
            if p["privilege"].startswith(self.USER) and p["scope"].startswith("database:"):
                users[self.o.rename.database(split_scope(p["scope"])[1][0])] = p["privilege"][len(self.USER) :]
        return users

    def create(self, subject: Subject) -> list[Line]:
        attrs, me = _attributes(subject.snapshot), self.name(subject.username)
        database = self._database(subject)
        if subject.kind == "role":
            if attrs.get("fixed_role") or subject.username == "public":
                return [comment(f"{subject.username} is a fixed role: not created", database)]
            if database is None:
                return [Line(f"CREATE SERVER ROLE {me};")]
            return [Line(f"CREATE ROLE {me};", database)]
        if database is not None:
            return [self._database_user(subject, attrs, me, database)]
        kind = str(attrs.get("type") or "S")
        options = []
        if attrs.get("default_database"):
            options.append(
                f"DEFAULT_DATABASE = {bracket_ident(self.o.rename.database(str(attrs['default_database'])))}"
            )
        if kind == "S":
            must = " MUST_CHANGE" if attrs.get("must_change") else ""
            lines = [comment(f"login {subject.username}: the password is a placeholder; set the real one")]
            options.insert(0, f"PASSWORD = {nvarchar_literal(self.o.password())}{must}")
            for key, word in (("policy_checked", "CHECK_POLICY"), ("expiration_checked", "CHECK_EXPIRATION")):
                if attrs.get(key) is not None:
                    options.append(f"{word} = {'ON' if attrs[key] else 'OFF'}")
            lines.append(Line(f"CREATE LOGIN {me} WITH {', '.join(options)};"))
        elif kind in ("U", "G"):
            lines = [Line(f"CREATE LOGIN {me} FROM WINDOWS{' WITH ' + ', '.join(options) if options else ''};")]
        elif kind in ("E", "X"):
            lines = [Line(f"CREATE LOGIN {me} FROM EXTERNAL PROVIDER;")]
        else:
            return [comment(f"login {subject.username} maps to a certificate or key (type {kind}): create it by hand")]
        if attrs.get("disabled"):
            lines.append(Line(f"ALTER LOGIN {me} DISABLE;"))
        return lines

    def _database_user(self, subject: Subject, attrs: dict[str, Any], me: str, database: str) -> Line:
        auth = str(attrs.get("authentication_type") or "").upper()
        if auth == "DATABASE":
            return Line(f"CREATE USER {me} WITH PASSWORD = {nvarchar_literal(self.o.password())};", database)
        if auth == "WINDOWS":
            return Line(f"CREATE USER {me};", database)
        if auth == "EXTERNAL":
            return Line(f"CREATE USER {me} FROM EXTERNAL PROVIDER;", database)
        if attrs.get("orphaned"):
            return Line(f"CREATE USER {me} WITHOUT LOGIN;  -- orphaned: its login is gone", database)
        return Line(f"CREATE USER {me} WITHOUT LOGIN;", database)

    def target(self, scope: str) -> tuple[str | None, str | None, str]:
        """(database, the ON clause or None for a database/server-wide permission, level)."""
        level, parts = _level(scope)
        if level == "global":
            return None, None, level
        if level == "database" and len(parts) == 1:
            return self.o.rename.database(parts[0]), None, level
        if level == "schema" and len(parts) == 2:
            return self.o.rename.database(parts[0]), f"SCHEMA::{bracket_ident(parts[1])}", level
        if level == "object" and len(parts) == 3 and parts[0] == "server":
            cls = _SQLSERVER_CLASSES.get(parts[1])
            if cls is None:
                raise GrantScriptError(f"server securable class {parts[1]!r} cannot be written")
            name = self.name(parts[2]) if cls == "LOGIN" else bracket_ident(parts[2])
            return None, f"{cls}::{name}", level
        if level == "object" and len(parts) == 3 and parts[1] == "principal":
            return self.o.rename.database(parts[0]), f"USER::{self.name(parts[2])}", level
        if level == "object" and len(parts) == 3 and not parts[1].startswith("class"):
            return (
                self.o.rename.database(parts[0]),
                f"OBJECT::{bracket_ident(parts[1])}.{bracket_ident(parts[2])}",
                level,
            )
        if level == "column" and len(parts) == 4:
            on = f"OBJECT::{bracket_ident(parts[1])}.{bracket_ident(parts[2])} ({bracket_ident(parts[3])})"
            return self.o.rename.database(parts[0]), on, level
        raise GrantScriptError(f"scope {scope!r} is not a SQL Server securable WhaleFall can write")

    def _principal(self, subject: Subject, database: str | None) -> str | None:
        if database is None:
            return self.name(subject.username)
        user = self.user_in(subject).get(database)
        return self.name(user) if user is not None else None

    def _is_owner(self, subject: Subject, database: str | None) -> bool:
        """The login owns the database (its user there is dbo): what it may do there comes with that."""
        if database is None or self._database(subject) is not None:
            return False
        return self.user_in(subject).get(database) == "DBO"

    def grants(self, subject: Subject) -> list[Line]:
        if subject.kind == "role" and _attributes(subject.snapshot).get("fixed_role") and subject.username != "public":
            return []  # what a fixed role may do is built in
        out, mapped = [], []
        for (scope, effect, grantable), names in _grouped(_privileges(subject.snapshot)).items():
            try:
                database, on, level = self.target(scope)
            except GrantScriptError as exc:  # a scope this writer cannot state: say so, write the rest
                out.append(comment(f"not written: {exc}"))
                continue
            if (
                on is not None
                and on.startswith(("ENDPOINT::", "AVAILABILITY GROUP::"))
                and on.split("::", 1)[1][1:-1].isdigit()
            ):
                out.append(comment(f"{', '.join(names)} on {scope}: the snapshot has the securable's id, not its name"))
                continue
            plain = []
            for name in names:
                if name.startswith(self.USER) and level == "database":
                    login = self.name(subject.username)
                    user = name[len(self.USER) :]
                    if user == "DBO":
                        mapped.append(
                            Line(
                                f"ALTER AUTHORIZATION ON DATABASE::{bracket_ident(database or '')} TO {login};",
                                database,
                            )
                        )
                        continue
                    mapped.append(Line(f"CREATE USER {self.name(user)} FOR LOGIN {login};", database))
                elif name.startswith(self.ROLE) and level == "database":
                    continue  # fixed database roles: see members()
                else:
                    plain.append(name)
            if not plain:
                continue
            if self._is_owner(subject, database):
                continue
            who = self._principal(subject, database)
            if who is None:
                out.append(
                    comment(f"{', '.join(plain)} on {scope}: the account has no user in that database", database)
                )
                continue
            verb = "DENY" if effect == "DENY" else "GRANT"
            clause = f" ON {on}" if on else ""
            option = " WITH GRANT OPTION" if grantable and verb == "GRANT" else ""
            out.append(Line(f"{verb} {', '.join(plain)}{clause} TO {who}{option};", database))
        return mapped + out

    def members(self, subject: Subject) -> list[Line]:
        out = []
        for p in _privileges(subject.snapshot):
            if p["privilege"].startswith(self.ROLE) and p["scope"].startswith("database:"):
                database = self.o.rename.database(split_scope(p["scope"])[1][0])
                who = self._principal(subject, database)
                role = bracket_ident(p["privilege"][len(self.ROLE) :].lower())
                if who is not None and not self._is_owner(subject, database):
                    out.append(Line(f"ALTER ROLE {role} ADD MEMBER {who};", database))
        for grant in _roles(subject.snapshot):
            out.append(self._membership(subject, grant["role"], add=True))
        return out

    def _membership(self, subject: Subject, role: str, *, add: bool) -> Line:
        verb = "ADD" if add else "DROP"
        if "::" in role:
            db, name = role.split("::", 1)
            database = self.o.rename.database(db)
            who = self._principal(subject, database)
            if who is None:
                return comment(f"member of {role}: the account has no user in that database", database)
            return Line(f"ALTER ROLE {self.name(name)} {verb} MEMBER {who};", database)
        return Line(f"ALTER SERVER ROLE {self.name(role)} {verb} MEMBER {self.name(subject.username)};")

    def revoke(self, subject: Subject, privileges: list[tuple[str, str]], roles: list[str]) -> list[Line]:
        out = []
        held = {(p["scope"], p["privilege"]) for p in _privileges(subject.snapshot)}
        for scope, privilege in privileges:
            database, on, level = self.target(scope)
            if (scope, privilege) not in held:
                out.append(comment(f"{privilege} on {scope} is not in the snapshot; revoked anyway", database))
            if level == "database" and privilege.startswith(self.USER):
                out.append(Line(f"DROP USER {self.name(privilege[len(self.USER) :])};", database))
                continue
            if level == "database" and privilege.startswith(self.ROLE):
                role = bracket_ident(privilege[len(self.ROLE) :].lower())
                who = self._principal(subject, database)
                out.append(Line(f"ALTER ROLE {role} DROP MEMBER {who};", database))
                continue
            who = self._principal(subject, database) or self.name(subject.username)
            out.append(Line(f"REVOKE {privilege}{f' ON {on}' if on else ''} FROM {who} CASCADE;", database))
        for role in roles:
            out.append(self._membership(subject, role, add=False))
        return out


# =========================================================================================
# Oracle
# =========================================================================================


_ORACLE_DIRECTORY = frozenset({"READ", "WRITE"})


class OracleScript:
    """Oracle: users and roles, system/administrative, object, column and schema privileges, roles, proxies."""

    def __init__(self, options: Options) -> None:
        self.o = options

    def header(self) -> list[Line]:
        return [comment('for SQL*Plus or SQLcl; names are "quoted" (case-sensitive as stored)')]

    def name(self, name: str) -> str:
        if name == "PUBLIC":
            return "PUBLIC"
        return dq_ident(self.o.rename.account(name))

    def create(self, subject: Subject) -> list[Line]:
        attrs, me = _attributes(subject.snapshot), self.name(subject.username)
        if subject.username == "PUBLIC":
            return [comment("PUBLIC exists in every database: not created")]
        if attrs.get("oracle_maintained"):
            return [comment(f"{subject.username} is Oracle-maintained: not created")]
        auth = str(attrs.get("authentication_type") or "").upper()
        external = attrs.get("external_name")
        if subject.kind == "role":
            required = str(attrs.get("password_required") or "").upper()
            if auth == "PASSWORD" or required == "YES":
                clause = f" IDENTIFIED BY {dq_ident(self.o.password())}"
            elif auth == "EXTERNAL":
                clause = " IDENTIFIED EXTERNALLY"
            elif auth == "GLOBAL":
                clause = " IDENTIFIED GLOBALLY"
            else:
                clause = ""
            return [Line(f"CREATE ROLE {me}{clause};")]
        if auth == "EXTERNAL":
            clause = f" IDENTIFIED EXTERNALLY{f' AS {sq_literal(str(external))}' if external else ''}"
        elif auth == "GLOBAL":
            clause = f" IDENTIFIED GLOBALLY AS {sq_literal(str(external or ''))}"
        elif auth == "NONE":
            clause = " NO AUTHENTICATION"
        else:
            clause = f" IDENTIFIED BY {dq_ident(self.o.password())}"
        for key, word in (
            ("default_tablespace", "DEFAULT TABLESPACE"),
            ("temporary_tablespace", "TEMPORARY TABLESPACE"),
            ("profile", "PROFILE"),
        ):
            if attrs.get(key):
                clause += f" {word} {dq_ident(str(attrs[key]))}"
        if attrs.get("expired") or attrs.get("password_expired"):
            clause += " PASSWORD EXPIRE"
        if attrs.get("locked"):
            clause += " ACCOUNT LOCK"
        return [Line(f"CREATE USER {me}{clause};")]

    def target(self, scope: str) -> tuple[str | None, str]:
        level, parts = _level(scope)
        if level == "global":
            return None, level
        if level == "object" and len(parts) == 2:
            return f"{dq_ident(parts[0])}.{dq_ident(parts[1])}", level
        if level == "column" and len(parts) == 3:
            return f"{dq_ident(parts[0])}.{dq_ident(parts[1])}", level
        if level == "schema" and len(parts) == 1:
            return f"SCHEMA {dq_ident(parts[0])}", level
        if level == "proxy" and len(parts) == 1:
            return self.name(parts[0]), level
        raise GrantScriptError(f"scope {scope!r} is not an Oracle grant scope")

    @staticmethod
    def _directory(scope: str, level: str, names: Iterable[str]) -> str | None:
        """`DIRECTORY "X"` for READ/WRITE on a SYS object: directories are SYS's (READ on a SYS table is rare)."""
        if level == "object" and split_scope(scope)[1][0] == "SYS" and set(names) <= _ORACLE_DIRECTORY:
            return f"DIRECTORY {dq_ident(split_scope(scope)[1][1])}"
        return None

    def grants(self, subject: Subject) -> list[Line]:
        if _attributes(subject.snapshot).get("oracle_maintained"):
            return []  # an Oracle-maintained account's grants come with the database
        me, out = self.name(subject.username), []
        columns: dict[tuple[str, bool], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for (scope, _effect, grantable), names in _grouped(_privileges(subject.snapshot)).items():
            try:
                on, level = self.target(scope)
            except GrantScriptError as exc:  # a scope this writer cannot state: say so, write the rest
                out.append(comment(f"not written: {exc}"))
                continue
            on = self._directory(scope, level, names) or on
            if level == "column":
                for name in names:
                    columns[(on, grantable)][name].append(dq_ident(split_scope(scope)[1][2]))
                continue
            if level == "proxy":
                for clause in names:
                    rest = clause[len("CONNECT THROUGH") :] if clause.startswith("CONNECT THROUGH") else ""
                    out.append(Line(f"ALTER USER {on} GRANT CONNECT THROUGH {me}{rest};"))
                continue
            option = (
                (" WITH ADMIN OPTION" if level in ("global", "schema") else " WITH GRANT OPTION") if grantable else ""
            )
            clause = f" ON {on}" if on else ""
            out.append(Line(f"GRANT {', '.join(names)}{clause} TO {me}{option};"))
        for (on, grantable), by_name in columns.items():
            for name, cols in by_name.items():
                option = " WITH GRANT OPTION" if grantable else ""
                out.append(Line(f"GRANT {name} ({', '.join(cols)}) ON {on} TO {me}{option};"))
        return out

    def members(self, subject: Subject) -> list[Line]:
        if _attributes(subject.snapshot).get("oracle_maintained"):
            return []
        me, out, defaults, others = self.name(subject.username), [], [], []
        for grant in _roles(subject.snapshot):
            role = self.name(grant["role"])
            out.append(Line(f"GRANT {role} TO {me}{' WITH ADMIN OPTION' if grant.get('admin_option') else ''};"))
            (defaults if grant.get("default", True) else others).append(role)
        if others and subject.kind != "role" and subject.username != "PUBLIC":
            which = ", ".join(defaults) if defaults else "NONE"
            out.append(Line(f"ALTER USER {me} DEFAULT ROLE {which};"))
        return out

    def revoke(self, subject: Subject, privileges: list[tuple[str, str]], roles: list[str]) -> list[Line]:
        me, out = self.name(subject.username), []
        held = {(p["scope"], p["privilege"]) for p in _privileges(subject.snapshot)}
        for scope, privilege in privileges:
            on, level = self.target(scope)
            if (scope, privilege) not in held:
                out.append(comment(f"{privilege} on {scope} is not in the snapshot; revoked anyway"))
            if level == "proxy":
                out.append(Line(f"ALTER USER {on} REVOKE CONNECT THROUGH {me};"))
            elif level == "column":
                out.append(
                    comment(f"Oracle revokes column privileges per table: this takes {privilege} on all columns")
                )
                out.append(Line(f"REVOKE {privilege} ON {on} FROM {me};"))
            else:
                on = self._directory(scope, level, [privilege]) or on
                out.append(Line(f"REVOKE {privilege}{f' ON {on}' if on else ''} FROM {me};"))
        for role in roles:
            out.append(Line(f"REVOKE {self.name(role)} FROM {me};"))
        return out


_GENERATORS = {
    "mysql": MySQLScript,
    "postgresql": PostgreSQLScript,
    "sqlserver": SQLServerScript,
    "oracle": OracleScript,
}


def generator(db_type: str, options: Options) -> Any:
    """The script writer of a family; an unknown family is bad input."""
    cls = _GENERATORS.get(db_type)
    if cls is None:
        raise GrantScriptError(f"no grant scripts for database type {db_type!r}", field="db_type")
    return cls(options)


# =========================================================================================
# rendering
# =========================================================================================


class Renderer:
    """Turns Lines into text, switching database (psql \\connect, T-SQL USE) only when the next line needs another.

    psql reads `\\connect` up to the end of the line, so a database whose name holds a line break
    cannot be switched to: its statements are written commented out (with a note) rather than run
    in whatever database the session is in.
    """

    def __init__(self, db_type: str) -> None:
        self.db_type = db_type
        self.current: str | None = None
        self.unreachable = False

    def switch(self, database: str) -> str | None:
        """The line that switches to `database` ("" when the family has none, None when it cannot be written)."""
        if self.db_type == "postgresql":
            if comment_text(database) != database:
                return None
            return "\\connect " + dq_ident(database)
        if self.db_type == "sqlserver":
            return f"USE {bracket_ident(database)};"
        return ""

    def render(self, lines: Iterable[Line]) -> str:
        out = []
        for line in lines:
            if line.database is not None and line.database != self.current:
                switch = self.switch(line.database)
                self.unreachable = switch is None
                if switch is None:
                    out.append(
                        comment(
                            f"database {line.database} has a control character in its name, which psql's "
                            "\\connect cannot take: connect to it yourself and run the commented statements below"
                        ).text
                    )
                elif switch:
                    out.append(switch)
                self.current = line.database
            if self.unreachable and line.database is not None and not line.text.startswith("-- "):
                out.append(comment(line.text).text)
            else:
                out.append(line.text)
        return "".join(text + "\n" for text in out)


def subject_lines(writer: Any, subject: Subject, phase: str) -> list[Line]:
    """One account's lines of one phase: `create`, then `grants` (privileges) and `members` (roles)."""
    if subject.snapshot is None:
        return (
            [comment(f"{subject.identity}: no snapshot at that time, nothing to replay")] if phase == "create" else []
        )
    return getattr(writer, phase)(subject)


def account_lines(writer: Any, subject: Subject) -> list[Line]:
    """A single account's whole script body: create, grants, memberships (roles it holds must exist)."""
    lines = [comment(f"account {subject.identity} ({subject.kind})")]
    for phase in ("create", "grants", "members"):
        lines.extend(subject_lines(writer, subject, phase))
    return lines


def revoke_lines(
    writer: Any, subject: Subject, privileges: Iterable[tuple[str, str]], roles: Iterable[str]
) -> list[Line]:
    """The REVOKE lines for chosen (scope, privilege) pairs and role memberships; bad pairs are GrantScriptError."""
    pairs = []
    for pair in privileges:
        if not isinstance(pair, tuple | list) or len(pair) != 2 or not all(isinstance(v, str) and v for v in pair):
            raise GrantScriptError(f"a privilege is a (scope, privilege) pair of texts, not {pair!r}")
        pairs.append((pair[0], pair[1].upper()))
    names = []
    for role in roles:
        if not isinstance(role, str) or not role:
            raise GrantScriptError(f"a role is a non-empty text, not {role!r}", field="roles")
        names.append(role)
    if not pairs and not names:
        raise GrantScriptError("choose at least one privilege or role to revoke", code="empty")
    held = {(p["scope"], str(p["privilege"]).upper()) for p in _privileges(subject.snapshot)}
    lines = [comment(f"revoke from {subject.identity}")]
    for pair in pairs:
        try:
            lines.extend(writer.revoke(subject, [pair], []))
        except GrantScriptError as exc:
            if pair not in held:
                raise  # bad input
            lines.append(comment(f"not written: {exc}"))  # held, but not a scope this writer can state
    if names:
        lines.extend(writer.revoke(subject, [], names))
    return lines


def script_header(db_type: str, title: str, writer: Any) -> list[Line]:
    """The comment block every script opens with: what it is, and that no password is in it."""
    return [
        comment(title),
        comment("generated by WhaleFall from stored snapshots; review before running, nothing was executed"),
        comment(
            "passwords and hashes are never stored by WhaleFall: accounts that had one get a random "
            "placeholder here; set the real password (ALTER USER / ALTER ROLE / ALTER LOGIN) after replaying"
        ),
        *writer.header(),
    ]

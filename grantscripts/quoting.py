"""Quoting of names and literals per database family, and comment text that cannot end a comment.

Why its own module: every statement a script holds is built from names an account's owner
chose (quotes, backticks, brackets, semicolons, newlines), so the one place that turns a name
into SQL is kept small and tested on its own. Nothing here knows a snapshot.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")


def comment_text(text: str) -> str:
    """`text` safe inside a `-- ` comment: control characters (a newline would end it) as `\\xNN`/`\\uNNNN`."""

    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _CONTROL.sub(escape, text)


# --- MySQL / MariaDB ------------------------------------------------------------------


def mysql_ident(name: str) -> str:
    """A backtick-quoted identifier (backticks doubled); backslashes mean nothing inside backticks."""
    return "`" + name.replace("`", "``") + "`"


def mysql_literal(text: str, *, no_backslash_escapes: bool = False) -> str:
    """A string literal: quotes doubled; backslashes doubled unless the session's sql_mode has NO_BACKSLASH_ESCAPES.

    Why the mode matters: by default `\\` starts an escape in a literal, so `a\\b` must be written
    `'a\\\\b'`; under NO_BACKSLASH_ESCAPES the same text would mean two backslashes.
    """
    body = text.replace("'", "''")
    if not no_backslash_escapes:
        body = body.replace("\\", "\\\\")
    return "'" + body + "'"


def mysql_account(user: str, host: str | None) -> str:
    """`user`@`host` as backtick identifiers (independent of sql_mode), or a bare role name (host None)."""
    if host is None:
        return mysql_ident(user)
    return f"{mysql_ident(user)}@{mysql_ident(host)}"


def _mysql_unquote(text: str, start: int) -> tuple[str, int]:
    """Read a `'...'` literal as accountsync.adapters.mysql.account_identity writes it (backslash escapes)."""
    if text[start] != "'":
        raise ValueError(f"expected a quoted name at {start} in {text!r}")
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if ch == "'":
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise ValueError(f"unterminated quoted name in {text!r}")


def mysql_parse_identity(identity: str) -> tuple[str, str | None]:
    """(user, host) of `'user'@'host'`, or (name, None) of a MariaDB role `'name'`."""
    user, end = _mysql_unquote(identity, 0)
    if end == len(identity):
        return user, None
    if identity[end] != "@":
        raise ValueError(f"not an account identity: {identity!r}")
    host, end = _mysql_unquote(identity, end + 1)
    if end != len(identity):
        raise ValueError(f"not an account identity: {identity!r}")
    return user, host


# --- PostgreSQL and Oracle --------------------------------------------------------------


def dq_ident(name: str) -> str:
    """A double-quoted identifier (double quotes doubled): PostgreSQL and Oracle."""
    return '"' + name.replace('"', '""') + '"'


def sq_literal(text: str) -> str:
    """A standard SQL string literal, quotes doubled (PostgreSQL with standard_conforming_strings, Oracle)."""
    return "'" + text.replace("'", "''") + "'"


# --- SQL Server -------------------------------------------------------------------------


def bracket_ident(name: str) -> str:
    """A [bracketed] identifier, `]` doubled."""
    return "[" + name.replace("]", "]]") + "]"


def nvarchar_literal(text: str) -> str:
    """An N'...' literal, quotes doubled."""
    return "N'" + text.replace("'", "''") + "'"

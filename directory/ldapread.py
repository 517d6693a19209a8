"""One read of the directory with python-ldap: bind read-only, paged searches, certificates verified.

Why all or nothing: the caller marks people deleted when they are missing from a read, so a read
that is not known to be complete (a size or admin limit, a page that failed, a timeout, a server
that refused paging) must raise ``DirectoryReadError`` instead of returning what it got. Every
failure is classified (``kind``) so the status can say what to fix; the bind password is never
part of a message.
"""

from __future__ import annotations

import contextlib
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

import ldap
import ldapurl
from ldap.controls import SimplePagedResultsControl

from directory.conf import DirectoryConf


class DirectoryReadError(Exception):
    """A read that did not complete; ``kind`` is one of the error kinds in docs/directory.md."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass
class PersonEntry:
    guid: str
    dn: str
    uid: str
    name: str
    mail: str
    department: str
    manager_dn: str
    disabled: bool


@dataclass
class GroupEntry:
    guid: str
    dn: str
    name: str
    member_dns: list[str] = field(default_factory=list)


@dataclass
class DirectorySnapshot:
    people: list[PersonEntry]
    groups: list[GroupEntry]
    pages: int


def _info(exc: ldap.LDAPError) -> str:
    arg = exc.args[0] if exc.args else {}
    if isinstance(arg, dict):
        desc = str(arg.get("desc") or type(exc).__name__)
        info = str(arg.get("info") or "").strip()
        return f"{desc}: {info}" if info else desc
    return str(arg) or type(exc).__name__


def _tcp_reachable(uri: str, timeout: float) -> bool:
    """Whether the first server of ``uri`` accepts a TCP connection (an LDAPS handshake that failed, then)."""
    try:
        parsed = ldapurl.LDAPUrl(uri.split()[0])
        host, _, port = parsed.hostport.rpartition(":") if ":" in parsed.hostport else (parsed.hostport, "", "")
        default = 636 if parsed.urlscheme == "ldaps" else 389
        with socket.create_connection((host or "localhost", int(port or default)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def classify(exc: ldap.LDAPError, *, phase: str, conf: DirectoryConf | None = None) -> DirectoryReadError:
    """The error kind of a python-ldap exception, for the status and the logs.

    libldap reports a refused LDAPS certificate as "Can't contact LDAP server" with no detail; when the
    port does accept TCP, the server was there and the TLS handshake (certificate, name) is what failed.
    """
    text = _info(exc)
    lowered = text.lower()
    if isinstance(exc, ldap.SERVER_DOWN | ldap.CONNECT_ERROR):
        if "certificate" in lowered or "tls" in lowered or "ssl" in lowered:
            return DirectoryReadError("tls", f"TLS: {text}")
        tls = conf is not None and (conf.uri.startswith("ldaps://") or conf.start_tls)
        if tls and phase in ("connect", "bind") and _tcp_reachable(conf.uri, min(conf.timeout, 5)):
            return DirectoryReadError(
                "tls", f"TLS handshake failed (certificate not trusted or not issued for this name): {text}"
            )
        return DirectoryReadError("unreachable", text)
    if isinstance(exc, ldap.TIMEOUT | ldap.TIMELIMIT_EXCEEDED):
        return DirectoryReadError("timeout", text)
    if isinstance(exc, ldap.INVALID_CREDENTIALS | ldap.INAPPROPRIATE_AUTH | ldap.STRONG_AUTH_REQUIRED):
        return DirectoryReadError("bind", f"bind refused: {text}")
    if isinstance(exc, ldap.CONFIDENTIALITY_REQUIRED):
        return DirectoryReadError("tls", f"the server requires TLS: {text}")
    if isinstance(
        exc,
        ldap.SIZELIMIT_EXCEEDED
        | ldap.ADMINLIMIT_EXCEEDED
        | ldap.UNAVAILABLE_CRITICAL_EXTENSION
        | ldap.PARTIAL_RESULTS
        | ldap.UNAVAILABLE,
    ):
        return DirectoryReadError("partial", f"incomplete result: {text}")
    if isinstance(exc, ldap.INSUFFICIENT_ACCESS):
        return DirectoryReadError("permission", text)
    if isinstance(exc, ldap.NO_SUCH_OBJECT | ldap.FILTER_ERROR | ldap.UNDEFINED_TYPE | ldap.INVALID_DN_SYNTAX):
        return DirectoryReadError("configuration", text)
    if phase == "bind" and isinstance(exc, ldap.UNWILLING_TO_PERFORM):
        return DirectoryReadError("bind", f"bind refused: {text}")
    return DirectoryReadError("error", f"{type(exc).__name__}: {text}")


def _connect(conf: DirectoryConf) -> Any:
    conn = ldap.initialize(conf.uri, bytes_mode=False)
    conn.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
    conn.set_option(ldap.OPT_REFERRALS, 0)  # AD's referrals to other domains would be followed unauthenticated
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, conf.timeout)
    conn.set_option(ldap.OPT_TIMEOUT, conf.timeout)
    conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
    if conf.ca_file:
        conn.set_option(ldap.OPT_X_TLS_CACERTFILE, conf.ca_file)
    conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)  # the TLS options above apply to this connection
    if conf.start_tls and conf.uri.startswith("ldap://"):
        conn.start_tls_s()
    return conn


def _paged_search(conn: Any, conf: DirectoryConf, base: str, filterstr: str, attrs: list[str]) -> tuple[list, int]:
    """Every entry under ``base``, a page at a time (RFC 2696); the server's last page says it is complete."""
    control = SimplePagedResultsControl(True, size=conf.page_size, cookie="")
    entries: list[tuple[str, dict[str, list[bytes]]]] = []
    pages = 0
    while True:
        msgid = conn.search_ext(base, ldap.SCOPE_SUBTREE, filterstr, attrs, serverctrls=[control], timeout=conf.timeout)
        _rtype, rdata, _rmsgid, controls = conn.result3(msgid, timeout=conf.timeout)
        pages += 1
        entries.extend((dn, entry) for dn, entry in rdata if dn is not None)  # None: a search reference
        paged = [c for c in controls or () if c.controlType == SimplePagedResultsControl.controlType]
        if not paged:
            raise DirectoryReadError(
                "partial", f"the server did not answer the paged results control on {base!r}; the result may be cut"
            )
        if not paged[0].cookie:
            return entries, pages
        control.cookie = paged[0].cookie


def _text(entry: dict[str, list[bytes]], attr: str) -> str:
    values = _texts(entry, attr)
    return values[0] if values else ""


def _texts(entry: dict[str, list[bytes]], attr: str) -> list[str]:
    lowered = attr.lower()
    for key, values in entry.items():
        if key.lower() == lowered:
            return [v.decode("utf-8", "replace") for v in values]
    return []


def _guid(entry: dict[str, list[bytes]], attr: str, dn: str) -> str:
    """objectGUID is 16 bytes (little-endian UUID); entryUUID is text; without either, the DN (lower-cased)."""
    lowered = attr.lower()
    for key, values in entry.items():
        if key.lower() == lowered and values:
            raw = values[0]
            if len(raw) == 16 and key.lower() in ("objectguid", "msds-objectguid"):
                return str(uuid.UUID(bytes_le=raw))
            return raw.decode("utf-8", "replace").lower()
    return "dn:" + dn.lower()


def read_directory(conf: DirectoryConf) -> DirectorySnapshot:
    """Bind, read every person and group, unbind; raises DirectoryReadError unless the read is complete."""
    phase = "connect"
    conn = None
    try:
        conn = _connect(conf)
        phase = "bind"
        conn.simple_bind_s(conf.bind_dn, conf.bind_password)
        phase = "search"
        people: list[PersonEntry] = []
        pages = 0
        person_attrs = [
            conf.attr_guid,
            conf.attr_username,
            conf.attr_name,
            "cn",
            conf.attr_mail,
            conf.attr_department,
            conf.attr_manager,
            conf.disabled_attr,
        ]
        for base in conf.user_bases:
            entries, n = _paged_search(conn, conf, base, conf.user_filter, person_attrs)
            pages += n
            for dn, entry in entries:
                people.append(
                    PersonEntry(
                        guid=_guid(entry, conf.attr_guid, dn),
                        dn=dn,
                        uid=_text(entry, conf.attr_username),
                        name=_text(entry, conf.attr_name) or _text(entry, "cn"),
                        mail=_text(entry, conf.attr_mail),
                        department=_text(entry, conf.attr_department),
                        manager_dn=_text(entry, conf.attr_manager),
                        disabled=conf.is_disabled(_texts(entry, conf.disabled_attr)),
                    )
                )
        groups: list[GroupEntry] = []
        group_attrs = [conf.attr_guid, conf.attr_group_name, "cn", conf.attr_member]
        for base in conf.group_bases:
            entries, n = _paged_search(conn, conf, base, conf.group_filter, group_attrs)
            pages += n
            for dn, entry in entries:
                groups.append(
                    GroupEntry(
                        guid=_guid(entry, conf.attr_guid, dn),
                        dn=dn,
                        name=_text(entry, conf.attr_group_name) or _text(entry, "cn"),
                        member_dns=_texts(entry, conf.attr_member),
                    )
                )
        return DirectorySnapshot(people=people, groups=groups, pages=pages)
    except ldap.LDAPError as exc:
        raise classify(exc, phase=phase, conf=conf) from exc
    finally:
        if conn is not None:
            with contextlib.suppress(ldap.LDAPError):
                conn.unbind_s()

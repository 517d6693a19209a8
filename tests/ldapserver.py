"""A throwaway OpenLDAP ``slapd`` on loopback, with a generated directory and LDAPS from a test CA.

Why a real server: sign-in (django-auth-ldap) and the directory cross-check must be proven against
the protocol, the schema and the access rules a real directory enforces, not a fake. The server gets
a slapd.conf and an mdb database in a temporary folder, two free ports on 127.0.0.1 (ldap:// and
ldaps://), a certificate signed by a CA made for the run (tests/live/tlsservers.make_pki: it names
IP 127.0.0.1 only), and nothing else on the machine is touched (no system slapd is needed or used).

The directory (BASE = dc=whalefall,dc=test):

- ``ou=people``: inetOrgPerson entries (uid, cn, sn, givenName, mail, departmentNumber, employeeType,
  manager, userPassword). The memberof overlay maintains ``memberOf`` on them, like Active Directory.
- ``ou=groups``: groupOfNames entries (``member`` DNs; a group may contain a group, for nested tests).
- ``ou=services``: ``cn=whalefall-reader``, the read-only bind account WhaleFall is configured with.
- Disabled marker: ``pwdAccountLockedTime: 000001010000Z`` (ppolicy overlay: the administrative,
  permanent lock of OpenLDAP). The server itself then refuses the person's bind, as AD refuses a
  disabled account; WhaleFall reads it with the configurable filter DISABLED_FILTER (on AD:
  ``(userAccountControl:1.2.840.113556.1.4.803:=2)``).

Use the session fixture ``ldap_server`` (tests/conftest.py) and its helpers; tests create uniquely
named entries (``server.unique("alice")``) and delete them after, and a test that stops the server
to simulate an outage uses ``with server.outage():`` so it is running again afterwards. A missing
slapd skips, and fails under WHALEFALL_REQUIRE_LIVE=1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

BASE = "dc=whalefall,dc=test"
PEOPLE = f"ou=people,{BASE}"
GROUPS = f"ou=groups,{BASE}"
SERVICES = f"ou=services,{BASE}"
ADMIN_DN = f"cn=admin,{BASE}"
ADMIN_PASSWORD = "ldap-admin-pw-5c1e"
READER_DN = f"cn=whalefall-reader,{SERVICES}"
READER_PASSWORD = "ldap-reader-pw-93ab"
POLICY_DN = f"cn=default,ou=policies,{BASE}"
LOCKED = "000001010000Z"  # ppolicy: locked until an administrator unlocks it
DISABLED_FILTER = "(pwdAccountLockedTime=*)"
SLAPD_CANDIDATES = ("/usr/sbin/slapd", "/usr/local/libexec/slapd")
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")


def slapd_binary() -> str | None:
    for path in (shutil.which("slapd"), *SLAPD_CANDIDATES):
        if path and os.access(path, os.X_OK):
            return path
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LdapServer:
    """A running slapd and the helpers to change its directory."""

    folder: Path
    port: int
    tls_port: int
    ca_file: Path  # the CA that signed the server certificate
    other_ca_file: Path  # a CA that signed nothing here (must be refused)
    slapd: str
    process: subprocess.Popen | None = None
    _created: list[str] = field(default_factory=list)

    base = BASE
    people = PEOPLE
    groups = GROUPS
    admin_dn = ADMIN_DN
    admin_password = ADMIN_PASSWORD
    reader_dn = READER_DN
    reader_password = READER_PASSWORD
    disabled_filter = DISABLED_FILTER

    # -- addresses ---------------------------------------------------------------------------
    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_uri(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    def person_dn(self, uid: str) -> str:
        return f"uid={uid},{PEOPLE}"

    def group_dn(self, cn: str) -> str:
        return f"cn={cn},{GROUPS}"

    @staticmethod
    def unique(prefix: str = "u") -> str:
        """A name no other test (or earlier run) uses: entries are shared by the whole session."""
        return f"{prefix}{uuid.uuid4().hex[:8]}"

    # -- life cycle --------------------------------------------------------------------------
    def start(self) -> None:
        if self.running:
            return
        log = open(self.folder / "slapd.log", "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [
                self.slapd,
                "-f",
                str(self.folder / "slapd.conf"),
                "-h",
                f"{self.uri}/ {self.ldaps_uri}/",
                "-d",
                "0",  # stay in the foreground, so the fixture owns the process
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"slapd exited: {(self.folder / 'slapd.log').read_text()[-2000:]}")
            with contextlib.suppress(Exception):
                self.admin().unbind_s()
                return
            time.sleep(0.1)
        raise RuntimeError(f"slapd did not answer on {self.uri}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """The directory is down inside the block (connections are refused) and back after it."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    # -- connections -------------------------------------------------------------------------
    def connect(self, dn: str | None = None, password: str | None = None, uri: str | None = None):
        import ldap

        conn = ldap.initialize(uri or self.uri)
        conn.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 5)
        if dn is not None:
            conn.simple_bind_s(dn, password or "")
        return conn

    def admin(self):
        return self.connect(ADMIN_DN, ADMIN_PASSWORD)

    # -- directory changes (as the directory administrator) -----------------------------------
    def add_person(
        self,
        uid: str,
        password: str = "Person-Pa55-word",
        *,
        cn: str | None = None,
        sn: str = "Tester",
        mail: str | None = None,
        department: str | None = None,
        employee_type: str | None = "employee",
        manager: str | None = None,
        groups: list[str] = (),  # type: ignore[assignment]
        extra: dict[str, list[str]] | None = None,
    ) -> str:
        """Add a person (and put them in `groups`, given by cn); returns the DN."""
        dn = self.person_dn(uid)
        attrs: dict[str, list[str]] = {
            "objectClass": ["inetOrgPerson"],
            "uid": [uid],
            "cn": [cn or f"{uid.capitalize()} {sn}"],
            "sn": [sn],
            "givenName": [(cn or uid).split()[0]],
            "mail": [mail or f"{uid}@whalefall.test"],
            "userPassword": [password],
        }
        if department:
            attrs["departmentNumber"] = [department]
        if employee_type:
            attrs["employeeType"] = [employee_type]
        if manager:
            attrs["manager"] = [manager if "=" in manager else self.person_dn(manager)]
        attrs.update(extra or {})
        self._add(dn, attrs)
        for group in groups:
            self.add_member(group, dn)
        return dn

    def add_group(self, cn: str, members: list[str] = (), description: str | None = None) -> str:  # type: ignore[assignment]
        """Add a groupOfNames; `members` are uids, group cns prefixed with "group:", or DNs."""
        dn = self.group_dn(cn)
        # groupOfNames needs a member: an empty group holds the group's own DN, as AD tools do for "none".
        resolved = [self._member_dn(m) for m in members] or [dn]
        attrs = {"objectClass": ["groupOfNames"], "cn": [cn], "member": resolved}
        if description:
            attrs["description"] = [description]
        self._add(dn, attrs)
        return dn

    def add_member(self, group_cn: str, member: str) -> None:
        import ldap

        conn = self.admin()
        try:
            conn.modify_s(self.group_dn(group_cn), [(ldap.MOD_ADD, "member", [self._member_dn(member).encode()])])
        except ldap.TYPE_OR_VALUE_EXISTS:
            pass
        finally:
            conn.unbind_s()

    def remove_member(self, group_cn: str, member: str) -> None:
        import ldap

        dn = self.group_dn(group_cn)
        conn = self.admin()
        try:
            members = self._values(conn, dn, "member")
            target = self._member_dn(member)
            remaining = [m for m in members if m.lower() != target.lower()]
            if len(remaining) == len(members):
                return
            # groupOfNames must keep one member: the group's own DN stands for "empty".
            conn.modify_s(dn, [(ldap.MOD_REPLACE, "member", [m.encode() for m in remaining or [dn]])])
        finally:
            conn.unbind_s()

    def modify(self, dn: str, **attrs: list[str] | str | None) -> None:
        """Replace attributes of an entry (None or [] deletes the attribute)."""
        import ldap

        mods = []
        for name, value in attrs.items():
            values = [value] if isinstance(value, str) else list(value or [])
            mods.append((ldap.MOD_REPLACE, name, [v.encode() for v in values] or None))
        conn = self.admin()
        try:
            conn.modify_s(dn, mods)
        finally:
            conn.unbind_s()

    def set_password(self, uid: str, password: str) -> None:
        self.modify(self.person_dn(uid), userPassword=password)

    def disable(self, uid: str) -> None:
        """Administratively lock the person (their bind is then refused, and DISABLED_FILTER matches)."""
        self.modify(self.person_dn(uid), pwdAccountLockedTime=LOCKED)

    def enable(self, uid: str) -> None:
        import ldap

        conn = self.admin()
        try:
            conn.modify_s(self.person_dn(uid), [(ldap.MOD_DELETE, "pwdAccountLockedTime", None)])
        except ldap.NO_SUCH_ATTRIBUTE:
            pass
        finally:
            conn.unbind_s()

    def delete(self, dn: str) -> None:
        """Delete an entry (a uid or a DN); the memberof overlay drops it from its groups."""
        import ldap

        dn = self._member_dn(dn)
        conn = self.admin()
        try:
            conn.delete_s(dn)
        except ldap.NO_SUCH_OBJECT:
            pass
        finally:
            conn.unbind_s()
        with contextlib.suppress(ValueError):
            self._created.remove(dn)

    def cleanup(self) -> None:
        """Delete every entry added through these helpers (people first, then groups)."""
        if not self.running:
            return
        for dn in sorted(self._created, key=lambda d: d.startswith("cn="), reverse=False):
            self.delete(dn)

    def entry(self, dn: str, attrs: list[str] | None = None) -> dict[str, list[str]] | None:
        import ldap

        conn = self.admin()
        try:
            found = conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", attrs or ["*", "+"])
        except ldap.NO_SUCH_OBJECT:
            return None
        finally:
            conn.unbind_s()
        return {k: [v.decode() for v in vs] for k, vs in found[0][1].items()}

    # -- internals ---------------------------------------------------------------------------
    def _member_dn(self, member: str) -> str:
        if member.startswith("group:"):
            return self.group_dn(member[len("group:") :])
        return member if "=" in member else self.person_dn(member)

    @staticmethod
    def _values(conn, dn: str, attr: str) -> list[str]:
        import ldap

        found = conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", [attr])
        return [v.decode() for v in found[0][1].get(attr, [])]

    def _add(self, dn: str, attrs: dict[str, list[str]]) -> None:
        conn = self.admin()
        try:
            conn.add_s(dn, [(k, [v.encode() for v in vs]) for k, vs in attrs.items()])
        finally:
            conn.unbind_s()
        self._created.append(dn)


def _config(folder: Path, cert: Path, key: Path, ca: Path) -> str:
    schemas = "\n".join(f"include {SCHEMA_DIR / name}.schema" for name in ("core", "cosine", "inetorgperson", "nis"))
    return f"""{schemas}
modulepath {MODULE_DIR}
moduleload back_mdb
moduleload memberof
moduleload ppolicy
pidfile {folder / "slapd.pid"}
argsfile {folder / "slapd.args"}
TLSCACertificateFile {ca}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
sizelimit unlimited

database mdb
maxsize 104857600
suffix "{BASE}"
rootdn "{ADMIN_DN}"
rootpw {ADMIN_PASSWORD}
directory {folder / "db"}
index objectClass eq
index uid,cn,mail eq
index member,memberOf eq
overlay memberof
memberof-refint TRUE
overlay ppolicy
ppolicy_default "{POLICY_DN}"
access to attrs=userPassword
  by self write
  by anonymous auth
  by * none
access to *
  by dn.exact="{READER_DN}" read
  by self read
  by * none
"""


def _seed(server: LdapServer) -> None:
    server._add(BASE, {"objectClass": ["dcObject", "organization"], "dc": ["whalefall"], "o": ["WhaleFall test"]})
    for dn, ou in ((PEOPLE, "people"), (GROUPS, "groups"), (SERVICES, "services")):
        server._add(dn, {"objectClass": ["organizationalUnit"], "ou": [ou]})
    server._add(f"ou=policies,{BASE}", {"objectClass": ["organizationalUnit"], "ou": ["policies"]})
    # Lockout on, but no automatic lockout after failures (pwdMaxFailure 0): only an administrator's lock.
    server._add(
        POLICY_DN,
        {
            "objectClass": ["organizationalRole", "pwdPolicy"],
            "cn": ["default"],
            "pwdAttribute": ["userPassword"],
            "pwdLockout": ["TRUE"],
            "pwdMaxFailure": ["0"],
            "pwdLockoutDuration": ["0"],
        },
    )
    server._add(
        READER_DN,
        {
            "objectClass": ["organizationalRole", "simpleSecurityObject"],
            "cn": ["whalefall-reader"],
            "userPassword": [READER_PASSWORD],
        },
    )
    server._created.clear()  # the skeleton stays for the whole session


def start_ldap_server() -> LdapServer:
    """Start a fresh slapd with the directory skeleton (ou=people, ou=groups, the reader account).

    Raises FileNotFoundError when slapd is not installed (the fixture turns that into skip/fail).
    """
    from tests.live.tlsservers import make_pki

    slapd = slapd_binary()
    if slapd is None:
        raise FileNotFoundError("slapd is not installed (Debian packages slapd, ldap-utils)")
    folder = Path(tempfile.mkdtemp(prefix="wf-slapd-"))
    (folder / "db").mkdir()
    pki = make_pki()
    files = {
        "ca.pem": pki.ca_pem,
        "other-ca.pem": pki.other_ca_pem,
        "server.pem": pki.server_cert_pem,
        "server.key": pki.server_key_pem,
    }
    for name, text in files.items():
        (folder / name).write_text(text)
    (folder / "server.key").chmod(0o600)
    (folder / "slapd.conf").write_text(_config(folder, folder / "server.pem", folder / "server.key", folder / "ca.pem"))
    server = LdapServer(
        folder=folder,
        port=free_port(),
        tls_port=free_port(),
        ca_file=folder / "ca.pem",
        other_ca_file=folder / "other-ca.pem",
        slapd=slapd,
    )
    try:
        server.start()
        _seed(server)
    except BaseException:
        stop_ldap_server(server)  # never leave a slapd behind
        raise
    return server


def stop_ldap_server(server: LdapServer) -> None:
    server.stop()
    shutil.rmtree(server.folder, ignore_errors=True)

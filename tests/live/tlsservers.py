"""Throwaway TLS-enabled PostgreSQL and MariaDB servers on loopback, with a CA made for the test.

Why their own servers: the machine's servers run without TLS and their configuration is not the
tests' to change. Each server here gets a fresh data directory in a temporary folder, a free port on
127.0.0.1, a server certificate signed by a CA generated for the run (naming 127.0.0.1 only), and a
monitoring login that must use TLS. They are stopped and removed when the test session ends.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PASSWORD = "tls-monitor-pw-7f3a"
MONITOR = "wf_tls_mon"
CERT_USER = "wf_tls_certuser"  # PostgreSQL: must also present a client certificate


@dataclass
class Pki:
    ca_pem: str
    other_ca_pem: str  # a CA that signed nothing the servers present
    server_cert_pem: str  # names IP 127.0.0.1 only
    server_key_pem: str
    misnamed_cert_pem: str  # signed by the CA, names db.whalefall.test only
    misnamed_key_pem: str
    client_cert_pem: str  # CN=CERT_USER, signed by the CA
    client_key_pem: str


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _ca(common: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, common: str, names: list[x509.GeneralName] | None
) -> tuple[str, str]:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM).decode(), _pem_key(key)


def make_pki() -> Pki:
    ca, ca_key = _ca("WhaleFall test CA")
    other, _other_key = _ca("Somebody else's CA")
    loopback = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server_cert, server_key = _leaf(ca, ca_key, "127.0.0.1", loopback)
    misnamed_cert, misnamed_key = _leaf(ca, ca_key, "db.whalefall.test", [x509.DNSName("db.whalefall.test")])
    client_cert, client_key = _leaf(ca, ca_key, CERT_USER, None)
    return Pki(
        ca_pem=ca.public_bytes(serialization.Encoding.PEM).decode(),
        other_ca_pem=other.public_bytes(serialization.Encoding.PEM).decode(),
        server_cert_pem=server_cert,
        server_key_pem=server_key,
        misnamed_cert_pem=misnamed_cert,
        misnamed_key_pem=misnamed_key,
        client_cert_pem=client_cert,
        client_key_pem=client_key,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen | None, log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}): {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the server did not listen on 127.0.0.1:{port}: {log.read_text(errors='replace')[-2000:]}")


def _owned_by(path: Path, user: str | None) -> None:
    if user is None:
        return
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _as(user: str | None, argv: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *argv] if user else argv


def _server_user(name: str) -> str | None:
    """As root, servers run as their Debian system user (PostgreSQL refuses root); otherwise as ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(name)
    except KeyError as exc:
        raise RuntimeError(
            f"running as root needs the {name!r} system user (Debian's server package makes it)"
        ) from exc
    return name


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.write_text(text)
    path.chmod(mode)


@dataclass
class TlsServer:
    port: int
    folder: Path
    stop_argv: list[str] | None = None
    process: subprocess.Popen | None = None


def _postgres_bin(tool: str) -> str:
    found = shutil.which(tool)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"))
    if not candidates:
        raise RuntimeError(f"PostgreSQL's {tool} is not installed (Debian package postgresql)")
    return str(candidates[-1])


@contextlib.contextmanager
def tls_postgres(pki: Pki) -> Iterator[TlsServer]:
    """PostgreSQL with ssl=on; MONITOR logs in with SCRAM over TLS only, CERT_USER also with a client certificate."""
    user = _server_user("postgres")
    folder = Path(tempfile.mkdtemp(prefix="wf-tls-pg-"))
    data = folder / "data"
    port = free_port()
    log = folder / "server.log"
    try:
        folder.chmod(0o755)
        _owned_by(folder, user)
        subprocess.run(
            _as(user, [_postgres_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]),
            check=True,
            capture_output=True,
        )
        _write(data / "server.crt", pki.server_cert_pem)
        _write(data / "server.key", pki.server_key_pem, 0o600)
        _write(data / "ca.crt", pki.ca_pem)
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{folder}'\n"
                "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'ca.crt'\n"
                "fsync = off\nshared_buffers = 16MB\npassword_encryption = 'scram-sha-256'\n"
            )
        _write(
            data / "pg_hba.conf",
            "local all all trust\n"
            f"hostssl all {CERT_USER} 127.0.0.1/32 scram-sha-256 clientcert=verify-full\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 reject\n",
        )
        _owned_by(folder, user)
        subprocess.run(
            _as(user, [_postgres_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "start"]),
            check=True,
            capture_output=True,
        )
        server = TlsServer(
            port, folder, _as(user, [_postgres_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])
        )
        _wait_for_port(port, None, log)
        import psycopg

        with psycopg.connect(host=str(folder), port=port, user="postgres", dbname="postgres", autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {MONITOR} LOGIN PASSWORD '{PASSWORD}'")
            conn.execute(f"CREATE ROLE {CERT_USER} LOGIN PASSWORD '{PASSWORD}'")
            conn.execute(f"GRANT pg_read_all_settings TO {MONITOR}, {CERT_USER}")
        yield server
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(
                _as(user, [_postgres_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def tls_mariadb(pki: Pki) -> Iterator[TlsServer]:
    """MariaDB with TLS; MONITOR@127.0.0.1 must use it (REQUIRE SSL). `swap_certificate` changes what it presents."""
    user = _server_user("mysql")
    folder = Path(tempfile.mkdtemp(prefix="wf-tls-maria-"))
    data = folder / "data"
    port = free_port()
    log = folder / "server.log"
    process = None
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    server_bin = shutil.which("mariadbd") or ("/usr/sbin/mariadbd" if Path("/usr/sbin/mariadbd").exists() else None)
    if not install or not server_bin:
        raise RuntimeError("MariaDB's server is not installed (Debian package mariadb-server)")
    try:
        folder.chmod(0o755)
        _write(folder / "server.crt", pki.server_cert_pem)
        _write(folder / "server.key", pki.server_key_pem, 0o600)
        _write(folder / "ca.crt", pki.ca_pem)
        _owned_by(folder, user)
        subprocess.run(
            [
                install,
                "--no-defaults",
                f"--datadir={data}",
                *([f"--user={user}"] if user else []),
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
        )
        argv = [
            server_bin,
            "--no-defaults",
            f"--datadir={data}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--socket={folder / 'mysqld.sock'}",
            f"--pid-file={folder / 'mysqld.pid'}",
            f"--log-error={log}",
            f"--ssl-ca={folder / 'ca.crt'}",
            f"--ssl-cert={folder / 'server.crt'}",
            f"--ssl-key={folder / 'server.key'}",
            "--innodb-buffer-pool-size=16M",
            "--skip-log-bin",
            *([f"--user={user}"] if user else []),
        ]
        log.touch()
        _owned_by(folder, user)
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(port, process, log)
        server = TlsServer(port, folder, process=process)
        with admin_mariadb(server) as conn:
            cursor = conn.cursor()
            cursor.execute(f"CREATE USER '{MONITOR}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}' REQUIRE SSL")
            cursor.execute(f"GRANT SELECT ON mysql.* TO '{MONITOR}'@'127.0.0.1'")
        yield server
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def admin_mariadb(server: TlsServer) -> Iterator[object]:
    import MySQLdb

    conn = MySQLdb.connect(unix_socket=str(server.folder / "mysqld.sock"), user="root", autocommit=True)
    try:
        yield conn
    finally:
        conn.close()


def swap_certificate(server: TlsServer, cert_pem: str, key_pem: str) -> None:
    """Make the MariaDB present another certificate from its next handshake on (FLUSH SSL rereads the files)."""
    _write(server.folder / "server.crt", cert_pem)
    _write(server.folder / "server.key", key_pem, 0o600)
    user = _server_user("mysql")
    _owned_by(server.folder / "server.crt", user)
    _owned_by(server.folder / "server.key", user)
    with admin_mariadb(server) as conn:
        conn.cursor().execute("FLUSH SSL")

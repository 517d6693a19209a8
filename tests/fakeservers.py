"""Fake database servers on 127.0.0.1 that ask for the password in a weak form, and record every byte.

What a hostile server does to steal a monitoring password: it speaks just enough of the
protocol to get to authentication, then asks the client for the password in clear text
(or for PostgreSQL's md5 digest, which is as good as the password for logging in). A
client that obeys sends it. These servers do exactly that and keep every byte they
receive, so a test can assert that a password's bytes never arrived:

    with FakePostgres("cleartext") as server:
        ...connect a client to 127.0.0.1:server.port...
        assert not server.saw(password)

- `FakePostgres(method)`: reads the startup packet (answering SSLRequest and GSSENCRequest
  with 'N': no TLS, so nothing is hidden from the recording), then sends
  AuthenticationCleartextPassword (R, code 3) or AuthenticationMD5Password (R, code 5,
  with a salt). Whatever the client sends next is recorded; a PasswordMessage is answered
  with FATAL 28P01 so the client ends with an authentication failure, not a hang.
- `FakeMySQL(initial_plugin, switch_to)`: sends a protocol-10 handshake (a server version,
  CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH, no CLIENT_SSL, a
  20-byte scramble, `initial_plugin`), reads the client's handshake response, and, when
  `switch_to` is set, sends an AuthSwitchRequest to it (`mysql_clear_password` by
  default; `dialog` gets PAM's "Password: " question). Whatever the client sends is recorded; the
  server then ends with ERR 1045 (`error_message`: its text, bytes, need not be UTF-8).

`received()` is every byte received on every connection, `after_request()` only those
received after the server asked for the password, `connections` how many clients came.
Each server binds 127.0.0.1:0 (a free port), serves each connection on a daemon thread,
and `close()` (or leaving the `with` block) closes every socket and joins the threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import struct
import threading
from typing import Literal

_TIMEOUT = 5.0  # seconds a connection may stay silent before the server gives up on it
_POLL = 0.05  # seconds between the acceptor's looks at whether the server is closing

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
AUTH_CLEARTEXT = 3
AUTH_MD5 = 5


class _Connection:
    """One client connection: the bytes it sent, before and after the password was asked for."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.before = bytearray()  # startup / handshake response
        self.after = bytearray()  # what the client sent once asked for the password
        self.asked = False

    def recv_exact(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            self.record(chunk)
            data += chunk
        return bytes(data)

    def record(self, chunk: bytes) -> None:
        (self.after if self.asked else self.before).extend(chunk)

    def drain(self) -> None:
        """Record whatever else the client sends until it closes or falls silent."""
        with contextlib.suppress(OSError):
            while chunk := self.sock.recv(65536):
                self.record(chunk)


class _FakeServer:
    """The listening socket, one thread per connection, and the recordings."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_POLL)  # closing a socket does not wake a blocked accept(): poll instead
        self.port: int = self._listener.getsockname()[1]
        self.host = "127.0.0.1"
        self._lock = threading.Lock()
        self._connections: list[_Connection] = []
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, name=f"{type(self).__name__}-accept", daemon=True)
        self._acceptor.start()

    # -- what arrived --------------------------------------------------------------

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._connections)

    def received(self) -> bytes:
        """Every byte any client sent."""
        with self._lock:
            return b"".join(bytes(c.before) + bytes(c.after) for c in self._connections)

    def after_request(self) -> bytes:
        """The bytes clients sent after the server asked for the password."""
        with self._lock:
            return b"".join(bytes(c.after) for c in self._connections)

    def asked(self) -> bool:
        """Whether the server got as far as asking any client for the password."""
        with self._lock:
            return any(c.asked for c in self._connections)

    def saw(self, secret: str | bytes) -> bool:
        """Whether `secret` (as UTF-8) arrived on any connection, anywhere in what was received."""
        needle = secret.encode() if isinstance(secret, str) else secret
        return needle in self.received()

    def wait_idle(self, timeout: float = _TIMEOUT) -> None:
        """Wait until every connection so far has been served (its thread ended)."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)

    # -- serving -------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                sock, _addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(_TIMEOUT)
            conn = _Connection(sock)
            thread = threading.Thread(target=self._serve_safely, args=(conn,), daemon=True)
            with self._lock:
                self._connections.append(conn)
                self._threads.append(thread)
            thread.start()

    def _serve_safely(self, conn: _Connection) -> None:
        try:
            self.serve(conn)
        except (EOFError, OSError):
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.sock.close()

    def serve(self, conn: _Connection) -> None:  # pragma: no cover - each fake defines it
        raise NotImplementedError

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            conns, threads = list(self._connections), list(self._threads)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        for thread in [*threads, self._acceptor]:
            thread.join(_TIMEOUT)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- PostgreSQL ------------------------------------------------------------------------


def md5_password_message(password: str, user: str, salt: bytes) -> bytes:
    """What libpq sends for AuthenticationMD5Password: "md5" + md5(md5(password + user) + salt), hex."""
    inner = hashlib.md5(password.encode() + user.encode()).hexdigest()  # the protocol's own (weak) hash
    return b"md5" + hashlib.md5(inner.encode() + salt).hexdigest().encode()


class FakePostgres(_FakeServer):
    """Speaks the PostgreSQL startup protocol, then asks for the password in clear text or as md5."""

    def __init__(self, method: Literal["cleartext", "md5"] = "cleartext") -> None:
        self.method = method
        self.salt = os.urandom(4)
        self.startup_params: list[dict[str, str]] = []
        super().__init__()

    def serve(self, conn: _Connection) -> None:
        while True:
            length, code = struct.unpack("!ii", conn.recv_exact(8))
            body = conn.recv_exact(length - 8)
            if code in (SSL_REQUEST, GSSENC_REQUEST):
                conn.sock.sendall(b"N")  # no encryption: the recording sees what the client would send
                continue
            if code == CANCEL_REQUEST:
                return
            break
        fields = body.split(b"\x00")
        params = {k.decode(): v.decode() for k, v in zip(fields[0::2], fields[1::2], strict=False) if k}
        with self._lock:
            self.startup_params.append(params)
        conn.asked = True
        if self.method == "md5":
            conn.sock.sendall(b"R" + struct.pack("!ii", 12, AUTH_MD5) + self.salt)
        else:
            conn.sock.sendall(b"R" + struct.pack("!ii", 8, AUTH_CLEARTEXT))
        tag = conn.recv_exact(1)
        (length,) = struct.unpack("!i", conn.recv_exact(4))
        conn.recv_exact(length - 4)
        if tag == b"p":
            fatal = b'SFATAL\x00VFATAL\x00C28P01\x00Mpassword authentication failed for user "x"\x00\x00'
            conn.sock.sendall(b"E" + struct.pack("!i", len(fatal) + 4) + fatal)
        conn.drain()

    def password_messages(self) -> list[bytes]:
        """The payload of every PasswordMessage ('p') that arrived after the server asked."""
        found = []
        data = self.after_request()
        while len(data) >= 5:
            tag, length = data[:1], struct.unpack("!i", data[1:5])[0]
            if tag == b"p":
                found.append(data[5 : 1 + length].rstrip(b"\x00"))
            data = data[1 + length :]
        return found


# --- MySQL / MariaDB ------------------------------------------------------------------

CLIENT_LONG_PASSWORD = 0x1  # also CLIENT_MYSQL: a MySQL (not MariaDB) server to libmariadb
CLIENT_CONNECT_WITH_DB = 0x8
CLIENT_PROTOCOL_41 = 0x200
CLIENT_SSL = 0x800
CLIENT_TRANSACTIONS = 0x2000
CLIENT_SECURE_CONNECTION = 0x8000
CLIENT_MULTI_RESULTS = 0x20000
CLIENT_PLUGIN_AUTH = 0x80000
CLIENT_CONNECT_ATTRS = 0x100000
CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA = 0x200000

SERVER_CAPABILITIES = (
    CLIENT_LONG_PASSWORD
    | CLIENT_CONNECT_WITH_DB
    | CLIENT_PROTOCOL_41
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH
    | CLIENT_CONNECT_ATTRS
    | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
)


class FakeMySQL(_FakeServer):
    """Sends a MySQL handshake, then switches the client to `switch_to` (mysql_clear_password by default)."""

    def __init__(
        self,
        initial_plugin: str = "mysql_native_password",
        switch_to: str | None = "mysql_clear_password",
        server_version: str = "8.0.99-fake",
        error_message: bytes = b"Access denied for user (fake server)",
        full_auth: bool = False,
    ) -> None:
        # full_auth: caching_sha2_password's "perform full authentication", handing out the fake's own
        # RSA key when asked and decrypting what comes back (into `recovered`)
        self.full_auth = full_auth
        self.recovered: list[bytes] = []
        self.initial_plugin = initial_plugin
        self.switch_to = switch_to
        self.server_version = server_version
        self.error_message = error_message
        self.scramble = bytes(b % 94 + 33 for b in os.urandom(20))  # printable, never 0
        super().__init__()

    @staticmethod
    def _packet(seq: int, payload: bytes) -> bytes:
        return struct.pack("<I", len(payload))[:3] + bytes([seq & 0xFF]) + payload

    @staticmethod
    def _read_packet(conn: _Connection) -> tuple[int, bytes]:
        header = conn.recv_exact(4)
        length = int.from_bytes(header[:3], "little")
        return header[3], conn.recv_exact(length)

    def handshake(self) -> bytes:
        caps = SERVER_CAPABILITIES
        return (
            b"\x0a"
            + self.server_version.encode()
            + b"\x00"
            + struct.pack("<I", 42)  # connection id
            + self.scramble[:8]
            + b"\x00"
            + struct.pack("<H", caps & 0xFFFF)
            + bytes([0x2D])  # utf8mb4_general_ci
            + struct.pack("<H", 0x0002)  # SERVER_STATUS_AUTOCOMMIT
            + struct.pack("<H", caps >> 16)
            + bytes([len(self.scramble) + 1])
            + b"\x00" * 10
            + self.scramble[8:]
            + b"\x00"
            + self.initial_plugin.encode()
            + b"\x00"
        )

    def serve(self, conn: _Connection) -> None:
        conn.sock.sendall(self._packet(0, self.handshake()))
        if self.initial_plugin == "mysql_clear_password":
            conn.asked = True  # the handshake itself asked for the password in clear
        seq, _response = self._read_packet(conn)
        if self.full_auth:
            seq = self._full_auth(conn, seq)
        if self.switch_to:
            conn.asked = True
            # dialog (PAM) is asked a question: type 4 is "password, do not echo"; other plugins get a scramble
            data = b"\x04Password: " if self.switch_to == "dialog" else self.scramble + b"\x00"
            switch = b"\xfe" + self.switch_to.encode() + b"\x00" + data
            conn.sock.sendall(self._packet(seq + 1, switch))
            seq, _answer = self._read_packet(conn)
        error = b"\xff" + struct.pack("<H", 1045) + b"#28000" + self.error_message
        conn.sock.sendall(self._packet(seq + 1, error))
        conn.drain()

    def _full_auth(self, conn: _Connection, seq: int) -> int:
        """caching_sha2_password without a cached entry: the client must prove the password itself."""
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        conn.asked = True
        conn.sock.sendall(self._packet(seq + 1, b"\x01\x04"))  # AuthMoreData: perform_full_authentication
        seq, answer = self._read_packet(conn)
        if answer == b"\x02":  # "send me your public key": any server may hand out a key of its own
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            public = key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            conn.sock.sendall(self._packet(seq + 1, b"\x01" + public))
            seq, encrypted = self._read_packet(conn)
            oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
            mixed = key.decrypt(encrypted, oaep)
            self.recovered.append(bytes(b ^ self.scramble[i % len(self.scramble)] for i, b in enumerate(mixed)))
        else:  # over TLS the password comes in clear, NUL-terminated
            self.recovered.append(answer)
        return seq

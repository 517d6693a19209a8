"""Network faults for tests: a loopback proxy that cuts or stalls a real server's answer, and two fake servers.

`FaultProxy` sits on 127.0.0.1:<ephemeral> in front of one real server. Point the
client at `proxy.port` and switch the fault at any time, also while a query runs:

    with FaultProxy("127.0.0.1", 5432) as proxy:
        target = replace(target, port=proxy.port)
        proxy.stall_after(4096)   # forward 4,096 more answer bytes on each connection, then go silent
        proxy.cut_after(0)        # close both sides of every connection now
        proxy.pass_through()      # forward everything again (a stalled connection resumes)

The byte budget `n_bytes` counts the server's answer (server -> client) per connection,
from the moment the mode is set for connections already open and from their first
byte for connections opened later. So `stall_after(n)` set right after a client has
connected and logged in means "n bytes into the next answer". When the budget is
spent, `cut` closes the client and the server side (the client reads EOF, the server
sees its peer go); `stall` stops forwarding in both directions but keeps both
sockets open, so the client's kernel still acknowledges and nothing times out below
the driver: exactly a server (or middlebox) that stopped answering.

`FaultProxy(..., capture=True)` also keeps a copy of every byte it forwarded from the
server to the client, per connection (`conn.captured`) and for all of them
(`proxy.received()`): what crossed the wire, for tests that assert what never did.

`SilentServer` accepts connections and never sends a byte; `ClosingServer` accepts
and closes at once. Both stand in for "something listens there, but it is not (or no
longer) the database" when no real server of that family is available.

Every class binds 127.0.0.1:0, runs daemon threads, and `close()` (or leaving the
`with` block) closes every socket and joins its threads.

`wait_hung_up(sock)` blocks until the client at the other end of one of these sockets
(`conn.client` of a proxied connection, a fake server's `accepted` socket) has closed or
shut down its end: evidence on this side that the client gave up and let the connection go.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from typing import Any, Literal

Mode = Literal["pass", "cut", "stall"]
_POLL = 0.05  # seconds a pump waits for data before re-reading the mode
_CHUNK = 65536


def wait_hung_up(sock: socket.socket) -> None:
    """Block until the peer of `sock` has closed or shut down its end (FIN or RST), without reading from it.

    Why poll for POLLRDHUP (Linux) and not recv: a stalled proxy and `SilentServer` leave what the
    client sent unread, so a read would return those bytes, not the end. No timeout of its own: a
    client that never lets go keeps the test waiting until its pytest-timeout, which fails it.
    """
    poller = select.poll()
    poller.register(sock, select.POLLRDHUP)  # POLLHUP and POLLERR (a reset) are always reported too
    poller.poll()


class ProxiedConnection:
    """One client connection and its upstream: how many bytes went each way, and whether it ended."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.bytes_down = 0  # server -> client, forwarded
        self.bytes_up = 0  # client -> server, forwarded
        self.mode: Mode = "pass"
        self.budget: int | None = None  # answer bytes still to forward before `mode` applies
        self.closed = threading.Event()
        self.captured = bytearray()  # server -> client bytes forwarded, when the proxy captures
        self._threads: list[threading.Thread] = []

    def set_mode(self, mode: Mode, n_bytes: int | None) -> None:
        with self.proxy._lock:
            self.mode = mode
            self.budget = n_bytes

    @property
    def stalled(self) -> bool:
        return self.mode == "stall" and self.budget == 0

    def start(self) -> None:
        for name, pump in (("down", self._pump_down), ("up", self._pump_up)):
            thread = threading.Thread(target=pump, name=f"faultproxy-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def join(self, timeout: float = 2.0) -> None:
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)

    def _readable(self, sock: socket.socket) -> bool:
        try:
            ready, _, _ = select.select([sock], [], [], _POLL)
        except (OSError, ValueError):  # closed under us
            self.close()
            return False
        return bool(ready)

    def _pump_down(self) -> None:
        """Server -> client, within the budget; applies the mode when the budget is spent."""
        while not self.closed.is_set():
            with self.proxy._lock:
                mode, budget = self.mode, self.budget
            if mode != "pass" and budget == 0:
                if mode == "cut":
                    self.close()
                    return
                self.closed.wait(_POLL)  # stalled: hold everything, keep the sockets open
                continue
            if not self._readable(self.server):
                continue
            with self.proxy._lock:  # the mode may have changed during the wait
                mode, budget = self.mode, self.budget
            if mode != "pass" and budget == 0:
                continue
            size = _CHUNK if mode == "pass" or budget is None else min(_CHUNK, budget)
            try:
                data = self.server.recv(size)
            except OSError:
                data = b""
            if not data:
                self.close()
                return
            with self.proxy._lock:
                if self.mode != "pass" and self.budget is not None:
                    self.budget = max(0, self.budget - len(data))
                self.bytes_down += len(data)
                if self.proxy.capture:
                    self.captured += data
            try:
                self.client.sendall(data)
            except OSError:
                self.close()
                return

    def _pump_up(self) -> None:
        """Client -> server, always, except while the connection is stalled or after a cut."""
        while not self.closed.is_set():
            if self.stalled:
                self.closed.wait(_POLL)
                continue
            if not self._readable(self.client):
                continue
            if self.stalled:
                continue
            try:
                data = self.client.recv(_CHUNK)
            except OSError:
                data = b""
            if not data:
                self.close()
                return
            self.bytes_up += len(data)
            try:
                self.server.sendall(data)
            except OSError:
                self.close()
                return


class FaultProxy:
    """A threaded loopback TCP proxy in front of `upstream_host:upstream_port`, with switchable faults.

    `port` is where clients connect. `connections` lists every connection accepted so far
    (`bytes_down`, `bytes_up`, `closed`, and `captured` with `capture=True`). The mode set
    last also applies to connections accepted later, with a fresh budget each.
    """

    def __init__(
        self, upstream_host: str, upstream_port: int, *, connect_timeout: float = 5.0, capture: bool = False
    ) -> None:
        self.upstream = (upstream_host, int(upstream_port))
        self.connect_timeout = connect_timeout
        self.capture = capture
        self.connections: list[ProxiedConnection] = []
        self._lock = threading.Lock()
        self._mode: Mode = "pass"
        self._budget: int | None = None
        self._closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_POLL)
        self.host, self.port = self._listener.getsockname()[:2]
        self._acceptor = threading.Thread(target=self._accept_loop, name="faultproxy-accept", daemon=True)
        self._acceptor.start()

    # --- switching faults --------------------------------------------------------------

    def pass_through(self) -> None:
        """Forward everything, both ways (stalled connections resume; cut ones stay closed)."""
        self._set("pass", None)

    def cut_after(self, n_bytes: int) -> None:
        """Close both sides of a connection once `n_bytes` more of the server's answer went through."""
        self._set("cut", self._check(n_bytes))

    def stall_after(self, n_bytes: int) -> None:
        """Stop forwarding (both ways, sockets kept open) once `n_bytes` more of the server's answer went through."""
        self._set("stall", self._check(n_bytes))

    @property
    def mode(self) -> Mode:
        return self._mode

    # --- capturing -----------------------------------------------------------------------

    def received(self) -> bytes:
        """Every byte the server sent and the proxy forwarded, connection after connection (needs `capture=True`).

        Bytes still in flight are not in it: read it after the client has its answer.
        """
        if not self.capture:
            raise RuntimeError("FaultProxy(..., capture=True) captures; this proxy does not")
        with self._lock:
            return b"".join(bytes(conn.captured) for conn in self.connections)

    def clear_received(self) -> None:
        """Forget what was captured so far (connections keep capturing)."""
        with self._lock:
            for conn in self.connections:
                conn.captured.clear()

    # --- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop accepting, close every connection (client and upstream side) and join the threads."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._acceptor.join(2.0)
        for conn in list(self.connections):
            conn.close()
        for conn in list(self.connections):
            conn.join()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # --- internals -----------------------------------------------------------------------

    @staticmethod
    def _check(n_bytes: int) -> int:
        if int(n_bytes) < 0:
            raise ValueError("n_bytes must be >= 0")
        return int(n_bytes)

    def _set(self, mode: Mode, budget: int | None) -> None:
        with self._lock:
            self._mode, self._budget = mode, budget
            conns = list(self.connections)
        for conn in conns:
            conn.set_mode(mode, budget)

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=self.connect_timeout)
            except OSError:
                client.close()
                continue
            client.setblocking(True)
            server.setblocking(True)
            conn = ProxiedConnection(self, client, server)
            with self._lock:
                conn.mode, conn.budget = self._mode, self._budget
                self.connections.append(conn)
            conn.start()


class _FakeServer:
    """Accepts on 127.0.0.1:0 in a daemon thread; `_on_accept` decides what happens to each connection."""

    def __init__(self) -> None:
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self.accepted: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_POLL)
        self.host, self.port = self._listener.getsockname()[:2]
        self._thread = threading.Thread(target=self._loop, name=type(self).__name__, daemon=True)
        self._thread.start()

    @property
    def count(self) -> int:
        """How many connections were accepted so far."""
        with self._lock:
            return len(self.accepted)

    def _loop(self) -> None:
        while not self._closed.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted.append(sock)
            self._on_accept(sock)

    def _on_accept(self, sock: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(2.0)
        with self._lock:
            socks = list(self.accepted)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class SilentServer(_FakeServer):
    """Accepts every connection and never sends a byte (what it receives stays unread in the kernel)."""

    def _on_accept(self, sock: socket.socket) -> None:
        pass


class ClosingServer(_FakeServer):
    """Accepts every connection and closes it at once (the client reads EOF before any greeting)."""

    def _on_accept(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.close()

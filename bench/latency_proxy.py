"""A loopback TCP proxy that delays every forwarded chunk (a benchmark tool).

Why: on loopback a round trip costs ~75 µs, which hides a per-account query
loop; real fleets sit at least one network hop away. Putting this proxy
between a client and a local server adds a fixed delay per direction so
round-trip-bound code shows its real cost, while bulk transfers stay
pipelined (each chunk is held back by the delay, not by the chunks before it).

CLI:      python bench/latency_proxy.py --listen 0 --target 3306 --delay-ms 0.5
Library:  with LatencyProxy(target_port=3306, delay_ms=0.5) as proxy: proxy.port
Only loopback addresses are accepted, on both sides.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import socket
import threading
import time
from queue import Queue
from types import TracebackType

CHUNK = 65536


def require_loopback(host: str) -> str:
    """Refuse anything but a loopback IP literal; a bench must never reach the network."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"latency proxy: {host!r} is not an IP literal; use 127.0.0.1") from None
    if not addr.is_loopback:
        raise ValueError(f"latency proxy: {host!r} is not a loopback address; only 127.0.0.0/8 or ::1 allowed")
    return host


def _pump(src: socket.socket, dst: socket.socket, delay: float) -> None:
    """Forward one direction; each chunk leaves `delay` seconds after it arrived, in order.

    A reader thread stamps chunks and a sender thread holds each one until its
    deadline: threads with time.sleep keep sub-millisecond delays accurate
    (an asyncio timer rounds up to the next millisecond).
    """
    queue: Queue[tuple[float, bytes]] = Queue()

    def send() -> None:
        try:
            while True:
                deadline, data = queue.get()
                while (remaining := deadline - time.monotonic()) > 0:
                    time.sleep(remaining)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        while True:
            data = src.recv(CHUNK)
            queue.put((time.monotonic() + delay, data))
            if not data:
                break
    except OSError:
        queue.put((0.0, b""))
    sender.join()


class LatencyProxy:
    """Delaying loopback proxy; accepts in a background thread, two threads per direction."""

    def __init__(
        self,
        target_port: int,
        delay_ms: float = 0.5,
        *,
        listen_port: int = 0,
        listen_host: str = "127.0.0.1",
        target_host: str = "127.0.0.1",
    ) -> None:
        if delay_ms < 0:
            raise ValueError("latency proxy: delay_ms must be >= 0")
        self.listen_host = require_loopback(listen_host)
        self.target_host = require_loopback(target_host)
        self.target_port = int(target_port)
        self.delay = delay_ms / 1000.0
        self.port = int(listen_port)
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def _serve(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection((self.target_host, self.target_port), timeout=10)
        except OSError:
            client.close()
            return
        server.settimeout(None)
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._sockets.update((client, server))
        up = threading.Thread(target=_pump, args=(client, server, self.delay), daemon=True)
        up.start()
        _pump(server, client, self.delay)
        up.join()
        with self._lock:
            self._sockets.difference_update((client, server))
        client.close()
        server.close()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                break
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def start(self) -> LatencyProxy:
        """Start listening; returns once `port` is bound (raises OSError if it cannot bind)."""
        family = socket.AF_INET6 if ":" in self.listen_host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.listen_host, self.port))
        listener.listen(128)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, name="latency-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and every proxied connection, then join the accept thread."""
        self._stopping.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the proxy in the foreground until Ctrl-C; prints the bound port first."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, default=0, help="port to listen on (0 = ephemeral)")
    parser.add_argument("--target", type=int, required=True, help="port of the local server to forward to")
    parser.add_argument("--delay-ms", type=float, default=0.5, help="delay per direction in ms (default 0.5)")
    parser.add_argument("--listen-host", default="127.0.0.1")
    parser.add_argument("--target-host", default="127.0.0.1")
    args = parser.parse_args(argv)
    try:
        proxy = LatencyProxy(
            args.target,
            args.delay_ms,
            listen_port=args.listen,
            listen_host=args.listen_host,
            target_host=args.target_host,
        )
    except ValueError as exc:
        parser.error(str(exc))
    with proxy:
        print(proxy.port, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

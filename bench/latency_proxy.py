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
import asyncio
import contextlib
import ipaddress
import threading
import time
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


async def _sleep_until(deadline: float) -> None:
    # asyncio timers may fire early by a clock tick; loop so the delay is a true lower bound.
    while (remaining := deadline - time.monotonic()) > 0:
        await asyncio.sleep(remaining)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Forward one direction; each chunk leaves `delay` seconds after it arrived, in order."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            deadline, data = await queue.get()
            await _sleep_until(deadline)
            if not data:
                with contextlib.suppress(OSError):
                    if writer.can_write_eof():
                        writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.ensure_future(send())
    try:
        while True:
            data = await reader.read(CHUNK)
            queue.put_nowait((time.monotonic() + delay, data))
            if not data:
                break
        await sender
    except (OSError, asyncio.IncompleteReadError):
        sender.cancel()
    except asyncio.CancelledError:
        sender.cancel()
        raise


class LatencyProxy:
    """Delaying loopback proxy running its own event loop in a background thread."""

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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ready = threading.Event()
        self._error: BaseException | None = None

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        s_writer: asyncio.StreamWriter | None = None
        try:
            s_reader, s_writer = await asyncio.open_connection(self.target_host, self.target_port)
            await asyncio.gather(
                _pump(c_reader, s_writer, self.delay),
                _pump(s_reader, c_writer, self.delay),
            )
        except OSError:
            pass
        finally:
            for w in (c_writer, s_writer):
                if w is not None:
                    w.close()
            self._tasks.discard(task)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.listen_host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._start())
        except BaseException as exc:  # surfaced to start() in the caller's thread
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._shutdown())
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def start(self) -> LatencyProxy:
        """Start listening; returns once `port` is bound (raises if it cannot bind)."""
        self._thread = threading.Thread(target=self._run, name="latency-proxy", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        """Close the listener and every proxied connection, then join the thread."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
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

"""The built-in generator's HTTP/2 client (cleartext, prior knowledge), on the ``h2`` library.

``streams`` requests are kept in flight on each connection; a request body larger than the flow
control window is sent as the window opens. Pure Python, so it costs far more CPU per request
than h2load: the report's load CPU figure says when it, not the server, set the pace.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

from pounce.bench.machine import BenchError
from pounce.bench.native import LoadConnection, Stats, report

try:
    import h2.config
    import h2.connection
    import h2.events
    import h2.settings
except ImportError:  # pragma: no cover - reported to the user by the parent
    h2 = None  # type: ignore[assignment]

WINDOW = 2**24  # large receive windows, so downloads are not paced by WINDOW_UPDATE round trips


class H2Client(LoadConnection):
    def __init__(self, cfg: dict[str, Any], stats: Stats) -> None:
        super().__init__(stats)
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        self.streams = int(cfg["streams"])
        self.body = bytes.fromhex(cfg["body"])
        self.headers = [(b":method", cfg["method"].encode()), (b":path", cfg["path"].encode()),
                        (b":scheme", b"http"), (b":authority", f"{cfg['host']}:{cfg['port']}".encode())]
        if self.body:
            self.headers.append((b"content-length", str(len(self.body)).encode()))
        self.started: dict[int, float] = {}
        self.status: dict[int, int] = {}
        self.pending: dict[int, memoryview] = {}  # request bodies still to send
        self.stopping = False

    def unanswered(self) -> int:
        return len(self.started)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.conn.initiate_connection()
        self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW})
        self.conn.increment_flow_control_window(WINDOW)
        self._flush()

    def start(self) -> None:
        for _ in range(self.streams):
            self._open()
        self._flush()

    def _open(self) -> None:
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, self.headers, end_stream=not self.body)
        self.started[sid] = time.monotonic()
        if self.body:
            self.pending[sid] = memoryview(self.body)
            self._send_bodies()

    def _send_bodies(self) -> None:
        for sid in list(self.pending):
            rest = self.pending[sid]
            while rest:
                n = min(len(rest), self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
                if n <= 0:
                    break
                self.conn.send_data(sid, rest[:n].tobytes())
                rest = rest[n:]
            if rest:
                self.pending[sid] = rest
            else:
                del self.pending[sid]
                self.conn.end_stream(sid)

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.stats.bytes += len(data)
        try:
            events = self.conn.receive_data(data)
        except Exception as exc:  # h2's protocol errors have no common base worth naming here
            self.stats.errors += 1
            self._end(f"HTTP/2 error: {exc}")
            return
        for event in events:
            if isinstance(event, h2.events.ResponseReceived):
                for name, value in event.headers:
                    if name == b":status":
                        self.status[event.stream_id] = int(value)
            elif isinstance(event, h2.events.DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self._stream_done(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self.stats.errors += 1
                self.started.pop(event.stream_id, None)
                self.pending.pop(event.stream_id, None)
                self._next()
            elif isinstance(event, h2.events.WindowUpdated):
                self._send_bodies()
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._end("the server ended the HTTP/2 connection")
                return
        self._flush()

    def _stream_done(self, sid: int) -> None:
        started = self.started.pop(sid, None)
        if started is None:
            return
        if self.stats.done(started, self.status.pop(sid, 0)):
            self._next()
        else:
            self.stopping = True
            if not self.started:
                self._end(None)

    def _next(self) -> None:
        if self.stopping:
            if not self.started:
                self._end(None)
            return
        try:
            self._open()
        except Exception as exc:  # out of stream ids, or the connection is closing
            self._end(f"cannot open a stream: {exc}")


async def run_h2(cfg: dict[str, Any], go: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    if h2 is None:
        raise BenchError("the built-in HTTP/2 generator needs the h2 package (pip install 'pounce-asgi[h2]')")
    loop = asyncio.get_running_loop()
    stats = Stats(float("inf"))
    clients = []
    for _ in range(cfg["connections"]):
        _transport, client = await loop.create_connection(lambda: H2Client(cfg, stats), cfg["host"], cfg["port"])
        clients.append(client)
    await go()
    cpu0, started = time.process_time(), time.monotonic()
    stats.deadline = started + cfg["duration"]
    for client in clients:
        client.start()
    await asyncio.wait_for(asyncio.gather(*(c.finished for c in clients)), cfg["duration"] + 15)
    return report(stats, time.monotonic() - started, time.process_time() - cpu0)


def h2_request(host: str, port: int, method: str, path: str, body: bytes = b"",
               timeout: float = 5.0) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One blocking HTTP/2 request (prior knowledge): the probe before an HTTP/2 run."""
    import socket

    if h2 is None:
        raise BenchError("HTTP/2 needs the h2 package (pip install 'pounce-asgi[h2]')")
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding=None))
    headers = [(b":method", method.encode()), (b":path", path.encode()), (b":scheme", b"http"),
               (b":authority", f"{host}:{port}".encode())]
    with socket.create_connection((host, port), timeout=timeout) as sock:
        conn.initiate_connection()
        conn.increment_flow_control_window(WINDOW)
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW})
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, headers, end_stream=not body)
        rest = memoryview(body)
        status, got, parts = 0, [], []
        while True:
            while rest:
                n = min(len(rest), conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                if n <= 0:
                    break
                conn.send_data(sid, rest[:n].tobytes(), end_stream=n == len(rest))
                rest = rest[n:]
            sock.sendall(conn.data_to_send())
            data = sock.recv(65536)
            if not data:
                raise BenchError("the server closed the HTTP/2 connection before answering")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    got = list(event.headers)
                    status = int(dict(got).get(b":status", b"0"))
                elif isinstance(event, h2.events.DataReceived):
                    parts.append(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    return status, got, b"".join(parts)
                elif isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    raise BenchError(f"the server reset the HTTP/2 request ({type(event).__name__})")

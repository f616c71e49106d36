"""The built-in WebSocket echo client: connections that each keep a window of messages in flight.

Used by ``pounce bench``'s ws-echo workload (in the built-in generator's processes) and by
benchmarks/ws_bench.py. Every echo is checked, cheaply: see ``EchoClient``.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import dataclasses
import os
import struct
import time
from typing import Awaitable, Callable

from pounce.bench.load import Histogram
from pounce.bench.machine import BenchError


def client_frame(payload: bytes, opcode: int) -> bytes:
    """One masked, final frame (clients must mask, RFC 6455 5.3)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    repeated = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big") if n else b""
    return header + mask + masked


def server_frame(payload: bytes, opcode: int) -> bytes:
    """The exact bytes a server sends to echo ``payload`` (unmasked, final, uncompressed)."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x80 | opcode, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


class EchoClient(asyncio.Protocol):
    """One connection that keeps ``window`` messages in flight and counts the echoes.

    The client must be much cheaper than any server, or it would measure itself. Small echoes
    are identical frames, so a run of them is checked with one comparison against a prepared
    block, and only anything else (a ping, a split read) goes through the frame parser. Large
    echoes are followed header by header without copying their payloads: each one's length,
    opcode and FIN bit are checked, and the first one's payload byte for byte.
    """

    STREAM_AT = 4096  # payloads from this size on are followed, not buffered

    def __init__(self, payload: bytes, opcode: int, window: int) -> None:
        self.payload = payload
        self.opcode = opcode
        self.streaming = len(payload) >= self.STREAM_AT
        self.head = bytearray()  # a header split across reads (streaming mode)
        self.skip = 0  # payload bytes of the current frame still to come (streaming mode)
        self.frame_opcode = 0
        self.frame_fin = False
        self.collect: bytearray | None = None  # payload kept for checking (first echo, control frames)
        self.checked = False
        self.frame = client_frame(payload, opcode)
        self.echo = server_frame(payload, opcode)
        self.echo_block = self.echo * window
        self.window = window
        self.buffer = bytearray()
        self.messages = 0
        self.sent = 0
        self.sending = False
        self.deadline = 0.0
        self.handshake = asyncio.get_running_loop().create_future()
        self.drained = asyncio.get_running_loop().create_future()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None
        self.error: BaseException | None = None
        self.closing = False
        # Echoes come back in order, so each one's round trip is now minus the oldest send time.
        self.sent_at: collections.deque[float] = collections.deque()
        self.latency = Histogram()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def start(self, deadline: float) -> None:
        assert self.transport is not None
        self.deadline = deadline
        self.sending = True
        self.sent_at.extend([time.monotonic()] * self.window)
        self.transport.write(self.frame * self.window)
        self.sent += self.window

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        if not self.upgraded:
            buf += data
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end])
            data = bytes(buf[end + 4:])
            buf.clear()
            self.upgraded = True
            if not head.startswith(b"HTTP/1.1 101"):
                self._fail(BenchError(f"WebSocket handshake refused: {head.splitlines()[0]!r}"))
                return
            self.handshake.set_result(None)
        try:
            if self.streaming:
                done = self._follow(data)
            else:
                buf += data
                done = self._count()
        except BenchError as exc:
            self._fail(exc)
            return
        if done and self.transport is not None:
            now = time.monotonic()
            sent_at, record = self.sent_at, self.latency.record
            for _ in range(min(done, len(sent_at))):
                record(now - sent_at.popleft())
            if self.sending and now < self.deadline:
                # Refill the window: one new message per echo received.
                sent_at.extend([now] * done)
                self.transport.write(self.frame * done)
                self.sent += done
            else:
                self.sending = False
        if not self.sending and self.messages >= self.sent and not self.drained.done():
            self.drained.set_result(None)

    def _count(self) -> int:
        buf = self.buffer
        size = len(self.echo)
        n = min(len(buf) // size, self.window)
        if n and buf[:n * size] == self.echo_block[:n * size]:
            del buf[:n * size]
            self.messages += n
            return n + self._count() if len(buf) >= size else n
        return self._parse()

    def _follow(self, data: bytes) -> int:
        """Streaming mode: walk the frame headers in ``data``, skipping over the payloads."""
        done = 0
        pos, end = 0, len(data)
        while pos < end:
            if self.skip:
                take = min(self.skip, end - pos)
                if self.collect is not None:
                    self.collect += data[pos:pos + take]
                self.skip -= take
                pos += take
                if not self.skip:
                    done += self._frame_done()
                continue
            head = self.head
            if len(head) < 2:
                take = min(2 - len(head), end - pos)
                head += data[pos:pos + take]
                pos += take
                if len(head) < 2:
                    continue
            size = {126: 4, 127: 10}.get(head[1] & 0x7F, 2)
            if len(head) < size:
                take = min(size - len(head), end - pos)
                head += data[pos:pos + take]
                pos += take
                if len(head) < size:
                    continue
            b0, b1 = head[0], head[1]
            if b1 & 0x80:
                raise BenchError("server sent a masked frame")
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(head[2:4], "big")
            elif n == 127:
                n = int.from_bytes(head[2:10], "big")
            head.clear()
            self.frame_opcode, self.frame_fin = b0 & 0x0F, bool(b0 & 0x80)
            if self.frame_opcode in (0x1, 0x2) and n != len(self.payload):
                raise BenchError(f"echo of {n} bytes for a {len(self.payload)}-byte message")
            self.collect = bytearray() if self.frame_opcode >= 0x8 or not self.checked else None
            self.skip = n
            if not n:
                done += self._frame_done()
        return done

    def _frame_done(self) -> int:
        opcode, payload, self.collect = self.frame_opcode, self.collect, None
        if opcode in (0x1, 0x2):
            if opcode != self.opcode or not self.frame_fin:
                raise BenchError(f"unexpected echo frame (opcode {opcode}, fin {self.frame_fin})")
            if payload is not None:
                if bytes(payload) != self.payload:
                    raise BenchError("echo payload differs from the message sent")
                self.checked = True
            self.messages += 1
            return 1
        if opcode == 0x9 and self.transport is not None:
            self.transport.write(client_frame(bytes(payload or b""), 0xA))
        elif opcode == 0x8:
            raise BenchError("server closed the WebSocket during the run")
        return 0

    def _parse(self) -> int:
        buf = self.buffer
        pos, end, count = 0, len(buf), 0
        pongs = []
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n, head = b1 & 0x7F, 2
            if n == 126:
                if end - pos < 4:
                    break
                n, head = struct.unpack_from("!H", buf, pos + 2)[0], 4
            elif n == 127:
                if end - pos < 10:
                    break
                n, head = struct.unpack_from("!Q", buf, pos + 2)[0], 10
            if end - pos < head + n:
                break
            frame = bytes(buf[pos:pos + head + n])
            opcode = b0 & 0x0F
            if opcode in (0x1, 0x2):
                if frame != self.echo:
                    raise BenchError(f"unexpected echo frame ({len(frame)} bytes, opcode {opcode})")
                count += 1
            elif opcode == 0x9:
                pongs.append(client_frame(frame[head:], 0xA))
            elif opcode == 0x8:
                raise BenchError("server closed the WebSocket during the run")
            pos += head + n
        del buf[:pos]
        if pongs and self.transport is not None:
            self.transport.write(b"".join(pongs))
        self.messages += count
        return count

    def _fail(self, exc: BaseException) -> None:
        self.error = exc
        for fut in (self.handshake, self.drained):
            if not fut.done():
                fut.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closing:
            return
        if not self.drained.done() or not self.handshake.done():
            self._fail(exc or BenchError("server closed the connection during the run"))


async def _open(host: str, port: int, path: str, payload: bytes, opcode: int, window: int) -> EchoClient:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(lambda: EchoClient(payload, opcode, window), host, port)
    key = base64.b64encode(os.urandom(16))
    transport.write(b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                    % (path.encode(), host.encode(), port, key))
    await asyncio.wait_for(client.handshake, 10.0)
    return client


@dataclasses.dataclass(frozen=True)
class EchoRun:
    messages: int  # echoed by the deadline
    seconds: float
    cpu_seconds: float  # this process's, over the run
    latency: Histogram


async def echo_run(port: int, payload: bytes, opcode: int, *, connections: int, window: int, duration: float,
                   host: str = "127.0.0.1", path: str = "/echo",
                   ready: Callable[[], Awaitable[None]] | None = None) -> EchoRun:
    """Echo over ``connections`` connections for ``duration`` s; ``ready`` is awaited once all are open."""
    clients = [await _open(host, port, path, payload, opcode, window) for _ in range(connections)]
    try:
        if ready is not None:
            await ready()
        cpu0 = time.process_time()
        started = time.monotonic()
        deadline = started + duration
        for client in clients:
            client.start(deadline)
        await asyncio.sleep(duration)
        # Messages echoed by the deadline; the window still in flight is drained afterwards.
        counted = sum(c.messages for c in clients)
        elapsed = max(time.monotonic() - started, 1e-9)
        cpu = time.process_time() - cpu0
        latency = Histogram()
        for client in clients:
            latency.merge(client.latency)
            client.sending = False
        await asyncio.wait_for(asyncio.gather(*(c.drained for c in clients if c.messages < c.sent)), 30.0)
    finally:
        for client in clients:
            client.closing = True
            if client.transport is not None:
                client.transport.write(client_frame(struct.pack("!H", 1000), 0x8))
                client.transport.close()
    return EchoRun(counted, elapsed, cpu, latency)


async def echo_load(port: int, payload: bytes, opcode: int, *, connections: int, window: int,
                    duration: float) -> tuple[float, float]:
    """(messages per second, client CPU share): what benchmarks/ws_bench.py reports."""
    run = await echo_run(port, payload, opcode, connections=connections, window=window, duration=duration)
    return run.messages / run.seconds, run.cpu_seconds / run.seconds

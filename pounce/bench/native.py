"""The built-in load generator: processes each running a raw-socket asyncio client.

Used where wrk or h2load is not installed, and for WebSocket, which neither speaks. Each process
opens its share of the connections, says ``ready``, waits for ``go`` on stdin (so all of them start
together), drives load for the duration, and prints one JSON line: counts, its own CPU time over
the run, and a latency histogram the parent merges. One request in flight per HTTP/1.1
connection (as wrk does); ``streams`` per HTTP/2 connection; a window of messages per WebSocket.

    echo '{"protocol": "http1", "port": 8000, ...}' | python -m pounce.bench.native
"""

from __future__ import annotations

import asyncio
import json
import select
import subprocess
import sys
import time
from typing import Any

from pounce.bench.load import Histogram, LoadResult, LoadSpec
from pounce.bench.machine import BenchError, pinned

WS_MESSAGE = b"x" * 32  # ws-echo: small text messages
WS_WINDOW = 16  # messages in flight per WebSocket connection

_HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _TRAILER = range(5)


class Stats:
    """One process's counts; only what completes before the deadline is counted."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.requests = 0
        self.non_2xx = 0
        self.errors = 0
        self.bytes = 0
        self.latency = Histogram()

    def done(self, started: float, status: int) -> bool:
        """Count one response; True while there is time for another."""
        now = time.monotonic()
        if now > self.deadline:
            return False
        self.requests += 1
        if not 200 <= status < 300:
            self.non_2xx += 1
        self.latency.record(now - started)
        return True


class LoadConnection(asyncio.Protocol):
    """One client connection of the generator: ``finished`` resolves (with an error or None) when it ends."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.transport: asyncio.Transport | None = None
        self.finished: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def unanswered(self) -> int:
        """Requests sent and not answered yet: errors if the server closes the connection now."""
        return 0

    def _end(self, error: str | None) -> None:
        if not self.finished.done():
            self.finished.set_result(error)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished.done():
            self.stats.errors += self.unanswered()
            self.finished.set_result("closed by the server")


class H1Client(LoadConnection):
    """One keep-alive HTTP/1.1 connection: a request, its response (length or chunked), the next one."""

    def __init__(self, request: bytes, stats: Stats) -> None:
        super().__init__(stats)
        self.request = request
        self.buf = bytearray()
        self.state = _HEAD
        self.remaining = 0
        self.status = 0
        self.started = 0.0
        self.busy = False

    def unanswered(self) -> int:
        return 1 if self.busy else 0

    def send(self) -> None:
        assert self.transport is not None
        self.busy = True
        self.started = time.monotonic()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.stats.bytes += len(data)
        buf = self.buf
        buf += data
        try:
            self._parse(buf)
        except (ValueError, IndexError) as exc:
            self.stats.errors += 1
            self._end(f"bad response: {exc}")

    def _parse(self, buf: bytearray) -> None:
        while True:
            state = self.state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buf[:end]).lower()
                del buf[:end + 4]
                self.status = int(head[9:12])
                at = head.find(b"\r\ncontent-length:")
                if at >= 0:
                    stop = head.find(b"\r\n", at + 2)
                    self.remaining = int(head[at + 17:stop if stop >= 0 else None])
                    self.state = _BODY
                elif b"chunked" in head:
                    self.state = _CHUNK_SIZE
                elif self.status in (204, 304):
                    self.remaining, self.state = 0, _BODY
                else:
                    raise ValueError("a response without Content-Length or chunked encoding")
            elif state == _BODY or state == _CHUNK_DATA:
                if len(buf) < self.remaining:
                    self.remaining -= len(buf)
                    buf.clear()
                    return
                del buf[:self.remaining]
                if state == _CHUNK_DATA:
                    self.state = _CHUNK_SIZE
                else:
                    self._response_done()
            elif state == _CHUNK_SIZE:
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(buf[:end]).split(b";")[0], 16)
                del buf[:end + 2]
                self.remaining, self.state = size + 2, (_CHUNK_DATA if size else _TRAILER)
            else:  # _TRAILER: an empty line, or trailer fields and then one
                if len(buf) < 2:
                    return
                if buf[:2] == b"\r\n":
                    del buf[:2]
                else:
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        return
                    del buf[:end + 4]
                self._response_done()

    def _response_done(self) -> None:
        self.state = _HEAD
        self.busy = False
        if self.stats.done(self.started, self.status):
            self.send()
        else:
            self._end(None)


def h1_request(cfg: dict[str, Any]) -> bytes:
    body = bytes.fromhex(cfg["body"])
    head = f"{cfg['method']} {cfg['path']} HTTP/1.1\r\nHost: {cfg['host']}:{cfg['port']}\r\n"
    if body or cfg["method"] in ("POST", "PUT", "PATCH"):
        head += f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n"
    return head.encode("latin-1") + b"\r\n" + body


async def _h1_connection(cfg: dict[str, Any], stats: Stats) -> H1Client:
    loop = asyncio.get_running_loop()
    request = h1_request(cfg)
    _transport, client = await loop.create_connection(lambda: H1Client(request, stats), cfg["host"], cfg["port"])
    return client


async def run_h1(cfg: dict[str, Any], go: Any) -> dict[str, Any]:
    stats = Stats(float("inf"))
    clients = [await _h1_connection(cfg, stats) for _ in range(cfg["connections"])]
    await go()
    cpu0, started = time.process_time(), time.monotonic()
    stats.deadline = started + cfg["duration"]

    async def keep(client: H1Client) -> None:
        # A connection the server closes (no keep-alive) is opened again until the deadline.
        while True:
            client.send()
            await client.finished
            if time.monotonic() >= stats.deadline:
                return
            try:
                client = await _h1_connection(cfg, stats)
            except OSError:
                stats.errors += 1
                await asyncio.sleep(0.01)

    await asyncio.wait_for(asyncio.gather(*(keep(c) for c in clients)), cfg["duration"] + 15)
    return report(stats, time.monotonic() - started, time.process_time() - cpu0)


async def run_ws(cfg: dict[str, Any], go: Any) -> dict[str, Any]:
    from pounce.bench.wsclient import echo_run

    run = await echo_run(cfg["port"], WS_MESSAGE, 0x1, connections=cfg["connections"], window=WS_WINDOW,
                         duration=cfg["duration"], host=cfg["host"], path=cfg["path"], ready=go)
    stats = Stats(0.0)
    stats.requests, stats.latency = run.messages, run.latency
    stats.bytes = run.messages * (len(WS_MESSAGE) + 2)
    return report(stats, run.seconds, run.cpu_seconds)


def report(stats: Stats, seconds: float, cpu: float) -> dict[str, Any]:
    return {"requests": stats.requests, "seconds": seconds, "cpu_seconds": cpu, "errors": stats.errors,
            "non_2xx": stats.non_2xx, "bytes": stats.bytes, "latency": stats.latency.counts}


async def _child(cfg: dict[str, Any]) -> dict[str, Any]:
    async def go() -> None:
        print("ready", flush=True)
        # Nothing else to do until every process has its connections open: block.
        if sys.stdin.readline().strip() != "go":
            raise SystemExit("no go from the parent")

    if cfg["protocol"] == "http1":
        return await run_h1(cfg, go)
    if cfg["protocol"] == "ws":
        return await run_ws(cfg, go)
    from pounce.bench.h2client import run_h2

    return await run_h2(cfg, go)


def main() -> None:
    cfg = json.loads(sys.stdin.readline())
    try:
        result = asyncio.run(_child(cfg))
    except (OSError, asyncio.TimeoutError, BenchError, ImportError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", flush=True)
        sys.exit(1)
    print(json.dumps(result), flush=True)


# --------------------------------------------------------------------------- the parent side

def _shares(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _read_line(proc: subprocess.Popen[str], deadline: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
    return proc.stdout.readline().strip() if ready else ""


def run_native(spec: LoadSpec) -> LoadResult:
    procs: list[subprocess.Popen[str]] = []
    base = {"protocol": spec.protocol, "host": spec.host, "port": spec.port, "method": spec.method,
            "path": spec.path, "body": spec.body.hex(), "duration": spec.duration, "streams": spec.streams}
    try:
        for share in _shares(spec.connections, spec.workers()):
            argv = [sys.executable, "-m", "pounce.bench.native"]
            proc = subprocess.Popen(pinned(argv, spec.cpus) if spec.cpus else argv, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            procs.append(proc)
            # On stdin, not in argv: a 1 MiB request body is more than an argument may be.
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({**base, "connections": share}) + "\n")
            proc.stdin.flush()
        deadline = time.monotonic() + 30.0
        for proc in procs:
            line = _read_line(proc, deadline)
            if line != "ready":
                raise BenchError(f"built-in load generator did not start: {line or _tail(proc)}")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = []
        for proc in procs:
            out, err = proc.communicate(timeout=spec.duration + 30)
            last = out.strip().splitlines()[-1] if out.strip() else ""
            if proc.returncode != 0 or not last.startswith("{"):
                raise BenchError(f"built-in load generator failed: {last or err.strip()[-500:]}")
            outputs.append(json.loads(last))
    except subprocess.TimeoutExpired:
        raise BenchError("built-in load generator did not finish in time") from None
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    hist = Histogram()
    for out in outputs:
        hist.merge(Histogram({int(k): v for k, v in out["latency"].items()}))
    p50, p90, p99, p999 = hist.percentiles_ms()
    seconds = sum(o["seconds"] for o in outputs) / len(outputs)
    return LoadResult(
        generator="builtin", requests=sum(o["requests"] for o in outputs), seconds=seconds,
        p50_ms=p50, p90_ms=p90, p99_ms=p99, p999_ms=p999,
        errors=sum(o["errors"] for o in outputs), non_2xx=sum(o["non_2xx"] for o in outputs),
        bytes=sum(o["bytes"] for o in outputs), cpu_seconds=sum(o["cpu_seconds"] for o in outputs),
    )


def _tail(proc: subprocess.Popen[str]) -> str:
    proc.kill()
    _out, err = proc.communicate(timeout=5)
    return (err or "").strip()[-500:] or f"exited with {proc.returncode}"


if __name__ == "__main__":
    main()

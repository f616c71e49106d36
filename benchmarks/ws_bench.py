"""WebSocket echo: Pounce (wsproto) vs ``uvicorn --ws wsproto`` and ``uvicorn --ws websockets``.

Issue 5: messages per second through an echo app, small (32-byte text) and 64 KiB (binary)
messages, one worker each.  Target: Pounce >= 1.5x Uvicorn's wsproto path.

Each server runs alone, pinned to one CPU, with the same echo app (``echo_app`` below).  The
client is our own asyncio client pinned to the other CPU(s): several connections, each keeping a
window of messages in flight, every echo checked (a run of identical echoes with one comparison,
so the client stays far cheaper than any server).  Both Uvicorn peers run on the asyncio loop,
like Pounce; ``--uvloop`` adds them on uvloop as well (``uvicorn --ws ...`` picks uvloop by
default when it is installed).  The client offers no permessage-deflate, so no server compresses.

Two figures per server and size, medians over the rounds: wall-clock msg/s, and messages per
second of server CPU time (user + system of the server's process tree).  The second one is what
to compare on a shared or noisy machine: other load can slow a server down, but cannot make it
spend more CPU per message.

    python3 benchmarks/ws_bench.py             # 3 rounds x 5 s per size
    python3 benchmarks/ws_bench.py --quick     # 1 round x 2 s per size
    python3 benchmarks/ws_bench.py --uvloop --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import os
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, MutableMapping, Sequence

if __package__ in (None, ""):  # run as a script: make "benchmarks" importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _harness as h  # noqa: E402
from benchmarks.apps import _lifespan as lifespan  # noqa: E402

ECHO_APP = "benchmarks.ws_bench:echo_app"
HTTP_BODY = b"websocket echo\n"
SMALL = b"x" * 32
LARGE = bytes(range(256)) * 256  # 64 KiB, not one repeated byte
SIZES = {"small": (SMALL, 0x1), "64KiB": (LARGE, 0x2)}  # payload, opcode (text / binary)
# Messages in flight per connection: enough to keep a server busy, few enough for 64 KiB.
WINDOWS = {"small": 32, "64KiB": 4}

POUNCE = "pounce"
UVICORN_WSPROTO = "uvicorn-wsproto"
UVICORN_WEBSOCKETS = "uvicorn-websockets"
UVICORN_WSPROTO_UVLOOP = "uvicorn-wsproto-uvloop"
UVICORN_WEBSOCKETS_UVLOOP = "uvicorn-websockets-uvloop"
ALL_SERVERS = (POUNCE, UVICORN_WSPROTO, UVICORN_WEBSOCKETS, UVICORN_WSPROTO_UVLOOP, UVICORN_WEBSOCKETS_UVLOOP)
TARGET = (POUNCE, UVICORN_WSPROTO, 1.5)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


# --------------------------------------------------------------------------- the app

async def echo_app(scope: Scope, receive: Callable[[], Awaitable[Message]],
                   send: Callable[[Message], Awaitable[None]]) -> None:
    """Echo every WebSocket message; answer plain HTTP (the harness's readiness probe)."""
    if scope["type"] == "websocket":
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                if message.get("text") is not None:
                    await send({"type": "websocket.send", "text": message["text"]})
                else:
                    await send({"type": "websocket.send", "bytes": message["bytes"]})
            elif kind == "websocket.connect":
                await send({"type": "websocket.accept"})
            else:
                return
    elif scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(HTTP_BODY))]})
        await send({"type": "http.response.body", "body": HTTP_BODY})
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)


# --------------------------------------------------------------------------- the client

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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def start(self, deadline: float) -> None:
        assert self.transport is not None
        self.deadline = deadline
        self.sending = True
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
                self._fail(h.BenchError(f"WebSocket handshake refused: {head.splitlines()[0]!r}"))
                return
            self.handshake.set_result(None)
        try:
            if self.streaming:
                done = self._follow(data)
            else:
                buf += data
                done = self._count()
        except h.BenchError as exc:
            self._fail(exc)
            return
        if done and self.transport is not None:
            if self.sending and time.monotonic() < self.deadline:
                # Refill the window: one new message per echo received.
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
                raise h.BenchError("server sent a masked frame")
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(head[2:4], "big")
            elif n == 127:
                n = int.from_bytes(head[2:10], "big")
            head.clear()
            self.frame_opcode, self.frame_fin = b0 & 0x0F, bool(b0 & 0x80)
            if self.frame_opcode in (0x1, 0x2) and n != len(self.payload):
                raise h.BenchError(f"echo of {n} bytes for a {len(self.payload)}-byte message")
            self.collect = bytearray() if self.frame_opcode >= 0x8 or not self.checked else None
            self.skip = n
            if not n:
                done += self._frame_done()
        return done

    def _frame_done(self) -> int:
        opcode, payload, self.collect = self.frame_opcode, self.collect, None
        if opcode in (0x1, 0x2):
            if opcode != self.opcode or not self.frame_fin:
                raise h.BenchError(f"unexpected echo frame (opcode {opcode}, fin {self.frame_fin})")
            if payload is not None:
                if bytes(payload) != self.payload:
                    raise h.BenchError("echo payload differs from the message sent")
                self.checked = True
            self.messages += 1
            return 1
        if opcode == 0x9 and self.transport is not None:
            self.transport.write(client_frame(bytes(payload or b""), 0xA))
        elif opcode == 0x8:
            raise h.BenchError("server closed the WebSocket during the run")
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
                    raise h.BenchError(f"unexpected echo frame ({len(frame)} bytes, opcode {opcode})")
                count += 1
            elif opcode == 0x9:
                pongs.append(client_frame(frame[head:], 0xA))
            elif opcode == 0x8:
                raise h.BenchError("server closed the WebSocket during the run")
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
            self._fail(exc or h.BenchError("server closed the connection during the run"))


async def _open(port: int, payload: bytes, opcode: int, window: int) -> EchoClient:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(lambda: EchoClient(payload, opcode, window), h.HOST, port)
    key = base64.b64encode(os.urandom(16))
    transport.write(b"GET /echo HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (h.HOST.encode(), port, key))
    await asyncio.wait_for(client.handshake, 10.0)
    return client


async def echo_load(port: int, payload: bytes, opcode: int, *, connections: int, window: int,
                    duration: float) -> tuple[float, float]:
    """(messages per second, client CPU share) over ``connections`` connections for ``duration`` s."""
    clients = [await _open(port, payload, opcode, window) for _ in range(connections)]
    try:
        cpu0 = time.process_time()
        started = time.monotonic()
        deadline = started + duration
        for client in clients:
            client.start(deadline)
        await asyncio.sleep(duration)
        # Messages echoed by the deadline; the window still in flight is drained afterwards.
        counted = sum(c.messages for c in clients)
        elapsed = max(time.monotonic() - started, 1e-9)
        cpu = (time.process_time() - cpu0) / elapsed
        for client in clients:
            client.sending = False
        await asyncio.wait_for(asyncio.gather(*(c.drained for c in clients if c.messages < c.sent)), 30.0)
    finally:
        for client in clients:
            client.closing = True
            if client.transport is not None:
                client.transport.write(client_frame(struct.pack("!H", 1000), 0x8))
                client.transport.close()
    return counted / elapsed, cpu


# --------------------------------------------------------------------------- servers and runs

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def server_cpu_seconds(root: int) -> float:
    """User + system CPU time used so far by the server's whole process tree."""
    total = 0
    for pid in h.process_tree(root):
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS


def pounce_spec(python: str) -> h.ServerSpec:
    argv = (python, "-m", "pounce", ECHO_APP, "--host", h.HOST, "--port", "{port}", "--no-access-log",
            "--log-level", "warning", "--loop", "asyncio", "--ws", "wsproto", "--lifespan", "off")
    return h.ServerSpec(POUNCE, argv)


def uvicorn_spec(peer_python: str, name: str, ws: str, loop: str) -> h.ServerSpec:
    argv = (peer_python, "-m", "uvicorn", ECHO_APP, "--host", h.HOST, "--port", "{port}", "--no-access-log",
            "--log-level", "warning", "--loop", loop, "--ws", ws, "--http", "h11", "--lifespan", "off")
    return h.ServerSpec(name, argv)


def build_specs(names: Sequence[str], pounce_python: str, peer_python: str | None) -> list[h.ServerSpec]:
    specs = []
    for name in names:
        if name == POUNCE:
            specs.append(pounce_spec(pounce_python))
        else:
            assert peer_python is not None
            ws = "wsproto" if "wsproto" in name else "websockets"
            specs.append(uvicorn_spec(peer_python, name, ws, "uvloop" if name.endswith("uvloop") else "asyncio"))
    return specs


@dataclasses.dataclass(frozen=True)
class Run:
    server: str
    size: str
    round: int
    ok: bool
    messages_per_sec: float = 0.0
    client_cpu: float = 0.0  # the client's CPU share; near 1.0 means the client, not the server, limited
    server_cpu: float = 0.0  # the server's CPU share during the run; well under 1.0 means it waited
    messages_per_cpu_sec: float = 0.0
    error: str = ""


def measure(spec: h.ServerSpec, cpus: h.CpuPlan, args: argparse.Namespace, round_no: int,
            log_dir: Path) -> list[Run]:
    try:
        server = h.start_server(spec, cpus.server, log_dir=log_dir, expected_body=HTTP_BODY,
                                startup_timeout=args.startup_timeout)
    except h.BenchError as exc:
        return [Run(spec.name, size, round_no, ok=False, error=str(exc)) for size in SIZES]
    runs = []
    try:
        for size, (payload, opcode) in SIZES.items():
            try:
                if args.warmup > 0:
                    asyncio.run(echo_load(server.port, payload, opcode, connections=args.connections,
                                          window=WINDOWS[size], duration=args.warmup))
                cpu_before = server_cpu_seconds(server.proc.pid)
                rate, client_cpu = asyncio.run(echo_load(server.port, payload, opcode, connections=args.connections,
                                                         window=WINDOWS[size], duration=args.duration))
                server_cpu = server_cpu_seconds(server.proc.pid) - cpu_before
                if server.proc.poll() is not None:
                    raise h.BenchError(f"server exited with code {server.proc.returncode}:\n{server.log_tail()}")
                # Messages per second of server CPU: what the server costs per message, which other
                # load on the machine cannot inflate (wall-clock msg/s on a busy box can be).
                per_cpu = rate * args.duration / server_cpu if server_cpu > 0 else 0.0
                runs.append(Run(spec.name, size, round_no, ok=rate > 0, messages_per_sec=rate, client_cpu=client_cpu,
                                server_cpu=server_cpu / args.duration, messages_per_cpu_sec=per_cpu,
                                error="" if rate > 0 else "no messages echoed"))
            except (h.BenchError, OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
                runs.append(Run(spec.name, size, round_no, ok=False,
                                error=f"{type(exc).__name__}: {exc}\n{server.log_tail()}"))
    finally:
        h.stop_server(server, term_timeout=args.stop_timeout)
    return runs


def run_all(specs: Sequence[h.ServerSpec], cpus: h.CpuPlan, args: argparse.Namespace) -> list[Run]:
    results: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="pounce-ws-bench-") as tmp:
        for r in range(args.rounds):
            shift = r % len(specs)
            for spec in [*specs[shift:], *specs[:shift]]:
                h.log(f"[bench] round {r + 1}/{args.rounds}: {spec.name}")
                for run in measure(spec, cpus, args, r + 1, Path(tmp)):
                    if run.ok:
                        h.log(f"[bench]     {run.size}: {run.messages_per_sec:,.0f} msg/s, "
                              f"{run.messages_per_cpu_sec:,.0f} msg per server CPU-second "
                              f"(server CPU {run.server_cpu:.0%}, client CPU {run.client_cpu:.0%})")
                    else:
                        h.log(f"[bench]     {run.size}: FAILED {run.error.splitlines()[0] if run.error else ''}")
                    results.append(run)
    return results


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs Pounce (default: this one)")
    parser.add_argument("--peer-python", default=None, help="GIL interpreter to build .bench-venv/ from")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measured run (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of unmeasured load first (default 1)")
    parser.add_argument("--connections", type=int, default=4, help="WebSocket connections (default 4)")
    parser.add_argument("--quick", action="store_true", help="1 round x 2 s per size, 0.5 s warm-up")
    parser.add_argument("--uvloop", action="store_true", help="also run both Uvicorn peers on uvloop")
    parser.add_argument("--only", default=None, help=f"comma-separated subset of: {','.join(ALL_SERVERS)}")
    parser.add_argument("--cpus-server", default=None, help="CPUs for the server, taskset syntax")
    parser.add_argument("--cpus-load", default=None, help="CPUs for the client, taskset syntax")
    parser.add_argument("--startup-timeout", type=float, default=60.0, help="seconds to wait for a server")
    parser.add_argument("--stop-timeout", type=float, default=15.0, help="seconds between SIGTERM and SIGKILL")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 2.0, 0.5
    if args.rounds < 1 or args.duration <= 0 or args.warmup < 0 or not 1 <= args.connections <= 256:
        parser.error("--rounds >= 1, --duration > 0, --warmup >= 0 and 1 <= --connections <= 256 are required")
    return args, parser


def main(argv: Sequence[str] | None = None) -> int:
    args, parser = parse_args(argv)
    if args.only:
        names = h.parse_only(parser, args.only, ALL_SERVERS)
    else:
        names = [POUNCE, UVICORN_WSPROTO, UVICORN_WEBSOCKETS]
        names += [UVICORN_WSPROTO_UVLOOP, UVICORN_WEBSOCKETS_UVLOOP] if args.uvloop else []
    try:
        cpus = h.CpuPlan.from_args(args.cpus_server, args.cpus_load, server_share="one")
        # The client runs in this process: keep it off the server's CPU.
        os.sched_setaffinity(0, cpus.load)
        return run(names, args, cpus)
    except h.BenchError as exc:
        h.log(f"[bench] error: {exc}")
        return 1


def run(names: Sequence[str], args: argparse.Namespace, cpus: h.CpuPlan) -> int:
    pounce_python = h.ensure_pounce_python(args.python)
    needs_peers = any(n != POUNCE for n in names)
    peer_python = h.ensure_bench_venv(args.peer_python) if needs_peers else None
    if peer_python and h.python_info(peer_python, ("wsproto", "websockets")).missing:
        h._pip_install(peer_python, ("wsproto", "websockets"), 600.0)
    pounce_versions = h.package_versions(pounce_python, ("wsproto", "h11"))
    peer_versions = h.package_versions(peer_python, ("uvicorn", "wsproto", "websockets", "uvloop")) \
        if peer_python else {}
    machine = h.machine_info()
    print(f"Machine: {machine['cpu_count']} cores, {machine['cpu_model']}, Linux {machine['kernel']}")
    print(f"Pounce Python: {h.python_info(pounce_python).describe()} ({_versions(pounce_versions)})")
    if peer_python:
        print(f"Peers Python:  {h.python_info(peer_python).describe()} ({_versions(peer_versions)})")
    print(f"Load: {args.connections} connections, window {WINDOWS['small']} (small) / {WINDOWS['64KiB']} (64 KiB) "
          f"messages in flight each, {args.duration:g} s (+{args.warmup:g} s warm-up) per size, "
          f"{args.rounds} round(s); server on CPU {h.format_cpu_list(cpus.server)}, "
          f"client on CPU {h.format_cpu_list(cpus.load)}\n", flush=True)

    specs = build_specs(names, pounce_python, peer_python)
    results = run_all(specs, cpus, args)

    # Two figures per server and size: wall-clock msg/s, and msg per server CPU-second (robust
    # when other work shares the machine). Medians over the rounds.
    metrics = {"msg/s": "messages_per_sec", "msg/CPU-s": "messages_per_cpu_sec"}
    medians: dict[tuple[str, str, str], float] = {}
    failures: list[Run] = []
    for name in names:
        for size in SIZES:
            good = [r for r in results if r.server == name and r.size == size and r.ok]
            for metric, attr in metrics.items():
                values = [getattr(r, attr) for r in good]
                medians[(name, size, metric)] = statistics.median(values) if values else 0.0
            failures += [r for r in results if r.server == name and r.size == size and not r.ok][:1]

    columns = [(size, metric) for size in SIZES for metric in metrics]
    print()
    rows = [[name, *(f"{medians[(name, size, metric)]:,.0f}" if medians[(name, size, metric)] else "FAILED"
                     for size, metric in columns)] for name in names]
    print(h.format_table(["server (1 worker)", *(f"{size} {metric}" for size, metric in columns)], rows))

    ratios: dict[str, dict[str, float | None]] = {}
    peers = [n for n in names if n != POUNCE]
    if POUNCE in names and peers:
        print()
        ratio_rows = []
        for size, metric in columns:
            key = f"{size} {metric}"
            ratios[key] = {p: h.ratio(medians[(POUNCE, size, metric)], medians[(p, size, metric)]) for p in peers}
            ratio_rows.append([f"pounce {key}", *(h.fmt_ratio(ratios[key][p]) for p in peers)])
        print(h.format_table(["ratio", *(f"/ {p}" for p in peers)], ratio_rows))
        mine, peer, minimum = TARGET
        if peer in peers:
            print(f"\nIssue 5 target: {mine} / {peer} >= {minimum:.1f}x")
            for size, metric in columns:
                value = ratios[f"{size} {metric}"][peer]
                print(f"  {size} {metric}: {h.fmt_ratio(value)} -> {h.verdict(value, minimum)}")

    for run in failures:
        print(f"\n{run.server} {run.size} FAILED: {run.error}")

    if args.json_path:
        h.write_json(args.json_path, {
            "benchmark": "ws_bench",
            "machine": machine,
            "versions": {"pounce": pounce_versions, "peers": peer_versions},
            "commands": {s.name: list(s.argv) for s in specs},
            "settings": {"connections": args.connections, "windows": WINDOWS, "duration": args.duration,
                         "warmup": args.warmup, "rounds": args.rounds},
            "medians": {f"{name} {size} {metric}": value for (name, size, metric), value in medians.items()},
            "ratios": ratios,
            "runs": results,
        })
    return 1 if failures else 0


def _versions(versions: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in versions.items())


if __name__ == "__main__":
    sys.exit(main())

"""Server-sent events to 200 connections: events/s, send-to-read latency and server CPU per event.

Issue 14, target 3 (second half). Pounce, ``uvicorn --http httptools --loop uvloop`` and Granian, one
worker each, pinned to one CPU, serve ``benchmarks.sse_apps:sse``: every ``GET /sse`` is a
``text/event-stream`` response whose app pushes an event every ``--interval-ms`` milliseconds, each
carrying ``time.time_ns()`` taken just before its ``send``. The client (one asyncio loop in this
process, pinned to the other CPU(s)) opens ``--connections`` streams, waits ``--warmup`` seconds, then
for ``--duration`` seconds counts the events it reads and records, for each, its read time minus
the timestamp in it (one clock: CLOCK_REALTIME on one machine). Then it drops the connections.

Two modes per server (``--intervals``, default ``20,0``):

- paced (20 ms): 200 connections x 50 events/s = 10,000 events/s offered. Every server should keep
  up, so events/s is the offered rate; what differs is the latency and the server CPU per event.
- flood (0 ms): each app sends back to back (one loop yield between events): events/s is what the
  server can push; the latency then is mostly queueing. A client CPU near 100% means the client,
  not the server, set the pace: that row is not a result.

Ratios are pounce over peer for events/s and events per server CPU-second (higher is better), and
peer over pounce for latency (so >= 1.0 also means Pounce is better: lower latency).

    python3 benchmarks/sse_bench.py --quick     # 1 round x 3 s per mode
    python3 benchmarks/sse_bench.py             # 3 rounds x 5 s, servers interleaved
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as a script: make "benchmarks" importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _harness as h  # noqa: E402
from benchmarks import _trio as t  # noqa: E402
from benchmarks._trio import GRANIAN, POUNCE, UVICORN  # noqa: E402
from benchmarks.sse_apps import MAX_EVENTS, PROBE_BODY  # noqa: E402
from pounce.bench.procs import CpuMeter  # noqa: E402

APP = "benchmarks.sse_apps:sse"
EVENT = re.compile(rb"data: (\d+)\n\n")
TARGETS = ((UVICORN, 1.5), (GRANIAN, 1.0))


# --------------------------------------------------------------------------- the client

class Recorder:
    """What every stream shares: whether the window is open, the count and the latencies in it."""

    def __init__(self) -> None:
        self.recording = False
        self.events = 0
        self.latencies_ns: list[int] = []
        self.failed = 0
        self.closed = 0


class SSEStream(asyncio.Protocol):
    """One ``GET /sse`` whose events are found in the byte stream without decoding the chunked framing
    (each event is one body message, so it lies whole inside one chunk: the framing cannot match)."""

    MAX_TAIL = 4096

    def __init__(self, request: bytes, recorder: Recorder, started: asyncio.Future[None]) -> None:
        self.request = request
        self.recorder = recorder
        self.started = started
        self.head = True
        self.tail = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        buf = self.tail + data if self.tail else data
        if self.head:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.tail = buf[-self.MAX_TAIL:]
                return
            if not buf.startswith(b"HTTP/1.1 200"):
                self.recorder.failed += 1
                if not self.started.done():
                    self.started.set_result(None)
                assert self.transport is not None
                self.transport.close()
                return
            self.head = False
            buf = buf[end + 4:]
            if not self.started.done():
                self.started.set_result(None)
        rec = self.recorder
        if rec.recording:
            stamps = EVENT.findall(buf)
            rec.events += len(stamps)
            rec.latencies_ns.extend([now - int(s) for s in stamps])
        last = buf.rfind(b"\n\n")
        self.tail = buf[last + 2:][-self.MAX_TAIL:] if last >= 0 else buf[-self.MAX_TAIL:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.recorder.closed += 1
        if not self.started.done():
            self.started.set_result(None)


@dataclasses.dataclass
class Window:
    events: int
    seconds: float
    latencies_ns: list[int]
    client_cpu: float  # share of one CPU
    failed: int
    closed_early: int


async def sse_load(port: int, *, connections: int, interval_ms: int, warmup: float, duration: float) -> Window:
    loop = asyncio.get_running_loop()
    if interval_ms:
        count = min(MAX_EVENTS, math.ceil((warmup + duration + 10.0) * 1000 / interval_ms))
    else:
        count = MAX_EVENTS
    request = (f"GET /sse?n={count}&ms={interval_ms} HTTP/1.1\r\nHost: {h.HOST}\r\n"
               f"Accept: text/event-stream\r\n\r\n").encode("ascii")
    recorder = Recorder()
    transports: list[asyncio.Transport] = []
    starts: list[asyncio.Future[None]] = []
    try:
        for _ in range(connections):
            started: asyncio.Future[None] = loop.create_future()
            transport, _proto = await asyncio.wait_for(
                loop.create_connection(lambda: SSEStream(request, recorder, started), h.HOST, port), 10.0)
            transports.append(transport)
            starts.append(started)
        await asyncio.wait_for(asyncio.gather(*starts), 15.0)
        if recorder.failed:
            raise h.BenchError(f"{recorder.failed} of {connections} streams were not answered 200")
        await asyncio.sleep(warmup)
        cpu0, t0 = time.process_time(), time.monotonic()
        recorder.recording = True
        await asyncio.sleep(duration)
        recorder.recording = False
        cpu1, t1 = time.process_time(), time.monotonic()
        return Window(recorder.events, t1 - t0, recorder.latencies_ns, (cpu1 - cpu0) / (t1 - t0),
                      recorder.failed, recorder.closed)
    finally:
        for each in transports:
            each.abort()
        await asyncio.sleep(0.05)


def percentile(sorted_values: Sequence[int], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, math.ceil(p / 100.0 * len(sorted_values)) - 1))
    return float(sorted_values[k])


# --------------------------------------------------------------------------- measuring

@dataclasses.dataclass
class Run:
    server: str
    mode: str  # "20ms" / "0ms"
    round: int
    ok: bool = False
    events_per_sec: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    server_cpu: float = 0.0  # share of its CPU
    events_per_cpu_sec: float = 0.0
    cpu_us_per_event: float = 0.0
    client_cpu: float = 0.0
    noise_pct: float = 0.0  # the most CPU other processes took on the server's / client's CPUs
    error: str = ""


def measure(spec: h.ServerSpec, cpus: h.CpuPlan, args: argparse.Namespace, round_no: int,
            log_dir: Path) -> list[Run]:
    modes = [f"{ms}ms" for ms in args.intervals]
    try:
        server = h.start_server(spec, cpus.server, log_dir=log_dir, expected_body=PROBE_BODY,
                                startup_timeout=args.startup_timeout)
    except h.BenchError as exc:
        return [Run(spec.name, m, round_no, error=str(exc)) for m in modes]
    runs: list[Run] = []
    try:
        for ms in args.intervals:
            run = Run(spec.name, f"{ms}ms", round_no)
            runs.append(run)
            try:
                root = server.proc.pid
                # CPU is read around the whole load (warm-up included) and scaled to the window below:
                # the warm-up is short and the rate steady, so per-event cost is what matters.
                meter, t0, client0 = CpuMeter(root, cpus.server, cpus.load), time.monotonic(), time.process_time()
                window = asyncio.run(asyncio.wait_for(
                    sse_load(server.port, connections=args.connections, interval_ms=ms, warmup=args.warmup,
                             duration=args.duration), args.warmup + args.duration + 60.0))
                cpu = meter.stop(time.process_time() - client0)
                cpu_s, wall = cpu.server_seconds, time.monotonic() - t0
                run.noise_pct = max(cpu.server_other_pct, cpu.load_other_pct)
                if server.proc.poll() is not None:
                    raise h.BenchError(f"server exited with code {server.proc.returncode}:\n{server.log_tail()}")
                if window.events == 0:
                    raise h.BenchError("no events received in the window")
                lat = sorted(window.latencies_ns)
                run.events_per_sec = window.events / window.seconds
                run.p50_ms, run.p99_ms = percentile(lat, 50) / 1e6, percentile(lat, 99) / 1e6
                run.server_cpu = cpu_s / wall
                run.events_per_cpu_sec = run.events_per_sec / run.server_cpu if run.server_cpu > 0 else 0.0
                run.cpu_us_per_event = 1e6 / run.events_per_cpu_sec if run.events_per_cpu_sec else 0.0
                run.client_cpu = window.client_cpu
                run.ok = True
                if window.closed_early:
                    run.error = f"{window.closed_early} streams closed before the window ended"
            except (h.BenchError, OSError, asyncio.TimeoutError) as exc:
                run.error = f"{type(exc).__name__}: {exc}\n{server.log_tail()}"
            time.sleep(0.3)  # let the server notice the dropped streams before the next mode
    finally:
        h.stop_server(server, term_timeout=args.stop_timeout)
    return runs


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    h.add_server_arguments(parser, t.ALL_SERVERS, rounds=3, duration=5.0, warmup=1.0)
    parser.add_argument("--connections", type=int, default=200, help="event streams (default 200)")
    parser.add_argument("--intervals", default="20,0",
                        help="milliseconds between events, one mode each (default 20,0; 0: back to back)")
    parser.add_argument("--quick", action="store_true", help="1 round x 3 s per mode")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration = 1, 3.0
    try:
        args.intervals = [int(x) for x in args.intervals.split(",") if x.strip()]
    except ValueError:
        parser.error("--intervals: comma-separated integers (milliseconds)")
    if (args.rounds < 1 or not 0.5 <= args.duration <= 120 or args.warmup < 0 or not 1 <= args.connections <= 2000
            or not args.intervals or any(not 0 <= ms <= 1000 for ms in args.intervals)):
        parser.error("--rounds >= 1, 0.5 <= --duration <= 120, --warmup >= 0, 1 <= --connections <= 2000 "
                     "and intervals within 0..1000 ms are required")
    return args, parser


def main(argv: Sequence[str] | None = None) -> int:
    args, parser = parse_args(argv)
    try:
        names, cpus = t.names_and_cpus(parser, args)  # the client runs in this process
        return run(names, args, cpus)
    except h.BenchError as exc:
        h.log(f"[bench] error: {exc}")
        return 1


def run(names: Sequence[str], args: argparse.Namespace, cpus: h.CpuPlan) -> int:
    pounce_python, peer_python, facts = t.prepare(names, args)
    print(f"Load: {args.connections} SSE streams, events every {', '.join(f'{ms} ms' for ms in args.intervals)}; "
          f"{args.duration:g} s window after {args.warmup:g} s, {args.rounds} round(s); server on CPU "
          f"{h.format_cpu_list(cpus.server)}, client on CPU {h.format_cpu_list(cpus.load)}\n", flush=True)
    specs = [t.server_spec(n, APP, pounce_python, peer_python) for n in names]
    results: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="pounce-sse-bench-") as tmp:
        for round_no, spec in t.interleaved(specs, args.rounds):
            for one in measure(spec, cpus, args, round_no, Path(tmp)):
                results.append(one)
                if one.ok:
                    h.log(f"[bench]     {one.mode}: {one.events_per_sec:,.0f} events/s, p50 {one.p50_ms:.2f} ms, "
                          f"p99 {one.p99_ms:.2f} ms, {one.cpu_us_per_event:.1f} us CPU/event "
                          f"(server CPU {one.server_cpu:.0%}, client CPU {one.client_cpu:.0%}, noise {one.noise_pct:.0f}%)")
                if one.error:
                    h.log(f"[bench]     {one.mode}: {'FAILED' if not one.ok else 'warning'}: "
                          f"{one.error.splitlines()[0]}")

    def med(name: str, mode: str, attr: str) -> float:
        values = [getattr(x, attr) for x in results if x.server == name and x.mode == mode and x.ok]
        return statistics.median(values) if values else 0.0

    modes = [f"{ms}ms" for ms in args.intervals]
    rows = []
    for mode in modes:
        for name in names:
            rows.append([mode, name, f"{med(name, mode, 'events_per_sec'):,.0f}", f"{med(name, mode, 'p50_ms'):.2f}",
                         f"{med(name, mode, 'p99_ms'):.2f}", f"{med(name, mode, 'cpu_us_per_event'):.1f}",
                         f"{med(name, mode, 'server_cpu'):.0%}", f"{med(name, mode, 'client_cpu'):.0%}",
                         f"{med(name, mode, 'noise_pct'):.0f}%"])
    print(h.format_table(["interval", "server (1 worker)", "events/s", "p50 ms", "p99 ms", "srv CPU us/event",
                          "srv CPU", "client CPU", "noise"], rows))
    targets: list[dict[str, object]] = []
    if POUNCE in names:
        print("\nRatios (>= 1.0 is Pounce better: events/s and events/CPU-s pounce/peer, latency peer/pounce):")
        for mode in modes:
            for peer, minimum in TARGETS:
                if peer not in names:
                    continue
                figures = {
                    "events/s": h.ratio(med(POUNCE, mode, "events_per_sec"), med(peer, mode, "events_per_sec")),
                    "events/CPU-s": h.ratio(med(POUNCE, mode, "events_per_cpu_sec"),
                                            med(peer, mode, "events_per_cpu_sec")),
                    "p50 latency": h.ratio(med(peer, mode, "p50_ms"), med(POUNCE, mode, "p50_ms")),
                    "p99 latency": h.ratio(med(peer, mode, "p99_ms"), med(POUNCE, mode, "p99_ms")),
                }
                for what, value in figures.items():
                    print(f"  {mode} {what}: pounce vs {peer} {h.fmt_ratio(value)} (>= {minimum:.1f}x) -> "
                          f"{h.verdict(value, minimum)}")
                    targets.append({"mode": mode, "peer": peer, "what": what, "ratio": value, "minimum": minimum})
    return t.finish(args, "sse_bench", facts, specs,
                    {"connections": args.connections, "intervals_ms": args.intervals, "duration": args.duration,
                     "warmup": args.warmup, "rounds": args.rounds},
                    {"runs": results, "targets": targets},
                    [(f"{x.server} {x.mode} round {x.round}", x.error) for x in results if not x.ok])

if __name__ == "__main__":
    sys.exit(main())

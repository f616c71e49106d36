"""Many connections: memory per idle keep-alive connection, and p99 of 50 busy ones beside 5,000 idle ones.

Issue 14, target 6. Per server (Pounce, ``uvicorn --http httptools --loop uvloop``, Granian; one worker
each, pinned to one CPU, app ``benchmarks.apps:hello``):

1. wrk warms the server up (50 connections), then the server tree's RSS is read: ``RSS(0 idle)``.
2. ``wrk -c50`` runs with no idle connection: ``p99(0 idle)``.
3. This process opens ``--idle`` / 2 connections (5,000 by default); each sends one ``GET /`` and reads
   the whole response, so the connection is fully set up, then stays silent. After an unmeasured
   warm-up (as before every measured run), ``wrk -c50`` runs again: ``p99(5000 idle)``. The idle ones are closed and steps 2 and 3 repeated (``--pairs``, 2 by
   default), so noise from other processes on a shared machine falls on both sides; each side's
   p99 is the median of its runs.
4. The rest of the idle connections are opened (10,000 in all); once RSS has settled, ``RSS(10k idle)``.
   Memory per idle connection = (RSS(10k) - RSS(0)) / 10k; the same from 5k to 10k is shown as a check
   (it leaves out the allocator's growth from the wrk runs in between).
5. The server's open sockets are counted from ``/proc/PID/fd``: a row where the server dropped idle
   connections is marked, since its memory would be understated.

Every server is told to keep idle connections for long enough (``--timeout-keep-alive 300``; Granian
has no HTTP/1 idle timeout, its ``--http1-header-read-timeout`` is set to its maximum of 60 s, and its
``--backpressure``, which caps the connections it accepts at 1024 by default, to 20,000). The fd
limit (RLIMIT_NOFILE) is raised to its hard limit here, and the servers inherit it. The idle client is
one asyncio loop in this process, pinned to the load CPUs with wrk; it opens connections a bounded
batch at a time, and every wait has a deadline.

    python3 benchmarks/connections_bench.py --quick       # 1 round, 10k idle, 3 s wrk runs
    python3 benchmarks/connections_bench.py               # 3 rounds, interleaved
    python3 benchmarks/connections_bench.py --idle 2000 --only pounce
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import resource
import socket
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
from pounce.bench.apps import HELLO_BODY  # noqa: E402
from pounce.bench.load import LoadResult, LoadSpec  # noqa: E402
from pounce.bench.wrk import run_wrk  # noqa: E402

APP = "benchmarks.apps:hello"
KEEP_ALIVE = 300
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: connections-bench\r\n\r\n"
P99_RATIO_MAX = 1.5
# Granian holds at most --backpressure connections per worker (default backlog / workers: 1024), and
# leaves the rest unaccepted in the backlog; it is raised so that it can hold them all.
BACKPRESSURE = 20_000


def build_spec(name: str, pounce_python: str, peer_python: str | None, backlog: int) -> h.ServerSpec:
    keep = ("--timeout-keep-alive", str(KEEP_ALIVE), "--backlog", str(backlog))
    return t.server_spec(name, APP, pounce_python, peer_python, pounce_args=keep, uvicorn_args=keep,
                         granian_args=("--backlog", str(backlog), "--http1-header-read-timeout", "60000",
                                       "--backpressure", str(BACKPRESSURE)))


# --------------------------------------------------------------------------- the idle client

class IdleConnection(asyncio.Protocol):
    """Sends one GET /, reads the whole hello response, then keeps the connection open and silent."""

    def __init__(self, ready: asyncio.Future[bool], closed: list[int]) -> None:
        self.ready = ready
        self.closed = closed
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(REQUEST)

    def data_received(self, data: bytes) -> None:
        if self.ready.done():
            return
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end >= 0 and len(self.buffer) >= head_end + 4 + len(HELLO_BODY):
            ok = self.buffer.startswith(b"HTTP/1.1 200") and self.buffer.endswith(HELLO_BODY)
            self.buffer = bytearray()
            self.ready.set_result(ok)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed[0] += 1
        if not self.ready.done():
            self.ready.set_result(False)


class IdlePool:
    """Idle keep-alive connections held by one event loop that runs only while opening them.

    Between openings the loop is not running; the sockets stay open in the kernel (they have nothing
    to say), which is all an idle connection needs.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.transports: list[asyncio.Transport] = []
        self.closed = [0]
        self.failed = 0

    async def _open_one(self) -> None:
        ready: asyncio.Future[bool] = self.loop.create_future()
        try:
            transport, _ = await asyncio.wait_for(
                self.loop.create_connection(lambda: IdleConnection(ready, self.closed), h.HOST, self.port), 10.0)
            ok = await asyncio.wait_for(ready, 10.0)
        except (OSError, asyncio.TimeoutError):
            self.failed += 1
            return
        if ok:
            self.transports.append(transport)
        else:
            self.failed += 1
            transport.close()

    async def _open(self, count: int, batch: int, deadline: float) -> None:
        done = 0
        while done < count and time.monotonic() < deadline:
            n = min(batch, count - done)
            await asyncio.gather(*(self._open_one() for _ in range(n)))
            done += n

    def open(self, count: int, *, batch: int = 200, timeout: float = 120.0) -> None:
        self.loop.run_until_complete(self._open(count, batch, time.monotonic() + timeout))

    @property
    def open_count(self) -> int:
        return len(self.transports) - self.closed[0]

    def close(self) -> None:
        if self.loop.is_closed():
            return
        for transport in self.transports:
            transport.abort()
        self.loop.run_until_complete(asyncio.sleep(0.05))
        self.loop.close()


# --------------------------------------------------------------------------- measuring

@dataclasses.dataclass
class Run:
    server: str
    round: int
    ok: bool = False
    idle: int = 0  # idle connections held at the end
    failed_connects: int = 0
    server_sockets: int = 0  # sockets the server had open with every idle connection up
    rss0: int = 0
    rss_half: int = 0
    rss_full: int = 0
    per_conn: float = 0.0  # bytes, (rss_full - rss0) / idle
    per_conn_half_to_full: float = 0.0
    rps0: float = 0.0
    p99_0: float = 0.0
    p50_0: float = 0.0
    rps_idle: float = 0.0
    p99_idle: float = 0.0
    p50_idle: float = 0.0
    errors: int = 0
    p99_pairs: list[tuple[float, float]] = dataclasses.field(default_factory=list)  # (0 idle, half idle) ms
    error: str = ""


def server_sockets(root: int) -> int:
    total = 0
    for pid in h.process_tree(root):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                        total += 1
                except OSError:
                    continue
        except OSError:
            continue
    return total


def settled_rss(root: int, *, seconds: float = 1.0) -> int:
    """RSS once it stopped moving (bounded: at most ``seconds`` x 5 of waiting)."""
    last = h.tree_memory(root).rss_bytes
    for _ in range(int(seconds * 5 / 0.25)):
        time.sleep(0.25)
        now = h.tree_memory(root).rss_bytes
        if abs(now - last) < 64 * 1024:
            return now
        last = now
    return last


def wrk(port: int, cpus: h.CpuPlan, args: argparse.Namespace, duration: float) -> LoadResult:
    spec = LoadSpec(h.HOST, port, "http1", connections=args.connections, duration=duration,
                    cpus=tuple(cpus.load), threads=len(cpus.load))
    return run_wrk(spec)


def measure(spec: h.ServerSpec, cpus: h.CpuPlan, args: argparse.Namespace, round_no: int, log_dir: Path) -> Run:
    run = Run(spec.name, round_no)
    try:
        server = h.start_server(spec, cpus.server, log_dir=log_dir, expected_body=HELLO_BODY,
                                startup_timeout=args.startup_timeout)
    except h.BenchError as exc:
        run.error = str(exc)
        return run
    root = server.proc.pid
    pool = IdlePool(server.port)
    try:
        wrk(server.port, cpus, args, args.warmup)
        run.rss0 = settled_rss(root)
        half = args.idle // 2
        # A, B, A, B: without idle connections, with half of them, the same again (the idle ones closed
        # in between), so a burst of load from elsewhere on the machine cannot land on one side only.
        base: list[LoadResult] = []
        busy: list[LoadResult] = []
        # Each measured run follows an unmeasured warm-up (--warmup seconds): what opening or closing
        # thousands of connections leaves to do (the garbage collector's full pass over the new
        # objects: about 50 ms with 5,000 idle Pounce connections) belongs to that, not to being idle.
        for pair in range(args.pairs):
            if pair:
                wrk(server.port, cpus, args, args.warmup)
            base.append(wrk(server.port, cpus, args, args.duration))
            if pair:
                pool = IdlePool(server.port)
            pool.open(half)
            if pair == 0:
                run.rss_half = settled_rss(root)
            wrk(server.port, cpus, args, args.warmup)
            busy.append(wrk(server.port, cpus, args, args.duration))
            if pair < args.pairs - 1:
                pool.close()
                time.sleep(0.5)
        run.rps0 = statistics.median(x.requests_per_sec for x in base)
        run.p50_0 = statistics.median(x.p50_ms for x in base)
        run.p99_0 = statistics.median(x.p99_ms for x in base)
        run.rps_idle = statistics.median(x.requests_per_sec for x in busy)
        run.p50_idle = statistics.median(x.p50_ms for x in busy)
        run.p99_idle = statistics.median(x.p99_ms for x in busy)
        run.p99_pairs = [(a.p99_ms, b.p99_ms) for a, b in zip(base, busy)]
        run.errors = sum(x.errors + x.non_2xx for x in (*base, *busy))
        pool.open(args.idle - half)
        run.rss_full = settled_rss(root, seconds=2.0)
        run.server_sockets = server_sockets(root)
        pool.loop.run_until_complete(asyncio.sleep(0.1))  # let any close the server sent arrive
        run.idle, run.failed_connects = pool.open_count, pool.failed
        if server.proc.poll() is not None:
            raise h.BenchError(f"server exited with code {server.proc.returncode}:\n{server.log_tail()}")
        run.per_conn = (run.rss_full - run.rss0) / run.idle if run.idle else 0.0
        run.per_conn_half_to_full = ((run.rss_full - run.rss_half) / (run.idle - half)
                                     if run.idle > half else 0.0)
        run.ok = run.idle > 0
        if run.idle < args.idle:
            run.error = f"only {run.idle} of {args.idle} idle connections were open at the end"
    except (h.BenchError, OSError) as exc:
        run.error = f"{type(exc).__name__}: {exc}\n{server.log_tail()}"
    finally:
        pool.close()
        h.stop_server(server, term_timeout=args.stop_timeout)
    return run


def raise_fd_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def ephemeral_ports() -> int:
    try:
        lo, hi = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return hi - lo + 1
    except (OSError, ValueError):
        return 28232


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    h.add_server_arguments(parser, t.ALL_SERVERS, rounds=3, duration=5.0, warmup=1.0, load="client and wrk")
    parser.add_argument("--idle", type=int, default=10_000, help="idle connections at the end (default 10000)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    parser.add_argument("--pairs", type=int, default=2,
                        help="wrk runs without / with half the idle connections, alternated (default 2 pairs)")
    parser.add_argument("--quick", action="store_true", help="1 round, 3 s wrk runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration = 1, 3.0
    if args.rounds < 1 or args.pairs < 1 or args.duration < 1 or args.warmup < 0 or not 2 <= args.idle <= 50_000:
        parser.error("--rounds >= 1, --duration >= 1, --warmup >= 0 and 2 <= --idle <= 50000 are required")
    return args, parser


def main(argv: Sequence[str] | None = None) -> int:
    args, parser = parse_args(argv)
    limit = raise_fd_limit(args.idle + 1000)
    if limit < args.idle + 200:
        parser.error(f"RLIMIT_NOFILE is {limit}: too low for {args.idle} idle connections")
    if ephemeral_ports() < args.idle + 1000:
        parser.error(f"only {ephemeral_ports()} ephemeral ports for {args.idle} connections")
    try:
        names, cpus = t.names_and_cpus(parser, args)  # the idle client runs here, beside wrk
        return run(names, args, cpus, limit)
    except h.BenchError as exc:
        h.log(f"[bench] error: {exc}")
        return 1


def run(names: Sequence[str], args: argparse.Namespace, cpus: h.CpuPlan, limit: int) -> int:
    pounce_python, peer_python, facts = t.prepare(names, args)
    print(f"Load: {args.idle} idle keep-alive connections ({args.idle // 2} during the second wrk run), "
          f"wrk -c{args.connections} -d{args.duration:g}s, {args.rounds} round(s), RLIMIT_NOFILE {limit}; "
          f"server on CPU {h.format_cpu_list(cpus.server)}, wrk + idle client on CPU "
          f"{h.format_cpu_list(cpus.load)}\n", flush=True)
    backlog = 4096
    specs = [build_spec(n, pounce_python, peer_python, backlog) for n in names]
    results: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="pounce-conn-bench-") as tmp:
        for round_no, spec in t.interleaved(specs, args.rounds):
            one = measure(spec, cpus, args, round_no, Path(tmp))
            results.append(one)
            if one.ok:
                h.log(f"[bench]     {one.idle} idle ({one.server_sockets} server sockets), "
                      f"{one.per_conn:,.0f} B/conn ({one.per_conn_half_to_full:,.0f} from {args.idle // 2} to {args.idle}); "
                      f"p99 {one.p99_0:.2f} ms -> {one.p99_idle:.2f} ms with {args.idle // 2} idle "
                      f"({one.rps0:,.0f} -> {one.rps_idle:,.0f} req/s); pairs "
                      + ", ".join(f"{a:.2f}/{b:.2f}" for a, b in one.p99_pairs))
            if one.error:
                h.log(f"[bench]     {'FAILED' if not one.ok else 'warning'}: {one.error.splitlines()[0]}")

    def med(name: str, attr: str) -> float:
        values = [getattr(x, attr) for x in results if x.server == name and x.ok]
        return statistics.median(values) if values else 0.0

    half = args.idle // 2
    rows = []
    for name in names:
        p99r = h.ratio(med(name, "p99_idle"), med(name, "p99_0"))
        rows.append([name, f"{med(name, 'idle'):,.0f}", h.mib(med(name, "rss0")), h.mib(med(name, "rss_full")),
                     f"{med(name, 'per_conn') / 1024:.1f}", f"{med(name, 'per_conn_half_to_full') / 1024:.1f}",
                     f"{med(name, 'rps0'):,.0f}", f"{med(name, 'p99_0'):.2f}",
                     f"{med(name, 'rps_idle'):,.0f}", f"{med(name, 'p99_idle'):.2f}", h.fmt_ratio(p99r)])
    print(h.format_table(["server (1 worker)", "idle", "RSS 0 MiB", f"RSS {args.idle} MiB", "KiB/idle conn",
                          f"KiB/conn {half}->{args.idle}", "req/s 0 idle", "p99 ms 0 idle",
                          f"req/s {half} idle", f"p99 ms {half} idle", "p99 ratio"], rows))
    print("\nmedians over the rounds; KiB/idle conn = (RSS with all idle - RSS with none) / idle; "
          "p99 ratio = p99 with idle / p99 without (lower is better)")

    targets: list[tuple[str, float | None, float, bool]] = []
    if POUNCE in names:
        mine = med(POUNCE, "per_conn")
        for peer in (UVICORN, GRANIAN):
            if peer in names:
                # <= 1.0 means Pounce uses no more memory per idle connection than the peer.
                targets.append((f"memory per idle connection, pounce / {peer}",
                                h.ratio(mine, med(peer, "per_conn")), 1.0, True))
        targets.append((f"pounce p99({half} idle) / p99(0 idle)",
                        h.ratio(med(POUNCE, "p99_idle"), med(POUNCE, "p99_0")), P99_RATIO_MAX, True))
    print("\nIssue 14 target 6:")
    for label, value, bound, at_most in targets:
        print(f"  {label}: {h.fmt_ratio(value)} (<= {bound:.1f}x) -> {h.verdict(value, bound, at_most=at_most)}")
    return t.finish(args, "connections_bench", facts, specs,
                    {"idle": args.idle, "connections": args.connections, "duration": args.duration,
                     "rounds": args.rounds, "pairs": args.pairs, "rlimit_nofile": limit},
                    {"runs": results, "targets": [{"what": label, "value": value, "at_most": bound}
                                                  for label, value, bound, _ in targets]},
                    [(f"{x.server} round {x.round}", x.error) for x in results if not x.ok])

if __name__ == "__main__":
    socket.setdefaulttimeout(30.0)
    sys.exit(main())

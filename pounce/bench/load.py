"""What a load generator is asked to do and what it reports, shared by wrk, h2load and the built-in one."""

from __future__ import annotations

import dataclasses
import math
import shutil
import subprocess
from typing import Iterable, Mapping

from pounce.bench.machine import BenchError, UsageError
from pounce.bench.procs import children_cpu_seconds

GENERATORS = ("auto", "wrk", "h2load", "builtin")
PROTOCOLS = ("http1", "http2", "ws")


@dataclasses.dataclass(frozen=True)
class LoadSpec:
    """One run of load against one server."""

    host: str
    port: int
    protocol: str  # http1 | http2 | ws
    method: str = "GET"
    path: str = "/"
    body: bytes = b""
    connections: int = 50
    duration: float = 5.0
    streams: int = 10  # HTTP/2: concurrent streams per connection
    cpus: tuple[int, ...] = ()  # where the generator runs
    threads: int = 0  # wrk threads / h2load threads / built-in processes; 0: one per load CPU

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    def workers(self) -> int:
        """Threads or processes the generator uses: one per load CPU unless told, never more than connections."""
        wanted = self.threads or max(1, len(self.cpus))
        return max(1, min(wanted, self.connections))


@dataclasses.dataclass(frozen=True)
class LoadResult:
    generator: str
    requests: int  # completed responses (messages echoed, for ws)
    seconds: float  # measured wall-clock time
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    errors: int  # connect/read/write errors and timeouts
    non_2xx: int
    bytes: int  # response bytes received, headers included where the generator counts them
    cpu_seconds: float  # the generator's own CPU time over the run

    @property
    def requests_per_sec(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def bytes_per_sec(self) -> float:
        return self.bytes / self.seconds if self.seconds > 0 else 0.0


class Histogram:
    """Latencies in logarithmic buckets of 1%: mergeable across processes, small to send, ~1% exact."""

    STEP = math.log(1.01)

    def __init__(self, counts: Mapping[int, int] | None = None) -> None:
        self.counts: dict[int, int] = dict(counts or {})

    def record(self, seconds: float) -> None:
        us = seconds * 1e6
        bucket = int(math.log(us) / self.STEP) if us > 1.0 else 0
        self.counts[bucket] = self.counts.get(bucket, 0) + 1

    def merge(self, other: Histogram) -> None:
        for bucket, n in other.counts.items():
            self.counts[bucket] = self.counts.get(bucket, 0) + n

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def percentile_ms(self, p: float) -> float:
        total = self.total
        if not total:
            return float("nan")
        rank = p / 100.0 * total
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return math.exp((bucket + 0.5) * self.STEP) / 1000.0
        return math.exp((max(self.counts) + 0.5) * self.STEP) / 1000.0

    def percentiles_ms(self) -> tuple[float, float, float, float]:
        return (self.percentile_ms(50), self.percentile_ms(90), self.percentile_ms(99), self.percentile_ms(99.9))

    @classmethod
    def of(cls, latencies_s: Iterable[float]) -> Histogram:
        hist = cls()
        for value in latencies_s:
            hist.record(value)
        return hist


def installed(name: str) -> bool:
    return shutil.which(name) is not None


def choose_generator(wanted: str, protocol: str) -> str:
    """The generator for ``protocol``: wrk for HTTP/1.1 and h2load for HTTP/2 when installed, else the
    built-in one; WebSocket is the built-in one's alone. Asking for one that cannot run is a usage error."""
    if wanted not in GENERATORS:
        raise UsageError(f"unknown load generator {wanted!r}; choose from {', '.join(GENERATORS)}")
    native = {"http1": "wrk", "http2": "h2load"}.get(protocol)
    if wanted == "auto":
        return native if native and installed(native) else "builtin"
    if wanted == "builtin":
        return wanted
    if protocol == "ws":
        return "builtin"  # neither wrk nor h2load speaks WebSocket
    if wanted != native:
        raise UsageError(f"{wanted} cannot drive {protocol}; use --load auto or --load builtin")
    if not installed(wanted):
        hint = "wrk" if wanted == "wrk" else "nghttp2-client"
        raise UsageError(f"{wanted} is not installed (apt-get install {hint}); use --load builtin")
    return wanted


def drive(spec: LoadSpec, generator: str) -> LoadResult:
    """Run ``spec`` with ``generator`` (a name from ``choose_generator``) and wait for its result."""
    if generator == "wrk":
        from pounce.bench.wrk import run_wrk

        return run_wrk(spec)
    if generator == "h2load":
        from pounce.bench.h2load import run_h2load

        return run_h2load(spec)
    from pounce.bench.native import run_native

    return run_native(spec)



def run_tool(argv: list[str], name: str, timeout: float) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run a load generator program to its end: its output, and the CPU time it used (as a reaped child)."""
    before = children_cpu_seconds()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{name} did not finish within {timeout:.0f}s") from None
    except OSError as exc:
        raise BenchError(f"cannot run {name}: {exc}") from exc
    cpu = children_cpu_seconds() - before
    if done.returncode != 0:
        raise BenchError(f"{name} exited with {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    return done, cpu

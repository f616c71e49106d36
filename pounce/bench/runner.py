"""One measurement (start, warm up, measure, stop) and the interleaved rounds of a whole run.

Servers run one at a time, each freshly started for each workload and round; the order of the
servers rotates every round so none always goes first (page cache, thermal state and background
noise even out).
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from pounce.bench.load import LoadResult, LoadSpec, choose_generator, drive
from pounce.bench.machine import BenchError, CpuPlan
from pounce.bench.peers import Contender
from pounce.bench.procs import CpuMeter, MemorySampler, tree_memory
from pounce.bench.progress import Progress
from pounce.bench.servers import HOST, BadResponse, RunningServer, ServerSpec, request, start_server, stop_server
from pounce.bench.workloads import Workload

NAN = float("nan")


@dataclasses.dataclass(frozen=True)
class Settings:
    duration: float = 5.0
    warmup: float = 1.0
    rounds: int = 3
    connections: int = 50  # requests in flight
    threads: int = 0  # load generator threads/processes; 0: one per load CPU
    generator: str = "auto"  # auto | wrk | h2load | builtin
    startup_timeout: float = 60.0
    stop_timeout: float = 15.0


@dataclasses.dataclass(frozen=True)
class Run:
    """Every raw figure of one measured run."""

    server: str
    workload: str
    round: int
    ok: bool
    error: str = ""
    generator: str = ""
    connections: int = 0
    requests: int = 0
    seconds: float = 0.0
    requests_per_sec: float = 0.0
    p50_ms: float = NAN
    p90_ms: float = NAN
    p99_ms: float = NAN
    p999_ms: float = NAN
    errors: int = 0  # socket errors and timeouts
    non_2xx: int = 0
    bytes: int = 0
    bytes_per_sec: float = 0.0
    chunk_ms: float = NAN  # stream: median response time / chunks per response
    server_cpu_seconds: float = NAN
    server_cpu_pct: float = NAN  # of the server CPUs' capacity
    server_other_cpu_pct: float = NAN  # other processes on the server's CPUs: noise
    load_cpu_seconds: float = NAN
    load_cpu_pct: float = NAN  # of the load CPUs' capacity; near 100: the generator set the pace
    load_other_cpu_pct: float = NAN
    # Requests per CPU-second the server used: barely moves when other processes steal its CPU.
    requests_per_cpu_sec: float = NAN
    # Requests per CPU-second the load generator used: about the most it could drive on one CPU.
    load_requests_per_cpu_sec: float = NAN
    rss_idle_bytes: int = 0
    rss_peak_bytes: int = 0
    pss_peak_bytes: int = 0
    processes: int = 0
    paced_by: str = ""
    stop_seconds: float = 0.0
    stop_forced: bool = False


def paced_by(server_pct: float, server_other: float, load_pct: float) -> str:
    """Who set the pace of a run, from who used the CPU."""
    if load_pct >= 90:
        return "load generator"
    if server_pct >= 85:
        return "server"
    if server_other >= 20:
        return "other processes"
    return "neither (server waited)"


def load_spec(server: RunningServer, workload: Workload, settings: Settings, cpus: CpuPlan,
              duration: float) -> LoadSpec:
    return LoadSpec(HOST, server.port, workload.protocol, workload.method, workload.path, workload.body,
                    connections=workload.connections(settings.connections), duration=duration,
                    streams=workload.in_flight_per_connection, cpus=cpus.load, threads=settings.threads)


def warm_up(server: RunningServer, workload: Workload, settings: Settings, cpus: CpuPlan, generator: str) -> None:
    """Unmeasured load; a non-2xx answer here stops the run with the response shown."""
    if settings.warmup <= 0:
        return
    result = drive(load_spec(server, workload, settings, cpus, settings.warmup), generator)
    if result.non_2xx:
        try:
            response = request(server.port, workload.probe)
        except Exception as exc:  # noqa: BLE001 - any failure to fetch it is shown as text
            raise BenchError(f"{result.non_2xx} of {result.requests + result.non_2xx} warm-up responses from "
                             f"{server.spec.name} were not 2xx, and fetching one failed: {exc}") from exc
        raise BadResponse(f"{result.non_2xx} of {result.requests + result.non_2xx} warm-up responses from "
                          f"{server.spec.name} to {workload.method} {workload.path} were not 2xx", response)


def measure(spec: ServerSpec, workload: Workload, cpus: CpuPlan, settings: Settings, *, round_no: int,
            log_dir: Path) -> Run:
    """Start -> warm-up -> measured run -> stop. A server's failure becomes a failed Run; a bad answer
    raises BadResponse (the caller decides whether it ends the whole run)."""
    generator = choose_generator(settings.generator, workload.protocol)
    try:
        server = start_server(spec, cpus.server, log_dir=log_dir, probe=workload.probe,
                              startup_timeout=settings.startup_timeout)
    except BadResponse:
        raise
    except BenchError as exc:
        return Run(spec.name, workload.name, round_no, False, str(exc), generator)
    result: LoadResult | None = None
    error = ""
    sampler = MemorySampler(server.proc.pid)
    idle = tree_memory(server.proc.pid)
    try:
        warm_up(server, workload, settings, cpus, generator)
        meter = CpuMeter(server.proc.pid, cpus.server, cpus.load)
        with sampler:
            result = drive(load_spec(server, workload, settings, cpus, settings.duration), generator)
        window = meter.stop(result.cpu_seconds)
        if server.proc.poll() is not None:
            error = f"server exited with code {server.proc.returncode} under load:\n{server.log_tail()}"
    except BadResponse:
        raise
    except BenchError as exc:
        error = f"{exc}\n{server.log_tail()}".strip()
    finally:
        stopped = stop_server(server, term_timeout=settings.stop_timeout)
    stop_seconds, forced = stopped.seconds, stopped.forced
    if result is None or error or result.requests == 0:
        return Run(spec.name, workload.name, round_no, False, error or "no requests completed", generator,
                   stop_seconds=stop_seconds, stop_forced=forced)
    return Run(
        server=spec.name, workload=workload.name, round=round_no, ok=True, generator=generator,
        connections=workload.connections(settings.connections),
        requests=result.requests, seconds=result.seconds, requests_per_sec=result.requests_per_sec,
        p50_ms=result.p50_ms, p90_ms=result.p90_ms, p99_ms=result.p99_ms, p999_ms=result.p999_ms,
        errors=result.errors, non_2xx=result.non_2xx, bytes=result.bytes, bytes_per_sec=result.bytes_per_sec,
        chunk_ms=result.p50_ms / workload.chunks if workload.chunks else NAN,
        server_cpu_seconds=window.server_seconds, server_cpu_pct=window.server_pct,
        server_other_cpu_pct=window.server_other_pct, load_cpu_seconds=window.load_seconds,
        load_cpu_pct=window.load_pct, load_other_cpu_pct=window.load_other_pct,
        requests_per_cpu_sec=result.requests / window.server_seconds if window.server_seconds > 0 else NAN,
        load_requests_per_cpu_sec=result.requests / result.cpu_seconds if result.cpu_seconds > 0 else NAN,
        rss_idle_bytes=idle.rss_bytes, rss_peak_bytes=sampler.peak.rss_bytes, pss_peak_bytes=sampler.peak_pss_bytes,
        processes=sampler.peak.processes,
        paced_by=paced_by(window.server_pct, window.server_other_pct, window.load_pct),
        stop_seconds=stop_seconds, stop_forced=forced,
    )


@dataclasses.dataclass(frozen=True)
class Skip:
    server: str
    workload: str
    reason: str


SpecFor = Callable[[Contender, Workload], "ServerSpec | str"]


def run_all(contenders: Sequence[Contender], workloads: Sequence[Workload], spec_for: SpecFor, cpus: CpuPlan,
            settings: Settings, progress: Progress, *, strict: str | None = None) -> tuple[list[Run], list[Skip]]:
    """Every contender on every workload, ``settings.rounds`` times.

    A BadResponse from the ``strict`` contender (Pounce, whose answer says the APP/path is wrong)
    ends the run; from another one (a peer that cannot serve the app) it becomes a failed Run.
    """
    runs: list[Run] = []
    skips: dict[tuple[str, str], Skip] = {}
    with tempfile.TemporaryDirectory(prefix="pounce-bench-logs-") as tmp:
        for r in range(settings.rounds):
            shift = r % len(contenders)
            for workload in workloads:
                for contender in [*contenders[shift:], *contenders[:shift]]:
                    spec = spec_for(contender, workload)
                    if isinstance(spec, str):
                        skips.setdefault((contender.name, workload.name), Skip(contender.name, workload.name, spec))
                        continue
                    progress.start(f"round {r + 1}/{settings.rounds} - {contender.name} - {workload.name}")
                    try:
                        run = measure(spec, workload, cpus, settings, round_no=r + 1, log_dir=Path(tmp))
                    except BadResponse as exc:
                        if contender.name == strict:
                            raise
                        run = Run(spec.name, workload.name, r + 1, False, f"{exc}:\n{exc.response.show()}")
                    runs.append(run)
                    progress.note(describe_run(run))
    return runs, list(skips.values())


def describe_run(run: Run) -> str:
    head = f"{run.server} {run.workload}:"
    if not run.ok:
        return f"{head} FAILED {run.error.splitlines()[0] if run.error else ''}"
    return (f"{head} {run.requests_per_sec:,.0f} req/s, p99 {run.p99_ms:.2f} ms, errors {run.errors}, "
            f"non-2xx {run.non_2xx}, server CPU {run.server_cpu_pct:.0f}%, {run.generator} CPU "
            f"{run.load_cpu_pct:.0f}%, PSS {run.pss_peak_bytes / 2**20:.1f} MiB")

"""The benchmark scripts' side of the one engine in :mod:`pounce.bench`.

Servers are started, pinned, loaded (wrk, pinned to other CPUs), accounted for (CPU and memory of
the whole process tree) and stopped by ``pounce.bench`` -- the same code ``pounce bench`` runs.
What is left here is the scripts' own: the peers' venv, ``.bench-venv/`` at the repository root (so
peers never leak into the interpreter that runs Pounce), server specs that import
``benchmarks.apps`` from this checkout, the scripts' argparse options, and their summary tables.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from pounce.bench import report
from pounce.bench.machine import (  # re-exported for the scripts (see __all__)
    BenchError, CpuPlan, PythonInfo, format_cpu_list, log, machine_info, parse_cpu_list, python_info,
    resolve_python,
)
from pounce.bench.procs import MemorySample, MemorySampler, process_tree, tree_memory
from pounce.bench.report import format_table, ratio, to_jsonable
from pounce.bench.runner import Settings, measure as engine_measure
from pounce.bench.servers import (
    HOST, BadResponse, Probe, RunningServer, ServerSpec, StopResult, free_port, stop_server,
)
from pounce.bench.servers import start_server as engine_start_server
from pounce.bench.workloads import Workload

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_VENV = REPO_ROOT / ".bench-venv"
# uvicorn is pinned to the release Pounce is measured against; the others float and their
# versions are recorded in every report.
PEER_REQUIREMENTS = ("uvicorn[standard]==0.54.0", "granian", "hypercorn")
PEER_IMPORTS = ("uvicorn", "httptools", "uvloop", "granian", "hypercorn")
POUNCE_REQUIREMENTS = ("h11", "click")
# benchmarks.apps is imported from this checkout, whoever's interpreter runs the server.
CHECKOUT_ENV = (("PYTHONPATH", f"{REPO_ROOT}{os.pathsep}"),)


__all__ = [
    "BENCH_VENV",
    "BadResponse",
    "BenchError",
    "CHECKOUT_ENV",
    "CpuPlan",
    "HOST",
    "LoadSettings",
    "Measurement",
    "MemorySample",
    "MemorySampler",
    "PEER_IMPORTS",
    "PEER_REQUIREMENTS",
    "POUNCE_REQUIREMENTS",
    "Probe",
    "PythonInfo",
    "REPO_ROOT",
    "RunningServer",
    "ServerSpec",
    "StopResult",
    "Summary",
    "_pip_install",
    "add_common_arguments",
    "ceiling_spec",
    "checkout_spec",
    "count",
    "default_peer_base",
    "ensure_bench_venv",
    "ensure_pounce_python",
    "fmt_ratio",
    "format_cpu_list",
    "format_table",
    "free_port",
    "granian_spec",
    "header_lines",
    "hypercorn_spec",
    "log",
    "machine_info",
    "measure",
    "mib",
    "noise_warnings",
    "package_versions",
    "parse_cpu_list",
    "parse_only",
    "pct",
    "pounce_spec",
    "process_tree",
    "python_info",
    "ratio",
    "resolve_python",
    "run_interleaved",
    "settings_from_args",
    "start_server",
    "stop_server",
    "summarise",
    "sysconfig_free_threaded",
    "to_jsonable",
    "tree_memory",
    "uvicorn_spec",
    "verdict",
    "write_json",
]


# --------------------------------------------------------------------------- interpreters

def _pip_install(python: str, requirements: Sequence[str], timeout: float) -> None:
    log(f"[bench] pip install {' '.join(requirements)} into {python}")
    try:
        subprocess.run(
            [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *requirements],
            check=True, timeout=timeout,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        raise BenchError(f"pip install failed for {python}: {exc}") from exc


def _make_venv(base_python: str, path: Path, timeout: float) -> str:
    log(f"[bench] creating venv {path} from {base_python}")
    try:
        subprocess.run([base_python, "-m", "venv", str(path)], check=True, timeout=timeout)
    except (subprocess.SubprocessError, OSError) as exc:
        raise BenchError(f"cannot create venv {path}: {exc}") from exc
    return str(path / "bin" / "python")


def default_peer_base() -> str:
    """The interpreter the peers' venv is made from: httptools/uvloop want a GIL build."""
    if not sysconfig_free_threaded():
        return sys.executable
    for name in ("python3", "python3.12", "python3.11", "python3.13"):
        found = shutil.which(name)
        if found and not python_info(found).free_threaded_build:
            return found
    raise BenchError("no GIL build of Python found for the peers' venv; pass --peer-python")


def sysconfig_free_threaded() -> bool:
    import sysconfig

    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def ensure_bench_venv(base_python: str | None = None, *, timeout: float = 900.0) -> str:
    """Create or reuse ``.bench-venv/`` with the peers; return its python."""
    python = BENCH_VENV / "bin" / "python"
    if python.exists() and not python_info(str(python), PEER_IMPORTS).missing:
        return str(python)
    if not python.exists():
        _make_venv(base_python or default_peer_base(), BENCH_VENV, timeout)
    _pip_install(str(python), PEER_REQUIREMENTS, timeout)
    missing = python_info(str(python), PEER_IMPORTS).missing
    if missing:
        raise BenchError(f"{BENCH_VENV} still lacks {', '.join(missing)} after pip install")
    return str(python)


def ensure_pounce_python(python: str, *, timeout: float = 600.0) -> str:
    """Return an interpreter that can run Pounce from this checkout.

    If ``python`` lacks Pounce's runtime dependencies (a freshly built free-threaded
    interpreter usually does), a venv made from it is created under ``.bench-venv/`` (which
    is gitignored) so the shared interpreter itself is never modified.
    """
    python = resolve_python(python)
    info = python_info(python, POUNCE_REQUIREMENTS)
    if not info.missing:
        return python
    tag = hashlib.sha256(python.encode()).hexdigest()[:10]
    venv = BENCH_VENV / "pounce-envs" / f"py{info.version}{'t' if info.free_threaded_build else ''}-{tag}"
    venv_python = venv / "bin" / "python"
    if not venv_python.exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        _make_venv(python, venv, timeout)
    if python_info(str(venv_python), POUNCE_REQUIREMENTS).missing:
        _pip_install(str(venv_python), POUNCE_REQUIREMENTS, timeout)
    return str(venv_python)


def package_versions(python: str, names: Iterable[str]) -> dict[str, str]:
    script = (
        "import json, sys\nfrom importlib import metadata\nout = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = metadata.version(n)\n"
        "    except metadata.PackageNotFoundError: out[n] = 'missing'\n"
        "print(json.dumps(out))"
    )
    try:
        out = subprocess.run([python, "-c", script, *names], capture_output=True, text=True,
                             timeout=60, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return {}
    result: dict[str, str] = json.loads(out)
    return result


def parse_only(parser: Any, value: str, known: Sequence[str]) -> list[str]:
    """The server names given to ``--only`` (comma-separated); a usage error for unknown or none."""
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        parser.error(f"--only: unknown server(s) {', '.join(unknown) or '(none given)'}; "
                     f"choose from {', '.join(known)}")
    return names


# --------------------------------------------------------------------------- servers

def checkout_spec(name: str, argv: Sequence[str], workers: int = 1) -> ServerSpec:
    """A server that imports its app from this checkout (benchmarks.*)."""
    return ServerSpec(name, tuple(argv), workers, CHECKOUT_ENV, str(REPO_ROOT))


def pounce_spec(python: str, app: str, *, name: str = "pounce", http: str | None = None,
                loop: str = "asyncio", workers: int = 1, worker_mode: str | None = None) -> ServerSpec:
    argv = [python, "-m", "pounce", f"benchmarks.apps:{app}", "--host", HOST, "--port", "{port}",
            "--workers", str(workers), "--no-access-log", "--log-level", "warning", "--loop", loop]
    if http is not None:
        argv += ["--http", http]
    if worker_mode is not None:
        argv += ["--worker-mode", worker_mode]
    return checkout_spec(name, argv, workers)


def uvicorn_spec(peer_python: str, app: str, *, name: str, http: str, loop: str, workers: int = 1) -> ServerSpec:
    argv = (peer_python, "-m", "uvicorn", f"benchmarks.apps:{app}", "--host", HOST, "--port", "{port}",
            "--workers", str(workers), "--no-access-log", "--log-level", "warning",
            "--http", http, "--loop", loop)
    return checkout_spec(name, argv, workers)


def granian_spec(peer_python: str, app: str, *, name: str = "granian", workers: int = 1) -> ServerSpec:
    # Access log is off by default in granian; the loop is its default (uvloop when installed).
    argv = (peer_python, "-m", "granian", "--interface", "asgi", "--host", HOST, "--port", "{port}",
            "--workers", str(workers), "--log-level", "warning", f"benchmarks.apps:{app}")
    return checkout_spec(name, argv, workers)


def hypercorn_spec(peer_python: str, app: str, *, name: str = "hypercorn", workers: int = 1) -> ServerSpec:
    # Hypercorn writes no access log unless --access-logfile is given; asyncio worker class.
    argv = (peer_python, "-m", "hypercorn", "--bind", f"{HOST}:{{port}}", "--workers", str(workers),
            "--log-level", "warning", "--worker-class", "asyncio", f"benchmarks.apps:{app}")
    return checkout_spec(name, argv, workers)


def ceiling_spec(python: str, body: bytes, *, name: str = "ceiling") -> ServerSpec:
    """benchmarks/ceiling_server.py: one canned answer per request head, validating nothing (issue 14)."""
    argv = (python, str(REPO_ROOT / "benchmarks" / "ceiling_server.py"), "--host", HOST, "--port", "{port}",
            "--body", body.decode("ascii"))
    return checkout_spec(name, argv)


def start_server(spec: ServerSpec, cpus: Sequence[int], *, log_dir: Path, expected_body: bytes,
                 startup_timeout: float) -> RunningServer:
    """Start ``spec`` pinned to ``cpus``; return once ``GET /`` answers 200 with ``expected_body``."""
    try:
        return engine_start_server(spec, cpus, log_dir=log_dir, probe=Probe(expected_body=expected_body),
                                   startup_timeout=startup_timeout)
    except BadResponse as exc:
        raise BenchError(f"{exc} ({exc.response.status}, {len(exc.response.body)} bytes); "
                         f"refusing to benchmark it") from None


# --------------------------------------------------------------------------- measurements

@dataclasses.dataclass(frozen=True)
class LoadSettings:
    app: str
    duration: float
    warmup: float
    threads: int
    connections: int
    startup_timeout: float
    stop_timeout: float


@dataclasses.dataclass(frozen=True)
class Measurement:
    server: str
    workers: int
    round: int
    ok: bool
    error: str = ""
    requests_per_sec: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    requests: int = 0
    errors: int = 0  # socket errors + non-2xx responses
    rss_idle_bytes: int = 0
    rss_peak_bytes: int = 0
    pss_peak_bytes: int = 0
    processes: int = 0
    stop_seconds: float = 0.0
    stop_forced: bool = False
    server_cpu_pct: float = float("nan")  # of the server CPUs' capacity, during the measured run
    other_cpu_pct: float = float("nan")  # other processes on the server CPUs: noise
    # Requests per CPU-second the server spent: unlike req/s this barely moves when other
    # processes steal the server's CPU, so it is the steadier figure on a shared machine.
    requests_per_cpu_sec: float = float("nan")
    # wrk's own share of the load CPUs, and everything else's: near 100% for wrk means the
    # load generator, not the server, set the pace.
    wrk_cpu_pct: float = float("nan")
    load_other_cpu_pct: float = float("nan")


def measure(spec: ServerSpec, cpus: CpuPlan, settings: LoadSettings, *, round_no: int, log_dir: Path,
            expected_body: bytes) -> Measurement:
    """One start -> warm-up -> measured run -> stop cycle (pounce.bench's), as the scripts report it."""
    workload = Workload(settings.app, "", "http1", settings.app, expected_body=expected_body)
    engine = Settings(duration=settings.duration, warmup=settings.warmup, rounds=1,
                      connections=settings.connections, threads=settings.threads, generator="wrk",
                      startup_timeout=settings.startup_timeout, stop_timeout=settings.stop_timeout)
    try:
        run = engine_measure(spec, workload, cpus, engine, round_no=round_no, log_dir=log_dir)
    except BadResponse as exc:
        return Measurement(spec.name, spec.workers, round_no, ok=False,
                           error=f"{exc}; refusing to benchmark it:\n{exc.response.show()}")
    if run.stop_forced:
        log(f"[bench] note: {spec.name} needed SIGKILL after {settings.stop_timeout:.0f}s of SIGTERM")
    if not run.ok:
        return Measurement(spec.name, spec.workers, round_no, ok=False, error=run.error,
                           stop_seconds=run.stop_seconds, stop_forced=run.stop_forced)
    return Measurement(
        server=spec.name, workers=spec.workers, round=round_no, ok=True,
        requests_per_sec=run.requests_per_sec, p50_ms=run.p50_ms, p99_ms=run.p99_ms,
        requests=run.requests, errors=run.errors + run.non_2xx,
        rss_idle_bytes=run.rss_idle_bytes, rss_peak_bytes=run.rss_peak_bytes,
        pss_peak_bytes=run.pss_peak_bytes, processes=run.processes,
        stop_seconds=run.stop_seconds, stop_forced=run.stop_forced,
        server_cpu_pct=run.server_cpu_pct, other_cpu_pct=run.server_other_cpu_pct,
        requests_per_cpu_sec=run.requests_per_cpu_sec,
        wrk_cpu_pct=run.load_cpu_pct, load_other_cpu_pct=run.load_other_cpu_pct,
    )


def run_interleaved(specs: Sequence[ServerSpec], cpus: CpuPlan, settings: LoadSettings, *, rounds: int,
                    expected_body: bytes) -> list[Measurement]:
    """Run every spec once per round, rotating the order each round so that no server
    always goes first (thermal state, page cache and background noise even out)."""
    results: list[Measurement] = []
    total = rounds * len(specs)
    with tempfile.TemporaryDirectory(prefix="pounce-bench-") as tmp:
        for r in range(rounds):
            shift = r % len(specs) if specs else 0
            for spec in [*specs[shift:], *specs[:shift]]:
                log(f"[bench] ({len(results) + 1}/{total}) round {r + 1}: {spec.name} "
                    f"x{spec.workers} for {settings.duration:g}s")
                m = measure(spec, cpus, settings, round_no=r + 1, log_dir=Path(tmp), expected_body=expected_body)
                if m.ok:
                    log(f"[bench]     {m.requests_per_sec:,.0f} req/s, p99 {m.p99_ms:.2f} ms, "
                        f"RSS {m.rss_peak_bytes / 2**20:.1f} MiB, errors {m.errors}, "
                        f"server CPU {m.server_cpu_pct:.0f}% (others {m.other_cpu_pct:.0f}%), "
                        f"wrk CPU {m.wrk_cpu_pct:.0f}% (others {m.load_other_cpu_pct:.0f}%)")
                else:
                    log(f"[bench]     FAILED: {m.error.splitlines()[0] if m.error else ''}")
                results.append(m)
    return results


@dataclasses.dataclass(frozen=True)
class Summary:
    server: str
    workers: int
    runs: int
    ok_runs: int
    median_rps: float
    median_p99_ms: float
    median_rss_bytes: float
    errors: int
    error: str
    rps_spread_pct: float = float("nan")  # (max - min) / median over the rounds
    median_server_cpu_pct: float = float("nan")
    max_other_cpu_pct: float = float("nan")  # worst noise seen on the server CPUs
    median_requests_per_cpu_sec: float = float("nan")
    max_wrk_cpu_pct: float = float("nan")
    max_load_other_cpu_pct: float = float("nan")

    @property
    def noise(self) -> str:
        """Worst foreign load seen on the server's / wrk's CPUs, e.g. "12/3"."""
        return f"{pct(self.max_other_cpu_pct)}/{pct(self.max_load_other_cpu_pct)}"

    @property
    def ok(self) -> bool:
        return self.ok_runs > 0


def summarise(results: Sequence[Measurement]) -> list[Summary]:
    groups: dict[tuple[str, int], list[Measurement]] = {}
    for m in results:
        groups.setdefault((m.server, m.workers), []).append(m)
    out = []
    for (server, workers), ms in groups.items():
        good = [m for m in ms if m.ok]
        out.append(Summary(
            server=server, workers=workers, runs=len(ms), ok_runs=len(good),
            median_rps=statistics.median(m.requests_per_sec for m in good) if good else 0.0,
            median_p99_ms=statistics.median(m.p99_ms for m in good) if good else float("nan"),
            median_rss_bytes=statistics.median(m.rss_peak_bytes for m in good) if good else 0.0,
            errors=sum(m.errors for m in good),
            error=next((m.error for m in ms if not m.ok), ""),
            rps_spread_pct=_spread(m.requests_per_sec for m in good),
            median_server_cpu_pct=_nan_median(m.server_cpu_pct for m in good),
            median_requests_per_cpu_sec=_nan_median(m.requests_per_cpu_sec for m in good),
            max_wrk_cpu_pct=_nan_max(m.wrk_cpu_pct for m in good),
            max_load_other_cpu_pct=_nan_max(m.load_other_cpu_pct for m in good),
            max_other_cpu_pct=_nan_max(m.other_cpu_pct for m in good),
        ))
    return out


def _spread(values: Iterable[float]) -> float:
    vals = list(values)
    if len(vals) < 2 or statistics.median(vals) <= 0:
        return float("nan")
    return 100.0 * (max(vals) - min(vals)) / statistics.median(vals)


def _nan_max(values: Iterable[float]) -> float:
    return max((v for v in values if v == v), default=float("nan"))


def _nan_median(values: Iterable[float]) -> float:
    vals = [v for v in values if v == v]
    return statistics.median(vals) if vals else float("nan")


def noise_warnings(summaries: Iterable[Summary]) -> list[str]:
    """Plain-language warnings when the figures were bent by something other than the server."""
    items = list(summaries)
    out = []
    srv = _nan_max(x.max_other_cpu_pct for x in items)
    load = _nan_max(x.max_load_other_cpu_pct for x in items)
    if srv > 10 or load > 10:
        out.append(f"Warning: other processes used up to {pct(srv)}% of the server's CPUs and {pct(load)}% of "
                   f"wrk's during some runs; req/s is noisy, req/CPU-s much less so.")
    bound = [f"{x.server} x{x.workers}" for x in items if x.max_wrk_cpu_pct >= 90]
    if bound:
        out.append(f"Warning: wrk used >= 90% of its CPUs for {', '.join(bound)}: the load generator may have "
                   f"set the pace there; give it more CPUs (--cpus-load, --wrk-threads).")
    return out


def count(value: float) -> str:
    return "-" if value != value else f"{value:,.0f}"


def pct(value: float) -> str:
    return "-" if value != value else f"{value:.0f}"


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def verdict(value: float | None, target: float, *, at_most: bool = False) -> str:
    if value is None:
        return "n/a"
    met = value <= target if at_most else value >= target
    return "met" if met else "MISSED"


def mib(n: float) -> str:
    return f"{n / 2**20:.1f}" if n else "-"


def add_common_arguments(parser: Any, *, default_rounds: int, default_duration: float) -> None:
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter that runs Pounce (default: this one); a free-threaded one "
                             "comes from ../shared/tools/free-threaded-python")
    parser.add_argument("--peer-python", default=None,
                        help="GIL interpreter to build .bench-venv/ from (default: this one if it is a GIL build)")
    parser.add_argument("--app", default="hello", choices=["hello", "json_app", "large"],
                        help="app from benchmarks/apps.py (default: hello)")
    # None means "not given": --quick changes the defaults, explicit values still win.
    parser.set_defaults(normal_defaults=(default_rounds, default_duration, 2.0))
    parser.add_argument("--rounds", type=int, default=None, help=f"rounds (default {default_rounds})")
    parser.add_argument("--duration", type=float, default=None,
                        help=f"seconds per measured run (default {default_duration:g})")
    parser.add_argument("--warmup", type=float, default=None, help="seconds of unmeasured load first (default 2)")
    parser.add_argument("--quick", action="store_true",
                        help="defaults become 1 round x 3 s with a 1 s warm-up")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    parser.add_argument("--wrk-threads", type=int, default=None,
                        help="wrk threads (default: one per load CPU, at most --connections)")
    parser.add_argument("--cpus-server", default=None, help="CPUs for the server, taskset syntax")
    parser.add_argument("--cpus-load", default=None, help="CPUs for wrk, taskset syntax")
    parser.add_argument("--startup-timeout", type=float, default=60.0, help="seconds to wait for a server (default 60)")
    parser.add_argument("--stop-timeout", type=float, default=15.0,
                        help="seconds between SIGTERM and SIGKILL (default 15)")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the results as JSON here")


def add_server_arguments(
    parser: Any, servers: Sequence[str], *, rounds: int, duration: float, warmup: float, load: str = "client"
) -> None:
    """The options of the scripts that run their own client (ws_bench, sse_bench, connections_bench)."""
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs Pounce (default: this one)")
    parser.add_argument("--peer-python", default=None, help="GIL interpreter to build .bench-venv/ from")
    parser.add_argument("--rounds", type=int, default=rounds, help=f"rounds, servers interleaved (default {rounds})")
    parser.add_argument("--duration", type=float, default=duration,
                        help=f"measured seconds per run (default {duration:g})")
    parser.add_argument("--warmup", type=float, default=warmup, help=f"seconds of warm-up first (default {warmup:g})")
    parser.add_argument("--only", default=None, help=f"comma-separated subset of: {','.join(servers)}")
    parser.add_argument("--cpus-server", default=None, help="CPUs for the server, taskset syntax")
    parser.add_argument("--cpus-load", default=None, help=f"CPUs for the {load}, taskset syntax")
    parser.add_argument("--startup-timeout", type=float, default=60.0, help="seconds to wait for a server")
    parser.add_argument("--stop-timeout", type=float, default=15.0, help="seconds between SIGTERM and SIGKILL")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the results as JSON here")


def settings_from_args(parser: Any, args: Any, cpus: CpuPlan) -> tuple[LoadSettings, int]:
    rounds, duration, warmup = (1, 3.0, 1.0) if args.quick else args.normal_defaults
    args.rounds = rounds if args.rounds is None else args.rounds
    args.duration = duration if args.duration is None else args.duration
    args.warmup = warmup if args.warmup is None else args.warmup
    if args.rounds < 1 or args.duration < 1 or args.warmup < 0 or args.connections < 1:
        parser.error("--rounds, --duration and --connections must be >= 1 and --warmup >= 0")
    threads = args.wrk_threads if args.wrk_threads is not None else len(cpus.load)
    if threads < 1:
        parser.error("--wrk-threads must be >= 1")
    threads = min(threads, args.connections)  # wrk refuses more threads than connections
    settings = LoadSettings(app=args.app, duration=args.duration, warmup=args.warmup, threads=threads,
                            connections=args.connections, startup_timeout=args.startup_timeout,
                            stop_timeout=args.stop_timeout)
    return settings, args.rounds


def write_json(path: str, payload: Mapping[str, Any]) -> None:
    report.write_json(path, payload)
    log(f"[bench] wrote {path}")


def header_lines(machine: Mapping[str, Any], pounce: PythonInfo, peer: PythonInfo | None,
                 peer_versions: Mapping[str, str], cpus: CpuPlan, settings: LoadSettings, rounds: int) -> Iterator[str]:
    yield (f"Machine: {machine['cpu_count']} cores ({len(machine['usable_cpus'])} usable) "
           f"{machine['cpu_model']}, Linux {machine['kernel']}")
    yield f"Pounce Python: {pounce.describe()}"
    if peer is not None:
        versions = ", ".join(f"{k} {v}" for k, v in peer_versions.items())
        yield f"Peers Python:  {peer.describe()}"
        yield f"Peers:         {versions}"
    yield (f"Load: wrk -t{settings.threads} -c{settings.connections} -d{settings.duration:g}s "
           f"(+{settings.warmup:g}s warm-up), {rounds} round(s), app {settings.app!r}; "
           f"server on CPU {format_cpu_list(cpus.server)}, wrk on CPU {format_cpu_list(cpus.load)}")

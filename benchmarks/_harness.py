"""Shared machinery for the benchmark scripts.

Starts one server at a time in its own session, pinned with ``taskset``, waits until it
answers correctly, drives it with ``wrk --latency`` pinned to other CPUs, samples the RSS
of the server's whole process tree while the load runs, then stops it (SIGTERM, then
SIGKILL to the whole session after a bound).  Every wait here has a time limit, so a
broken server turns into a FAILED row, never a hung benchmark.

Peers (uvicorn with httptools/uvloop, granian, hypercorn) live in their own venv,
``.bench-venv/`` at the repository root, so that they never leak into the interpreter that
runs Pounce.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_VENV = REPO_ROOT / ".bench-venv"
# uvicorn is pinned to the release Pounce is measured against; the others float and their
# versions are recorded in every report.
PEER_REQUIREMENTS = ("uvicorn[standard]==0.54.0", "granian", "hypercorn")
PEER_IMPORTS = ("uvicorn", "httptools", "uvloop", "granian", "hypercorn")
POUNCE_REQUIREMENTS = ("h11", "click")
HOST = "127.0.0.1"


class BenchError(Exception):
    """A failure that should end the run with a message, not a traceback."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- interpreters

_PY_INFO_SCRIPT = r"""
import json, platform, sys, sysconfig, importlib
mods = sys.argv[1:]
missing = []
for m in mods:
    try:
        importlib.import_module(m)
    except Exception:
        missing.append(m)
gil = getattr(sys, "_is_gil_enabled", None)
print(json.dumps({
    "executable": sys.executable,
    "version": platform.python_version(),
    "implementation": platform.python_implementation(),
    "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    # Asked after the imports: a C extension without free-threading support turns the GIL back on.
    "gil_enabled": gil() if gil is not None else True,
    "missing": missing,
}))
"""


@dataclasses.dataclass(frozen=True)
class PythonInfo:
    executable: str
    version: str
    implementation: str
    free_threaded_build: bool
    gil_enabled: bool
    missing: tuple[str, ...]

    def describe(self) -> str:
        build = "free-threaded build" if self.free_threaded_build else "GIL build"
        gil = "GIL enabled" if self.gil_enabled else "GIL disabled"
        return f"{self.implementation} {self.version} ({build}, {gil} at runtime) {self.executable}"

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve_python(python: str) -> str:
    found = shutil.which(python) if os.sep not in python else python
    if not found or not os.access(found, os.X_OK):
        raise BenchError(f"interpreter not found or not executable: {python}")
    return str(Path(found).absolute())


def python_info(python: str, imports: Sequence[str] = (), *, timeout: float = 60.0) -> PythonInfo:
    env = _child_env()
    try:
        out = subprocess.run(
            [python, "-c", _PY_INFO_SCRIPT, *imports],
            capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO_ROOT, check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        raise BenchError(f"cannot query interpreter {python}: {exc}") from exc
    data = json.loads(out.strip().splitlines()[-1])
    data["missing"] = tuple(data["missing"])
    return PythonInfo(**data)


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


# --------------------------------------------------------------------------- machine / CPUs

def parse_only(parser: Any, value: str, known: Sequence[str]) -> list[str]:
    """The server names given to ``--only`` (comma-separated); a usage error for unknown or none."""
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        parser.error(f"--only: unknown server(s) {', '.join(unknown) or '(none given)'}; "
                     f"choose from {', '.join(known)}")
    return names


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": sorted(os.sched_getaffinity(0)),
        "cpu_model": model,
        "kernel": platform.release(),
        "platform": platform.platform(),
    }


def parse_cpu_list(text: str) -> list[int]:
    """Parse a taskset-style list ("0", "0-3", "0,2,4-7") and check every CPU is usable."""
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError(part)
                cpus.update(range(lo, hi + 1))
            else:
                cpus.add(int(part))
    except ValueError:
        raise BenchError(f"bad CPU list {text!r}: expected e.g. 0 or 0-3 or 0,2,4-7") from None
    usable = os.sched_getaffinity(0)
    if not cpus or not cpus <= usable:
        raise BenchError(f"CPU list {text!r} is not within the usable CPUs {format_cpu_list(sorted(usable))}")
    return sorted(cpus)


def format_cpu_list(cpus: Sequence[int]) -> str:
    return ",".join(str(c) for c in cpus)


@dataclasses.dataclass(frozen=True)
class CpuPlan:
    server: tuple[int, ...]
    load: tuple[int, ...]

    @classmethod
    def from_args(cls, server: str | None, load: str | None, *, server_share: str) -> CpuPlan:
        """Defaults: ``server_share="one"`` gives the server the first usable CPU (issue 2:
        one worker, wrk on the other core); ``"half"`` gives it the first half (scaling)."""
        usable = sorted(os.sched_getaffinity(0))
        if server is not None:
            server_cpus = parse_cpu_list(server)
        elif len(usable) == 1:
            server_cpus = usable
        else:
            n = 1 if server_share == "one" else max(1, len(usable) // 2)
            server_cpus = usable[:n]
        if load is not None:
            load_cpus = parse_cpu_list(load)
        else:
            load_cpus = [c for c in usable if c not in server_cpus] or usable
        if set(server_cpus) & set(load_cpus):
            log(f"[bench] warning: server CPUs {format_cpu_list(server_cpus)} and load CPUs "
                f"{format_cpu_list(load_cpus)} overlap; figures will be noisy")
        return cls(tuple(server_cpus), tuple(load_cpus))


# --------------------------------------------------------------------------- servers

@dataclasses.dataclass(frozen=True)
class ServerSpec:
    """How to start one server; ``{port}`` in argv is replaced by the chosen port."""

    name: str
    argv: tuple[str, ...]
    workers: int = 1
    env: tuple[tuple[str, str], ...] = ()

    def command(self, port: int) -> list[str]:
        return [arg.replace("{port}", str(port)) for arg in self.argv]


def pounce_spec(python: str, app: str, *, name: str = "pounce", http: str | None = None,
                loop: str = "asyncio", workers: int = 1, worker_mode: str | None = None) -> ServerSpec:
    argv = [python, "-m", "pounce", f"benchmarks.apps:{app}", "--host", HOST, "--port", "{port}",
            "--workers", str(workers), "--no-access-log", "--log-level", "warning", "--loop", loop]
    if http is not None:
        argv += ["--http", http]
    if worker_mode is not None:
        argv += ["--worker-mode", worker_mode]
    return ServerSpec(name, tuple(argv), workers)


def uvicorn_spec(peer_python: str, app: str, *, name: str, http: str, loop: str, workers: int = 1) -> ServerSpec:
    argv = (peer_python, "-m", "uvicorn", f"benchmarks.apps:{app}", "--host", HOST, "--port", "{port}",
            "--workers", str(workers), "--no-access-log", "--log-level", "warning",
            "--http", http, "--loop", loop)
    return ServerSpec(name, argv, workers)


def granian_spec(peer_python: str, app: str, *, name: str = "granian", workers: int = 1) -> ServerSpec:
    # Access log is off by default in granian; the loop is its default (uvloop when installed).
    argv = (peer_python, "-m", "granian", "--interface", "asgi", "--host", HOST, "--port", "{port}",
            "--workers", str(workers), "--log-level", "warning", f"benchmarks.apps:{app}")
    return ServerSpec(name, argv, workers)


def hypercorn_spec(peer_python: str, app: str, *, name: str = "hypercorn", workers: int = 1) -> ServerSpec:
    # Hypercorn writes no access log unless --access-logfile is given; asyncio worker class.
    argv = (peer_python, "-m", "hypercorn", "--bind", f"{HOST}:{{port}}", "--workers", str(workers),
            "--log-level", "warning", "--worker-class", "asyncio", f"benchmarks.apps:{app}")
    return ServerSpec(name, argv, workers)


def _child_env(extra: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
    env = dict(os.environ)
    # The apps module (and Pounce itself) are imported from this checkout.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.pop("PYTHONSTARTUP", None)
    env.update(dict(extra))
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclasses.dataclass
class RunningServer:
    spec: ServerSpec
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _get(port: int, timeout: float) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def start_server(spec: ServerSpec, cpus: Sequence[int], *, log_dir: Path, expected_body: bytes,
                 startup_timeout: float) -> RunningServer:
    """Start ``spec`` pinned to ``cpus`` and return once it answers with ``expected_body``."""
    port = free_port()
    log_path = log_dir / f"{spec.name}-{port}.log"
    argv = ["taskset", "-c", format_cpu_list(cpus), *spec.command(port)]
    with open(log_path, "wb") as log_file:
        # A new session makes every process the server forks easy to find and kill.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                cwd=REPO_ROOT, env=_child_env(spec.env), start_new_session=True)
    server = RunningServer(spec, proc, port, log_path)
    deadline = time.monotonic() + startup_timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{spec.name} exited with code {proc.returncode} during start-up:\n"
                             f"{server.log_tail()}")
        try:
            status, body = _get(port, timeout=2.0)
        except (OSError, http.client.HTTPException) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)
            continue
        if status != 200 or body != expected_body:
            stop_server(server, term_timeout=5.0)
            raise BenchError(f"{spec.name} answered {status} with a {len(body)}-byte body that is not "
                             f"the app's; refusing to benchmark it")
        if spec.workers > 1:
            # Workers come up one by one; give the stragglers a moment before load starts
            # (the warm-up run then absorbs the rest).
            time.sleep(min(2.0, 0.25 * spec.workers))
        return server
    stop_server(server, term_timeout=5.0)
    raise BenchError(f"{spec.name} did not answer within {startup_timeout:.0f}s ({last_error}):\n"
                     f"{server.log_tail()}")


@dataclasses.dataclass(frozen=True)
class StopResult:
    seconds: float
    forced: bool  # needed SIGKILL
    returncode: int | None


def stop_server(server: RunningServer, *, term_timeout: float = 10.0) -> StopResult:
    """SIGTERM the server (as a user would), then SIGKILL its whole session after a bound."""
    proc = server.proc
    started = time.monotonic()
    tree = set(process_tree(proc.pid))
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
    forced = False
    deadline = started + term_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None and not _alive(tree - {proc.pid}):
            break
        time.sleep(0.05)
    else:
        forced = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for pid in tree | set(process_tree(proc.pid)):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            log(f"[bench] warning: {server.spec.name} pid {proc.pid} survived SIGKILL")
    return StopResult(time.monotonic() - started, forced, proc.poll())


def _alive(pids: Iterable[int]) -> bool:
    for pid in pids:
        try:
            state = _read_stat(pid)[1]
        except OSError:
            continue
        if state != "Z":  # zombies of a dead parent are reaped by init eventually
            return True
    return False


# --------------------------------------------------------------------------- /proc

def _read_stat(pid: int) -> tuple[int, str, int, int]:
    """(pid, state, ppid, session) from /proc/<pid>/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    # comm may contain spaces and parentheses: split on the last ')'.
    fields = raw[raw.rindex(")") + 2:].split()
    return pid, fields[0], int(fields[1]), int(fields[3])


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it, plus anything left in its session."""
    children: dict[int, list[int]] = {}
    sessions: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            pid, _state, ppid, sid = _read_stat(int(entry))
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(pid)
        sessions[pid] = sid
    if root not in sessions:
        return []
    found: set[int] = set()
    stack = [root]
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        found.add(pid)
        stack.extend(children.get(pid, ()))
    # start_new_session made root the session leader: orphans that were re-parented keep the sid.
    found.update(pid for pid, sid in sessions.items() if sid == root)
    return sorted(found)


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclasses.dataclass(frozen=True)
class MemorySample:
    rss_bytes: int  # sum of VmRSS over the tree: what the issue asks for (counts shared pages per process)
    pss_bytes: int  # proportional set size: shared pages split between sharers
    processes: int


def tree_memory(root: int) -> MemorySample:
    rss = pss = count = 0
    for pid in process_tree(root):
        try:
            rss += _status_kib(pid, "VmRSS")
        except OSError:
            continue
        pss += _pss_kib(pid)
        count += 1
    return MemorySample(rss * 1024, pss * 1024, count)


class MemorySampler:
    """Samples the tree's memory in a background thread; keeps the peak."""

    def __init__(self, root: int, interval: float = 0.25) -> None:
        self._root = root
        self._interval = interval
        self._stop = threading.Event()
        self.peak = MemorySample(0, 0, 0)
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            sample = tree_memory(self._root)
            if sample.rss_bytes > self.peak.rss_bytes:
                self.peak = sample
            self._stop.wait(self._interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


@dataclasses.dataclass(frozen=True)
class CpuSnapshot:
    """Clock ticks: the server tree's own CPU time, and busy/total time of its CPUs."""

    tree_ticks: int
    busy_ticks: int
    total_ticks: int


def _tree_cpu_ticks(root: int) -> int:
    ticks = 0
    for pid in process_tree(root):
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        ticks += int(fields[11]) + int(fields[12])  # utime + stime
    return ticks


def cpu_busy_ticks(cpus: Sequence[int]) -> tuple[int, int]:
    """(busy, total) clock ticks of ``cpus`` since boot, from /proc/stat."""
    busy = total = 0
    wanted = {f"cpu{c}" for c in cpus}
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            parts = line.split()
            if parts and parts[0] in wanted:
                values = [int(v) for v in parts[1:9]]  # user nice system idle iowait irq softirq steal
                total += sum(values)
                busy += sum(values) - values[3] - values[4]
    except OSError:
        pass
    return busy, total


def cpu_snapshot(root: int, cpus: Sequence[int]) -> CpuSnapshot:
    busy, total = cpu_busy_ticks(cpus)
    return CpuSnapshot(_tree_cpu_ticks(root), busy, total)


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_shares(before: CpuSnapshot, after: CpuSnapshot) -> tuple[float, float]:
    """(server's share, everything else's share) of its CPUs' capacity over the interval, in %.

    wrk runs on other CPUs, so a large second figure means someone else was using the
    server's CPUs and the run is noisy.
    """
    total = after.total_ticks - before.total_ticks
    if total <= 0:
        return float("nan"), float("nan")
    tree = after.tree_ticks - before.tree_ticks
    busy = after.busy_ticks - before.busy_ticks
    return 100.0 * tree / total, max(0.0, 100.0 * (busy - tree) / total)


# --------------------------------------------------------------------------- wrk

WRK = "/usr/bin/wrk" if os.path.exists("/usr/bin/wrk") else (shutil.which("wrk") or "wrk")
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DURATION_RE = re.compile(r"([0-9.]+)(us|ms|s|m|h)\b")


def _to_ms(text: str) -> float:
    match = _DURATION_RE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"unparsable wrk duration {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


@dataclasses.dataclass(frozen=True)
class WrkResult:
    requests_per_sec: float
    requests: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    socket_errors: int
    non_2xx: int


def parse_wrk(output: str) -> WrkResult:
    rps = re.search(r"^Requests/sec:\s+([0-9.]+)", output, re.M)
    total = re.search(r"^\s*(\d+) requests in ", output, re.M)
    if not rps or not total:
        raise BenchError(f"cannot parse wrk output:\n{output}")
    pct = {m.group(1): _to_ms(m.group(2)) for m in re.finditer(r"^\s+(50|75|90|99)%\s+(\S+)", output, re.M)}
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests_per_sec=float(rps.group(1)),
        requests=int(total.group(1)),
        p50_ms=pct.get("50", float("nan")),
        p90_ms=pct.get("90", float("nan")),
        p99_ms=pct.get("99", float("nan")),
        socket_errors=sum(int(g) for g in errors.groups()) if errors else 0,
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
    )


def run_wrk(url: str, *, duration: float, threads: int, connections: int, cpus: Sequence[int]) -> WrkResult:
    seconds = max(1, round(duration))
    argv = ["taskset", "-c", format_cpu_list(cpus), WRK, "-t", str(threads), "-c", str(connections),
            "-d", f"{seconds}s", "--latency", "--timeout", "10s", url]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish within {seconds + 30}s") from None
    except OSError as exc:
        raise BenchError(f"cannot run wrk: {exc}") from exc
    if done.returncode != 0:
        raise BenchError(f"wrk exited with {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    return parse_wrk(done.stdout)


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


def _load_shares(before: tuple[int, int], after: tuple[int, int], wrk_seconds: float) -> tuple[float, float]:
    total_s = (after[1] - before[1]) / os.sysconf("SC_CLK_TCK")
    if total_s <= 0:
        return float("nan"), float("nan")
    busy_s = (after[0] - before[0]) / os.sysconf("SC_CLK_TCK")
    return 100.0 * wrk_seconds / total_s, max(0.0, 100.0 * (busy_s - wrk_seconds) / total_s)


def measure(spec: ServerSpec, cpus: CpuPlan, settings: LoadSettings, *, round_no: int, log_dir: Path,
            expected_body: bytes) -> Measurement:
    """One start -> warm-up -> measured run -> stop cycle; failures become a failed Measurement."""
    try:
        server = start_server(spec, cpus.server, log_dir=log_dir, expected_body=expected_body,
                              startup_timeout=settings.startup_timeout)
    except BenchError as exc:
        return Measurement(spec.name, spec.workers, round_no, ok=False, error=str(exc))
    result: WrkResult | None = None
    error = ""
    server_cpu = other_cpu = cpu_seconds = wrk_cpu = load_other = float("nan")
    idle = tree_memory(server.proc.pid)
    sampler = MemorySampler(server.proc.pid)
    try:
        if settings.warmup > 0:
            run_wrk(server.url, duration=settings.warmup, threads=settings.threads,
                    connections=settings.connections, cpus=cpus.load)
        before = cpu_snapshot(server.proc.pid, cpus.server)
        load_before, wrk_before = cpu_busy_ticks(cpus.load), _children_cpu_seconds()
        with sampler:
            result = run_wrk(server.url, duration=settings.duration, threads=settings.threads,
                             connections=settings.connections, cpus=cpus.load)
        # wrk is the only child reaped in between, so the RUSAGE_CHILDREN delta is wrk's CPU time.
        wrk_seconds = _children_cpu_seconds() - wrk_before
        load_after = cpu_busy_ticks(cpus.load)
        after = cpu_snapshot(server.proc.pid, cpus.server)
        wrk_cpu, load_other = _load_shares(load_before, load_after, wrk_seconds)
        server_cpu, other_cpu = cpu_shares(before, after)
        cpu_seconds = (after.tree_ticks - before.tree_ticks) / os.sysconf("SC_CLK_TCK")
        if server.proc.poll() is not None:
            error = f"server exited with code {server.proc.returncode} under load:\n{server.log_tail()}"
    except BenchError as exc:
        error = str(exc)
    finally:
        stopped = stop_server(server, term_timeout=settings.stop_timeout)
    if stopped.forced:
        log(f"[bench] note: {spec.name} needed SIGKILL after {settings.stop_timeout:.0f}s of SIGTERM")
    if result is None or error or result.requests == 0:
        return Measurement(spec.name, spec.workers, round_no, ok=False, error=error or "no requests completed",
                           stop_seconds=stopped.seconds, stop_forced=stopped.forced)
    return Measurement(
        server=spec.name, workers=spec.workers, round=round_no, ok=True,
        requests_per_sec=result.requests_per_sec, p50_ms=result.p50_ms, p99_ms=result.p99_ms,
        requests=result.requests, errors=result.socket_errors + result.non_2xx,
        rss_idle_bytes=idle.rss_bytes, rss_peak_bytes=sampler.peak.rss_bytes,
        pss_peak_bytes=sampler.peak.pss_bytes, processes=sampler.peak.processes,
        stop_seconds=stopped.seconds, stop_forced=stopped.forced,
        server_cpu_pct=server_cpu, other_cpu_pct=other_cpu,
        requests_per_cpu_sec=result.requests / cpu_seconds if cpu_seconds > 0 else float("nan"),
        wrk_cpu_pct=wrk_cpu, load_other_cpu_pct=load_other,
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


def ratio(a: float, b: float) -> float | None:
    # NaN fails both comparisons, so a missing figure gives None too.
    return a / b if a > 0 and b > 0 else None


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def verdict(value: float | None, target: float, *, at_most: bool = False) -> str:
    if value is None:
        return "n/a"
    met = value <= target if at_most else value >= target
    return "met" if met else "MISSED"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        # First column left-aligned (names), numbers right-aligned.
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


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
    Path(path).write_text(json.dumps(to_jsonable(payload), indent=2, allow_nan=False) + "\n")
    log(f"[bench] wrote {path}")


def to_jsonable(value: Any) -> Any:
    """Dataclasses to dicts and NaN to null (JSON has no NaN), recursively."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


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

"""What the benchmark ran on: the machine, the interpreters, and which CPUs server and load get."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence


class BenchError(Exception):
    """A failure that ends a measurement (or the run) with a message, not a traceback."""


class UsageError(BenchError):
    """Bad input from the user: the command exits with code 2."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError):
        pass
    return {
        "cpu_model": model or platform.processor() or "unknown",
        "cpu_count": os.cpu_count(),
        "usable_cpus": sorted(os.sched_getaffinity(0)),
        "memory_bytes": memory,
        "kernel": platform.release(),
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()),
    }


# --------------------------------------------------------------------------- interpreters

# Run inside the interpreter described, so a peer's venv describes itself.
_PY_INFO_SCRIPT = r"""
import json, platform, sys, sysconfig, importlib
from importlib import metadata
mods, dists = sys.argv[1].split(",") if sys.argv[1] else [], sys.argv[2].split(",") if sys.argv[2] else []
missing = []
for m in mods:
    try:
        importlib.import_module(m)
    except Exception:
        missing.append(m)
versions = {}
for d in dists:
    try:
        versions[d] = metadata.version(d)
    except metadata.PackageNotFoundError:
        pass
gil = getattr(sys, "_is_gil_enabled", None)
print(json.dumps({
    "executable": sys.executable,
    "version": platform.python_version(),
    "implementation": platform.python_implementation(),
    "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    # Asked after the imports: a C extension without free-threading support turns the GIL back on.
    "gil_enabled": gil() if gil is not None else True,
    "missing": missing,
    "versions": versions,
}))
"""


@dataclasses.dataclass(frozen=True)
class PythonInfo:
    executable: str
    version: str
    implementation: str
    free_threaded_build: bool
    gil_enabled: bool
    missing: tuple[str, ...] = ()
    versions: tuple[tuple[str, str], ...] = ()

    @property
    def build(self) -> str:
        return "free-threaded" if self.free_threaded_build else "GIL"

    def describe(self) -> str:
        gil = "GIL enabled" if self.gil_enabled else "GIL disabled"
        return f"{self.implementation} {self.version} ({self.build} build, {gil} at runtime) {self.executable}"

    def as_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["build"] = self.build
        data["versions"] = dict(self.versions)
        return data


def resolve_python(python: str) -> str:
    found = shutil.which(python) if os.sep not in python else python
    if not found or not os.access(found, os.X_OK):
        raise UsageError(f"interpreter not found or not executable: {python}")
    return str(Path(found).absolute())


def python_info(python: str, imports: Sequence[str] = (), dists: Sequence[str] = (), *,
                timeout: float = 60.0, cwd: str | Path | None = None) -> PythonInfo:
    try:
        out = subprocess.run(
            [python, "-c", _PY_INFO_SCRIPT, ",".join(imports), ",".join(dists)],
            capture_output=True, text=True, timeout=timeout, check=True, cwd=cwd,
        ).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        raise BenchError(f"cannot query interpreter {python}: {exc}") from exc
    data = json.loads(out.strip().splitlines()[-1])
    data["missing"] = tuple(data["missing"])
    data["versions"] = tuple(sorted(data["versions"].items()))
    return PythonInfo(**data)


def script_python(command: str) -> str | None:
    """The interpreter named on a console script's ``#!`` line, if it is one."""
    try:
        with open(command, "rb") as file:
            first = file.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode(errors="replace").split()
    if not words:
        return None
    if Path(words[0]).name == "env" and len(words) > 1:  # "#!/usr/bin/env python3"
        words = [shutil.which(words[1]) or words[1]]
    if not Path(words[0]).name.startswith("python"):
        return None  # a shell script or some other program: no interpreter to ask for versions
    return words[0] if os.access(words[0], os.X_OK) else None


# --------------------------------------------------------------------------- CPUs

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
        raise UsageError(f"bad CPU list {text!r}: expected e.g. 0 or 0-3 or 0,2,4-7") from None
    usable = os.sched_getaffinity(0)
    if not cpus or not cpus <= usable:
        raise UsageError(f"CPU list {text!r} is not within the usable CPUs {format_cpu_list(sorted(usable))}")
    return sorted(cpus)


def format_cpu_list(cpus: Sequence[int]) -> str:
    return ",".join(str(c) for c in cpus)


@dataclasses.dataclass(frozen=True)
class CpuPlan:
    server: tuple[int, ...]
    load: tuple[int, ...]

    @property
    def separate(self) -> bool:
        return not set(self.server) & set(self.load)

    def describe(self) -> str:
        text = f"server on CPU {format_cpu_list(self.server)}, load on CPU {format_cpu_list(self.load)}"
        if not self.separate:
            text += " (shared: this machine has too few CPUs to separate them, so figures include contention)"
        return text

    @classmethod
    def choose(cls, server: str | None = None, load: str | None = None, *, server_cpus: int = 1) -> CpuPlan:
        """Explicit lists win; otherwise the server gets ``server_cpus`` (at most half the usable CPUs,
        at least one) from the start of the list and the load generator the rest."""
        usable = sorted(os.sched_getaffinity(0))
        if server is not None:
            server_list = parse_cpu_list(server)
        elif len(usable) == 1:
            server_list = usable
        else:
            server_list = usable[:max(1, min(server_cpus, len(usable) // 2))]
        if load is not None:
            load_list = parse_cpu_list(load)
        else:
            load_list = [c for c in usable if c not in server_list] or usable
        return cls(tuple(server_list), tuple(load_list))

    @classmethod
    def from_args(cls, server: str | None, load: str | None, *, server_share: str) -> CpuPlan:
        """The benchmark scripts' defaults: ``"one"`` CPU for the server, or ``"half"`` of them."""
        usable = len(os.sched_getaffinity(0))
        plan = cls.choose(server, load, server_cpus=1 if server_share == "one" else max(1, usable // 2))
        if not plan.separate:
            log(f"[bench] warning: server CPUs {format_cpu_list(plan.server)} and load CPUs "
                f"{format_cpu_list(plan.load)} overlap; figures will be noisy")
        return plan


def pinned(argv: Sequence[str], cpus: Sequence[int]) -> list[str]:
    """``argv`` run on ``cpus`` only: through taskset when installed, so forked children inherit it."""
    taskset = shutil.which("taskset")
    if taskset:
        return [taskset, "-c", format_cpu_list(cpus), *argv]
    # Without taskset, the pounce.bench.pin shim sets the affinity and then execs the command.
    return [sys.executable, "-m", "pounce.bench.pin", format_cpu_list(cpus), *argv]

"""The servers a run compares: Pounce, and each peer from its own installed command.

A peer is found next to ``--peer-python`` (its venv's console script, or ``python -m``), else on
PATH, else in a ``.bench-venv/`` of the current directory (the repository's benchmark venv). One
that is not installed, or cannot serve a workload (Uvicorn has no HTTP/2), is reported and skipped.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from pathlib import Path

from pounce.bench.machine import BenchError, PythonInfo, python_info, script_python
from pounce.bench.servers import HOST, ServerSpec
from pounce.bench.workloads import Workload

PEERS = ("uvicorn", "granian", "hypercorn")
HTTP2 = {"pounce": True, "uvicorn": False, "granian": True, "hypercorn": True}


@dataclasses.dataclass(frozen=True)
class Contender:
    """One server taking part: how to start it for a workload, and what it is."""

    name: str
    command: tuple[str, ...]  # the installed command, or python -m name
    python: PythonInfo | None
    version: str
    workers: int = 1
    worker_mode: str | None = None  # Pounce's --worker-mode

    def spec(self, workload: Workload, env: tuple[tuple[str, str], ...], cwd: str | None) -> ServerSpec | str:
        """The server for ``workload``, or why this one cannot serve it."""
        if workload.protocol == "http2" and not HTTP2[self.name]:
            return f"{self.name} does not serve HTTP/2"
        w = str(self.workers)
        app = workload.app
        if self.name == "pounce":
            argv = [*self.command, app, "--host", HOST, "--port", "{port}", "--workers", w,
                    "--no-access-log", "--log-level", "warning"]
            argv += ["--worker-mode", self.worker_mode] if self.worker_mode else []
            argv += ["--http2"] if workload.protocol == "http2" else []
        elif self.name == "uvicorn":
            argv = [*self.command, app, "--host", HOST, "--port", "{port}", "--workers", w,
                    "--no-access-log", "--log-level", "warning"]
        elif self.name == "granian":
            # Granian writes no access log unless asked; its --http 2 serves cleartext prior knowledge.
            argv = [*self.command, "--interface", "asgi", "--host", HOST, "--port", "{port}", "--workers", w,
                    "--log-level", "warning", *(["--http", "2"] if workload.protocol == "http2" else []), app]
        else:
            # Hypercorn writes no access log unless --access-logfile is given; h2c needs no flag.
            argv = [*self.command, "--bind", f"{HOST}:{{port}}", "--workers", w, "--log-level", "warning", app]
        return ServerSpec(self.name, tuple(argv), self.workers, env, cwd)

    def describe(self) -> str:
        py = f" on {self.python.describe()}" if self.python else ""
        return f"{self.name} {self.version}{py}"


def pounce_contender(workers: int, worker_mode: str | None) -> Contender:
    import pounce

    info = python_info(sys.executable, dists=("pounce-asgi", "h11", "h2", "wsproto"))
    return Contender("pounce", (sys.executable, "-m", "pounce"), info, pounce.__version__, workers, worker_mode)


def find_peer(name: str, peer_python: str | None, workers: int) -> Contender | str:
    """The peer's contender, or why it cannot run (not installed)."""
    command: tuple[str, ...] | None = None
    python: str | None = None
    if peer_python:
        script = Path(peer_python).parent / name
        if script.exists() and os.access(script, os.X_OK):
            command, python = (str(script),), peer_python
        else:
            command, python = (peer_python, "-m", name), peer_python
    else:
        for candidate in (shutil.which(name), Path.cwd() / ".bench-venv" / "bin" / name):
            if candidate and os.access(candidate, os.X_OK):
                command = (str(candidate),)
                python = script_python(str(candidate))
                break
    if command is None:
        return (f"{name} is not installed (not on PATH; pip install {name} into a venv and pass "
                f"--peer-python VENV/bin/python)")
    info = None
    if python:
        try:
            info = python_info(python, (name,), (name,))
        except BenchError as exc:
            return f"{name}: {exc}"
        if info.missing:
            return f"{name} is not installed in {python}"
    version = dict(info.versions).get(name, "unknown") if info else "unknown"
    return Contender(name, command, info, version, workers)


def parse_peers(text: str) -> list[str]:
    from pounce.bench.machine import UsageError

    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PEERS]
    if unknown or not names:
        raise UsageError(f"unknown peer {', '.join(unknown) or '(none given)'} for --compare; "
                         f"choose from {', '.join(PEERS)}")
    return list(dict.fromkeys(names))

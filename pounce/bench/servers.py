"""Starting and stopping one server: pinned, in its own session, ready only once it answers right.

Every wait has a bound, so a broken server becomes a failed measurement, never a hung benchmark.
"""

from __future__ import annotations

import dataclasses
import http.client
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Sequence

from pounce.bench.machine import BenchError, log, pinned
from pounce.bench.procs import alive, process_tree

HOST = "127.0.0.1"


@dataclasses.dataclass(frozen=True)
class ServerSpec:
    """How to start one server; ``{port}`` in argv is replaced by the chosen port."""

    name: str
    argv: tuple[str, ...]
    workers: int = 1
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None

    def command(self, port: int) -> list[str]:
        return [arg.replace("{port}", str(port)) for arg in self.argv]


@dataclasses.dataclass(frozen=True)
class Probe:
    """The request that says a server is ready, and what a right answer is."""

    method: str = "GET"
    path: str = "/"
    body: bytes = b""
    http2: bool = False
    expected_body: bytes | None = None  # None: any 2xx body will do


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def show(self, limit: int = 600) -> str:
        """The response as a user would want to see it when it was not what the run needed."""
        lines = [f"HTTP status {self.status}", *(f"{k}: {v}" for k, v in self.headers)]
        text = self.body[:limit].decode("utf-8", "replace")
        more = f"\n... ({len(self.body) - limit} more bytes)" if len(self.body) > limit else ""
        return "\n".join(lines) + "\n\n" + text + more


class BadResponse(BenchError):
    """The server answered the probe, but not with a right answer."""

    def __init__(self, message: str, response: Response) -> None:
        super().__init__(message)
        self.response = response


def request(port: int, probe: Probe, timeout: float = 5.0) -> Response:
    if probe.http2:
        from pounce.bench.h2client import h2_request

        status, headers, body = h2_request(HOST, port, probe.method, probe.path, probe.body, timeout)
        return Response(status, tuple((k.decode(errors="replace"), v.decode(errors="replace"))
                                      for k, v in headers if not k.startswith(b":")), body)
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        sent = {"Content-Type": "application/octet-stream"} if probe.body else {}
        conn.request(probe.method, probe.path, body=probe.body or None, headers=sent)
        resp = conn.getresponse()
        return Response(resp.status, tuple(resp.getheaders()), resp.read())
    finally:
        conn.close()


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


def child_env(extra: Sequence[tuple[str, str]] = ()) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONSTARTUP", None)
    for key, value in extra:
        if key == "PYTHONPATH" and value.endswith(os.pathsep):
            value += env.get("PYTHONPATH", "")  # "dir:" means prepend to what is there
        env[key] = value.rstrip(os.pathsep)
    return env


def start_server(spec: ServerSpec, cpus: Sequence[int], *, log_dir: Path, probe: Probe,
                 startup_timeout: float) -> RunningServer:
    """Start ``spec`` pinned to ``cpus``; return once the probe gets a right answer.

    A wrong answer raises BadResponse (with the response); no answer in time, or an exit, BenchError.
    """
    port = free_port()
    log_path = log_dir / f"{spec.name}-{port}.log"
    with open(log_path, "wb") as log_file:
        # A new session makes every process the server forks easy to find and kill.
        proc = subprocess.Popen(pinned(spec.command(port), cpus), stdin=subprocess.DEVNULL, stdout=log_file,
                                stderr=subprocess.STDOUT, cwd=spec.cwd, env=child_env(spec.env),
                                start_new_session=True)
    server = RunningServer(spec, proc, port, log_path)
    deadline = time.monotonic() + startup_timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{spec.name} exited with code {proc.returncode} during start-up:\n{server.log_tail()}")
        try:
            response = request(port, probe, timeout=5.0)
        except (OSError, http.client.HTTPException, BenchError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)
            continue
        if not 200 <= response.status < 300 or (probe.expected_body is not None
                                                 and response.body != probe.expected_body):
            stop_server(server, term_timeout=5.0)
            what = "a non-2xx status" if not 200 <= response.status < 300 else "a body that is not the app's"
            raise BadResponse(f"{spec.name} answered {probe.method} {probe.path} with {what}", response)
        if spec.workers > 1:
            # Workers come up one by one; give the stragglers a moment (the warm-up absorbs the rest).
            time.sleep(min(2.0, 0.25 * spec.workers))
        return server
    stop_server(server, term_timeout=5.0)
    raise BenchError(f"{spec.name} did not answer within {startup_timeout:.0f}s ({last_error}):\n{server.log_tail()}")


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
        if proc.poll() is not None and not alive(tree - {proc.pid}):
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

"""Process workers: the parent binds the sockets once and supervises N spawned children.

``--metrics``: prometheus-client's multiprocess mode (why: see ``pounce.observability.runtime``).
The parent creates the directory and serves ``/metrics`` over it; each child writes its own files;
the parent marks a child dead when it exits so its live gauges leave the sum.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing import Pipe
from socket import socket
from typing import TYPE_CHECKING

from pounce.cert_reload import pair_loads
from pounce.container import is_init, reap_orphans
from pounce.observability.events import DrainReason, StartReason
from pounce.observability.runtime import MultiprocessMetrics, WorkerIdentity
from pounce.supervisors.rolling import StopFlag, WorkerPool, pid_message
from pounce.supervisors.spawn import (
    Status,
    Target,
    announce_drain,
    get_subprocess,
    group_signals_blocked,
    ping,
    pong_forever,
    server_status,
)

if TYPE_CHECKING:
    from pounce.config import Config
    from pounce.server import Server

logger = logging.getLogger("uvicorn.error")


class Process:
    """One worker process, with a heartbeat pipe to it. Same interface as Uvicorn's."""

    def __init__(
        self,
        config: Config,
        sockets: list[socket],
        target: Target | None = None,
        *,
        verbose: bool = True,
        worker: WorkerIdentity | None = None,
        metrics_dir: str | None = None,
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        """``target`` None runs a worker server; the reloader passes its own (Uvicorn's ``Server.run``).

        ``worker`` is the identity its events report, ``metrics_dir`` the multiprocess metrics directory;
        ``on_exit(pid)`` is called once, when the process is seen to have exited.
        """
        self.config = config
        self._server: Server | None = None
        self._seq = 0
        self._verbose = verbose
        self._on_exit = on_exit
        self.parent_conn, self.child_conn = Pipe()
        self.process = get_subprocess(
            config, target, sockets, conn=self.child_conn, worker=worker, metrics_dir=metrics_dir
        )

    # -- heartbeat ---------------------------------------------------------------------------

    def status(self, timeout: float) -> Status | None:
        """The worker's answer to one ping, or None if it does not answer within ``timeout``."""
        self._seq += 1
        return ping(self.parent_conn, self._seq, timeout)

    def ping(self, timeout: float = 5) -> bool:
        """True if the worker answers a health check in time."""
        return self.status(timeout) is not None

    def is_ready(self, timeout: float = 5) -> bool:
        """True if the worker answers and its server has finished startup."""
        return self.status(timeout) in ("ready", "recycle")

    def pong(self) -> None:
        """Answer one ping (the child side; used in-process by tests)."""
        seq = self.child_conn.recv()
        self.child_conn.send((seq, server_status(self.server)))

    def always_pong(self) -> None:
        pong_forever(self.child_conn, lambda: server_status(self.server), lambda: None)

    def is_alive(self, timeout: float = 5) -> bool:
        if not self.process.is_alive():
            return False
        return self.ping(timeout)

    def wait_until_ready(self, timeout: float, should_exit: StopFlag | None = None) -> bool:
        """True once the worker serves; False if it exits, the pool stops, or ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if should_exit is not None and should_exit.is_set():
                return False
            if not self.process.is_alive():
                return False
            if self.is_ready(timeout=min(1.0, max(0.05, deadline - time.monotonic()))):
                return True
            time.sleep(0.1)
        return False

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        with group_signals_blocked():
            self.process.start()
        # Keep only our end: the child then sees EOF on its end if this process dies.
        self.child_conn.close()

    def is_running(self) -> bool:
        return self.process.is_alive()

    def terminate(self, reason: DrainReason | None = None) -> None:
        """Ask the worker to drain and exit (SIGTERM); ``reason``: why, when the server goes on without it."""
        if self.process.pid is not None and self.process.exitcode is None:
            if reason is not None and not self.parent_conn.closed:
                announce_drain(self.parent_conn, reason)
            try:
                os.kill(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:  # pragma: no cover - exited meanwhile
                return
            if self._verbose:
                logger.info("Terminated child process [%s]", self.process.pid)

    def force_stop(self) -> None:
        """A second SIGINT: the worker's server drops its connections and exits now."""
        if self.process.pid is not None and self.process.exitcode is None:
            try:
                os.kill(self.process.pid, signal.SIGINT)
            except ProcessLookupError:  # pragma: no cover
                pass

    def kill(self) -> None:
        if self.process.pid is not None:
            self.process.kill()
        self._close_pipe()
        self.child_conn.close()

    def join(self, timeout: float | None = None) -> None:
        if self.process.pid is None:
            return
        if timeout is None and self._verbose:
            logger.info("Waiting for child process [%s]", self.process.pid)
        self.process.join(timeout)
        if self.process.exitcode is not None:
            self._close_pipe()
            self._exited()

    def _close_pipe(self) -> None:
        # The health-check thread may be using or closing the same pipe as the child exits; an
        # already-closed descriptor here means there is nothing left to release.
        try:
            self.parent_conn.close()
        except OSError:
            pass

    def _exited(self) -> None:
        on_exit, self._on_exit = self._on_exit, None
        if on_exit is not None and self.process.pid is not None:
            on_exit(self.process.pid)

    @property
    def server(self) -> Server:
        if self._server is None:
            from pounce.server import Server

            self._server = Server(config=self.config)
        return self._server

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def exitcode(self) -> int | None:
        return self.process.exitcode

    @property
    def label(self) -> str:
        return f"child process [{self.process.pid}]"


class Multiprocess(WorkerPool[Process]):
    """Supervises ``config.workers`` worker processes. Same constructor as Uvicorn's."""

    kind = "process"
    plural = "processes"
    mode = "process"

    def __init__(self, config: Config, sockets: list[socket]) -> None:
        super().__init__(config, sockets)
        self.metrics: MultiprocessMetrics | None = None

    def run(self) -> None:
        address = getattr(self.config, "metrics_address", None)
        if address is not None:
            self.metrics = MultiprocessMetrics(address)
        try:
            super().run()
        finally:
            if self.metrics is not None:
                self.metrics.close()
                self.metrics = None

    def new_worker(self, reason: StartReason = "initial") -> Process:
        metrics = self.metrics
        return Process(
            self.config,
            self.sockets,
            worker=self.next_identity(reason),
            metrics_dir=metrics.directory if metrics is not None else None,
            on_exit=metrics.worker_exited if metrics is not None else None,
        )

    def init_processes(self) -> None:
        _start_resource_tracker()
        super().init_processes()

    @property
    def processes(self) -> list[Process]:
        return self._workers

    @processes.setter
    def processes(self, value: list[Process]) -> None:
        self._workers = value

    @property
    def processes_num(self) -> int:
        return self.workers_num

    @processes_num.setter
    def processes_num(self, value: int) -> None:
        self.workers_num = value

    def restart_all(self) -> None:
        # Each new worker builds its TLS context from the files: one that would not load is refused
        # here, once, and the current workers (and their certificate) stay.
        if self.config.is_ssl and not self.stopping.is_set() and not pair_loads(self.config):
            return
        super().restart_all()

    def reap_orphans(self) -> None:
        if not is_init():
            return
        from multiprocessing import resource_tracker

        # active_children() also joins workers that have exited, as join() would.
        ours = {child.pid for child in multiprocessing.active_children() if child.pid is not None}
        tracker = getattr(resource_tracker._resource_tracker, "_pid", None)
        if tracker is not None:
            ours.add(tracker)
        ours.update(w.pid for w in self._workers + [w for w, _ in self.retiring] if w.pid is not None)
        reap_orphans(ours)

    def _log_start(self) -> None:
        message, color_message = pid_message("Started", "parent process")
        logger.info(message, extra={"color_message": color_message})

    def _log_stop(self) -> None:
        message, color_message = pid_message("Stopping", "parent process")
        logger.info(message, extra={"color_message": color_message})


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker with SIGHUP ignored.

    Spawned children share it; it sits in our process group, so a terminal hang-up (which we
    take as "restart the workers") would otherwise kill it and cost a warning and a relaunch.
    """
    if not hasattr(signal, "SIGHUP") or threading.current_thread() is not threading.main_thread():
        return
    from multiprocessing import resource_tracker

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        resource_tracker.ensure_running()
    finally:
        signal.signal(signal.SIGHUP, previous)

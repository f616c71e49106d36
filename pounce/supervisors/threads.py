"""Thread workers: one process, N threads, each running its own event loop and ``Server``.

Every thread accepts on its own descriptor of the shared listening socket(s) -- one queue in the
kernel, so a connection waits for whichever loop is free; closing one thread's copy on
shutdown leaves the others (and the queue) untouched. All threads serve the one app object
imported by ``Config.load()`` and read the same frozen ``ServerConfig``; everything mutable
(``ServerState``: connections, tasks, request counts) belongs to one thread's ``Server``.

Lifespan runs once per worker, in that worker's loop -- as it runs once per Uvicorn worker
process -- so resources bound to a loop (database pools, HTTP clients, locks) are created on
the loop that uses them. An app with N thread workers therefore sees N startup/shutdown
pairs against the same app object, and must keep per-loop resources in the lifespan
``state`` rather than in module globals.

Threads cannot be killed. A worker that stops answering its health check is replaced, and
the stuck thread is told to exit and left to finish on its own.

On SIGHUP the new generation gets a fresh app: with ``--factory`` the factory is called again
(a new ``Config.load()``); a plain app object is module state and stays the same object.

``--metrics`` and ``--otel``: the supervisor owns one ``Telemetry`` for the process (one metrics
handler and registry, one ``/metrics`` endpoint, one tracer), subscribed to every worker's bus, so
one scrape sees every thread and a replaced thread's counts stay.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from pounce.observability.events import DrainReason, StartReason
from pounce.observability.runtime import Telemetry, WorkerIdentity
from pounce.cert_reload import can_rotate, rotate
from pounce.supervisors.rolling import StopFlag, WorkerPool, pid_message
from pounce.supervisors.spawn import Status, loop_answers, server_status
from pounce.supervisors.worker_server import WorkerServer

if TYPE_CHECKING:
    from pounce.config import Config

logger = logging.getLogger("uvicorn.error")

_names = itertools.count(1)


class FairShareSocket(socket.socket):
    """A worker's own descriptor of the shared listening socket that takes one connection per loop turn.

    asyncio accepts up to ``backlog`` connections each time the socket is readable, so the first
    loop to wake would take a whole burst while the others stay idle. Refusing a second accept
    in the same loop iteration (BlockingIOError is what asyncio expects from an empty queue)
    leaves the rest queued in the kernel, where every loop -- the least busy first -- sees them.
    """

    _took_one = False

    def accept(self) -> tuple[socket.socket, Any]:
        if self._took_one:
            raise BlockingIOError
        conn, addr = super().accept()
        self._took_one = True
        asyncio.get_running_loop().call_soon(self._next_turn)
        return conn, addr

    def _next_turn(self) -> None:
        self._took_one = False


def own_descriptor(sock: socket.socket) -> socket.socket:
    """A new descriptor for ``sock`` that this worker's server may close without touching the others'."""
    if sock.type != socket.SOCK_STREAM:  # pragma: no cover - asyncio servers are stream sockets
        return sock.dup()
    return FairShareSocket(sock.family, sock.type, sock.proto, fileno=os.dup(sock.fileno()))


class ThreadWorkerServer(WorkerServer):
    """A thread worker's server. The process logged "Started server process [pid]" once; each thread
    logs which worker it is (its pid is the same), as Uvicorn's worker processes each log their own pid."""

    started_line = "Started worker thread"

    def log_started(self, process_id: int) -> None:
        logger.info(self.started_line)


class ThreadWorker:
    """One worker thread with its own event loop and ``Server``."""

    def __init__(
        self,
        config: Config,
        sockets: list[socket.socket],
        worker: WorkerIdentity | None = None,
        telemetry: Telemetry | None = None,
        of: int | None = None,
    ) -> None:
        self.config = config
        self.name = f"pounce-worker-{next(_names)}"
        self._sockets = sockets
        self._own_sockets: list[socket.socket] = []
        self.server = ThreadWorkerServer(config, worker=worker, telemetry=telemetry)
        if worker is not None:
            # "1/4" for the workers started with the pool; a replacement or an added one says why.
            which = f"{worker.worker_id}/{of}" if worker.start_reason == "initial" and of else f"{worker.worker_id}"
            suffix = "" if worker.start_reason == "initial" else f" ({worker.start_reason.replace('_', ' ')})"
            self.server.started_line = f"Started worker thread {which}{suffix}"
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._exitcode: int | None = None
        self._abandoned = False

    def _run(self) -> None:
        code = 0
        try:
            self.server.run(sockets=self._own_sockets)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            logger.exception("Worker thread [%s] crashed", self.name)
            code = 1
        finally:
            # The server closes the sockets it was given on shutdown; not if startup failed.
            for sock in self._own_sockets:
                sock.close()
            self._exitcode = code

    def start(self) -> None:
        # Our own descriptors: the server closes them when it stops, which must not touch the others'.
        self._own_sockets = [own_descriptor(sock) for sock in self._sockets]
        self.thread.start()

    def is_running(self) -> bool:
        return self.thread.is_alive() and not self._abandoned

    def status(self, timeout: float) -> Status | None:
        """The worker's state, or None if it has finished or its loop does not run a callback in ``timeout``."""
        if not self.thread.is_alive() and self.thread.ident is not None:
            return None
        if not loop_answers(self.server, timeout):
            loop = self.server.loop
            if loop is not None and loop.is_closed():
                # Finished, not hung: let the thread record its exit code before anyone reads it.
                self.thread.join(1.0)
            return None
        return server_status(self.server)

    def ping(self, timeout: float = 5) -> bool:
        return self.status(timeout) is not None

    def is_ready(self, timeout: float = 5) -> bool:
        return self.status(timeout) in ("ready", "recycle")

    def wait_until_ready(self, timeout: float, should_exit: StopFlag | None = None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if should_exit is not None and should_exit.is_set():
                return False
            if not self.thread.is_alive() and self.thread.ident is not None:
                return False
            if self.is_ready(timeout=min(1.0, max(0.05, deadline - time.monotonic()))):
                return True
            time.sleep(0.02)
        return False

    def terminate(self, reason: DrainReason | None = None) -> None:
        """Drain and exit: stop accepting, finish in-flight requests, run lifespan shutdown."""
        if reason is not None:
            self.server.drain_reason = reason
        self.server.should_exit = True

    def force_stop(self) -> None:
        self.server.should_exit = True
        self.server.force_exit = True

    def kill(self) -> None:
        """Threads cannot be killed: tell it to quit at once and stop waiting for it."""
        self.force_stop()
        if self.thread.is_alive():
            self._abandoned = True
            logger.warning("Worker thread [%s] is stuck; it is left to exit on its own.", self.name)

    def join(self, timeout: float | None = None) -> None:
        if self.thread.ident is None:
            return
        if self._abandoned:
            timeout = 0.0 if timeout is None else min(timeout, 0.0)
        self.thread.join(timeout)

    @property
    def exitcode(self) -> int | None:
        if self._abandoned and self._exitcode is None:
            return -9
        return self._exitcode

    @property
    def label(self) -> str:
        return f"worker thread [{self.name}]"


class ThreadWorkers(WorkerPool[ThreadWorker]):
    """Supervises ``config.workers`` worker threads in this process."""

    kind = "thread"
    plural = "threads"
    parent_name = "server"
    mode = "thread"

    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        # The config (and so the app) the next worker is started with; SIGHUP may load a new one.
        self.generation_config = config
        self.telemetry: Telemetry | None = None

    @property
    def threads(self) -> list[ThreadWorker]:
        return self._workers

    def run(self) -> None:
        if not self.config.loaded:
            self.config.load()
        cfg = self.config.server_config
        if cfg.metrics_address is not None or cfg.otel:
            self.telemetry = Telemetry.in_process(cfg.metrics_address, cfg.otel)
        try:
            super().run()
        finally:
            if self.telemetry is not None:
                self.telemetry.close()

    def open_connections(self) -> int | None:
        return sum(len(worker.server.server_state.connections) for worker in self._workers)

    def new_worker(self, reason: StartReason = "initial") -> ThreadWorker:
        if not self.generation_config.loaded:
            self.generation_config.load()
        return ThreadWorker(
            self.generation_config,
            self.sockets,
            worker=self.next_identity(reason),
            telemetry=self.telemetry,
            of=self.workers_num,
        )

    def restart_all(self) -> None:
        if self.config.factory and not self.stopping.is_set():
            fresh = self._load_generation()
            if fresh is None:
                return
            self.generation_config = fresh  # its context is built from the files as they are now
        elif can_rotate(self.generation_config):
            # The threads share one context: loading into it rotates the certificate for all of them.
            rotate(self.generation_config)
        super().restart_all()

    def _load_generation(self) -> Config | None:
        """A copy of the config with the app loaded afresh (the factory called again)."""
        fresh = copy.copy(self.config)
        fresh.loaded = False
        try:
            fresh.load()
        except (Exception, SystemExit):
            logger.exception("The new app failed to load; keeping the current workers.")
            return None
        return fresh

    def _log_start(self) -> None:
        # Uvicorn's first line, once: the threads share this process (each then says which worker it is).
        message, color_message = pid_message("Started", "server process")
        logger.info(message, extra={"color_message": color_message})

    def _log_stop(self) -> None:
        message, color_message = pid_message("Stopping", "thread supervisor")
        logger.info(message, extra={"color_message": color_message})

"""What process and thread supervisors share: signals, health checks, rolling replacement.

A pool keeps ``workers_num`` workers serving the same listening sockets. Its main loop, on the
supervisor's (main) thread, every half second:

* handles queued signals: INT/TERM stop everything with a graceful drain; HUP replaces every
  worker one at a time; TTIN/TTOU add or remove one worker;
* health-checks every worker: one that died or stops answering is replaced, one that reached
  ``--limit-max-requests`` is recycled;
* reaps retired workers once they have drained.

"Replace" always means: start the new worker, wait until it reports ready (bounded by
``--timeout-worker-healthcheck``), and only then ask the old one to stop. The old one stops
accepting, finishes its in-flight requests (bounded by ``--timeout-graceful-shutdown``) and
exits; since the new one already accepts on the same sockets, no connection is refused.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import threading
import time
from socket import socket
from types import FrameType
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

import click

from pounce.observability.events import DrainReason, StartReason, WorkerMode
from pounce.observability.runtime import WorkerIdentity
from pounce.supervisors.spawn import Status

if TYPE_CHECKING:
    from pounce.config import Config
    from pounce.systemd import ServiceManager

STARTUP_FAILURE = 3  # Same value as pounce.config.STARTUP_FAILURE; kept here to avoid importing the app stack.

SIGNALS = {
    getattr(signal, f"SIG{x}"): x
    for x in "INT TERM BREAK HUP QUIT TTIN TTOU USR1 USR2 WINCH".split()
    if hasattr(signal, f"SIG{x}")
}
EXIT_SIGNALS = frozenset(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s)

# Extra time a worker gets past --timeout-graceful-shutdown to run lifespan shutdown and exit.
EXIT_MARGIN = 5.0
# Seconds between two recycle attempts of the same worker when its replacement fails to start.
RECYCLE_BACKOFF = 5.0
TICK = 0.5

logger = logging.getLogger("uvicorn.error")


class StopFlag(Protocol):
    def is_set(self) -> bool: ...


class Worker(Protocol):
    """What a pool needs of one worker, be it a process or a thread."""

    @property
    def label(self) -> str: ...

    @property
    def exitcode(self) -> int | None: ...

    def start(self) -> None: ...

    def is_running(self) -> bool: ...

    def status(self, timeout: float) -> Status | None: ...

    def wait_until_ready(self, timeout: float, should_exit: StopFlag | None = None) -> bool: ...

    def terminate(self, reason: DrainReason | None = None) -> None:
        """Drain and exit; ``reason`` when the server goes on without this worker (its WorkerDraining event)."""
        ...

    def force_stop(self) -> None: ...

    def kill(self) -> None: ...

    def join(self, timeout: float | None = None) -> None: ...


W = TypeVar("W", bound=Worker)
# Why a worker is replaced while it is still healthy: the same word starts the new one and drains the old.
ReplaceReason = Literal["restart", "recycle"]


class _Stopping:
    """Set once the pool is stopping, or as soon as a stop signal is queued (not yet handled)."""

    def __init__(self, pool: WorkerPool[Any]) -> None:
        self._pool = pool

    def is_set(self) -> bool:
        return self._pool.should_exit.is_set() or any(sig in EXIT_SIGNALS for sig in self._pool.signal_queue)


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def cyan(text: str) -> str:
    return click.style(text, fg="cyan", bold=True)


class WorkerPool(Generic[W]):
    kind = "worker"
    plural = "workers"
    parent_name = "parent process"
    mode: WorkerMode = "process"

    def __init__(self, config: Config, sockets: list[socket]) -> None:
        self.config = config
        self.sockets = sockets
        self.workers_num = max(config.workers, 1)  # 0 or fewer is one, as in Uvicorn
        self._workers: list[W] = []
        # Workers asked to stop that are still draining, with the time after which they are killed.
        self.retiring: list[tuple[W, float | None]] = []
        self.should_exit = threading.Event()
        self.stopping = _Stopping(self)
        self.exit_code = 0
        self._recycle_after: dict[int, float] = {}
        # What the workers' events report: ids from 1, never reused; the generation counts SIGHUPs.
        self._worker_ids = itertools.count(1)
        self.generation = 0

        # Handlers only queue the signal: the work happens on the main loop, outside signal context.
        self.signal_queue: list[int] = []
        self._previous_handlers: dict[int, Any] = {}
        # Why this worker kind (and a warning about it), logged when the pool starts, after its start line.
        self.announcements: list[tuple[int, str]] = []
        # Under systemd (NOTIFY_SOCKET): told READY=1 once every first worker serves, pinged each tick.
        self.service: ServiceManager | None = None
        self._announced_ready = False

    def _queue_signal(self, sig: int, frame: FrameType | None) -> None:
        self.signal_queue.append(sig)

    # -- to be provided by subclasses -------------------------------------------------------

    def new_worker(self, reason: StartReason = "initial") -> W:
        raise NotImplementedError

    def next_identity(self, reason: StartReason) -> WorkerIdentity:
        """The identity of the next worker to start, as its events will report it."""
        return WorkerIdentity(
            worker_id=next(self._worker_ids), mode=self.mode, generation=self.generation, start_reason=reason
        )

    def _log_start(self) -> None:
        raise NotImplementedError

    def _log_stop(self) -> None:
        raise NotImplementedError

    # -- lifecycle ---------------------------------------------------------------------------

    def init_processes(self) -> None:
        for _ in range(self.workers_num):
            worker = self.new_worker()
            worker.start()
            self._workers.append(worker)

    def _install_signals(self) -> None:
        # Only the main thread can set handlers; a pool run elsewhere (tests) is driven through signal_queue.
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous_handlers[sig] = signal.signal(sig, self._queue_signal)

    def run(self) -> None:
        self._install_signals()
        self._log_start()
        for level, line in self.announcements:
            logger.log(level, line)
        try:
            self.init_processes()
            while True:
                self.handle_signals()
                if self.should_exit.is_set():
                    break
                self.keep_subprocess_alive()
                self.reap_retiring()
                self.reap_orphans()
                self._tell_service()
                self._sleep(TICK)
        finally:
            if self.service is not None:
                self.service.stopping()
            self.terminate_all()
            self.join_all()
            self._restore_signals()
        self._log_stop()

    def reap_orphans(self) -> None:
        """Process workers reap re-parented orphans when this is PID 1 (pounce/container.py)."""

    def open_connections(self) -> int | None:
        """Connections open across the workers, where the supervisor can count them (thread workers)."""
        return None

    def status_line(self) -> str:
        connections = self.open_connections()
        line = f"{len(self._workers)} {self.plural} serving"
        return line if connections is None else f"{line}, {connections} connections"

    def _tell_service(self) -> None:
        service = self.service
        if service is None:
            return
        if not self._announced_ready:
            # READY=1 only once every worker accepts: systemd then starts what depends on us.
            # Waiting here is bounded by the health-check timeout; an unready worker is retried next tick.
            timeout = self.config.timeout_worker_healthcheck
            if not all(worker.wait_until_ready(timeout, self.stopping) for worker in self._workers):
                service.tick()
                return
            self._announced_ready = True
            service.ready(self.status_line())
        service.tick(self.status_line())

    def _sleep(self, seconds: float) -> None:
        # Short steps so a queued signal is handled promptly (Event.set from a handler can deadlock).
        deadline = time.monotonic() + seconds
        while not self.signal_queue and not self.should_exit.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(0.05, remaining))

    def _restore_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler)
        self._previous_handlers = {}

    def terminate_all(self) -> None:
        for worker in self._workers:
            worker.terminate()
        for worker, _ in self.retiring:
            worker.terminate()

    def join_all(self) -> None:
        """Wait for every worker to drain and exit. A second SIGINT forces them; a set graceful timeout bounds it."""
        everyone = list(self._workers) + [w for w, _ in self.retiring]
        deadline = self._drain_deadline()
        forced = False
        for worker in everyone:
            while worker.is_running():
                if self._take_signal(signal.SIGINT) and not forced:
                    forced = True
                    logger.info("Received SIGINT again, forcing the workers to quit.")
                    for other in everyone:
                        other.force_stop()
                if deadline is not None and time.monotonic() > deadline:
                    logger.error("%s did not exit in time; killing it.", cap(worker.label))
                    worker.kill()
                    break
                worker.join(0.1)
            worker.join()
        self.retiring = []

    def _take_signal(self, sig: int) -> bool:
        if sig in self.signal_queue:
            self.signal_queue.remove(sig)
            return True
        return False

    def _drain_deadline(self) -> float | None:
        graceful = self.config.timeout_graceful_shutdown
        if graceful is None:
            return None
        return time.monotonic() + float(graceful) + EXIT_MARGIN

    # -- health ------------------------------------------------------------------------------

    def keep_subprocess_alive(self) -> None:
        for idx, worker in enumerate(list(self._workers)):
            if self.stopping.is_set():
                return
            status = worker.status(self.config.timeout_worker_healthcheck) if worker.is_running() else None
            if status is None:
                self._replace_dead(idx, worker)
            elif status == "recycle" and time.monotonic() >= self._recycle_after.get(id(worker), 0.0):
                if not self.replace(idx, "it reached its request limit", "recycle"):
                    self._recycle_after[id(worker)] = time.monotonic() + RECYCLE_BACKOFF

    def _replace_dead(self, idx: int, worker: W) -> None:
        if worker.is_running():
            logger.error(
                "%s did not answer its health check within %ss; replacing it.",
                cap(worker.label),
                self.config.timeout_worker_healthcheck,
            )
            worker.kill()
        worker.join()
        if worker.exitcode == STARTUP_FAILURE:
            # The app, TLS or lifespan is broken: a restart would fail the same way, forever.
            logger.error("%s failed to start, stopping the %s.", cap(worker.label), self.parent_name)
            self.exit_code = STARTUP_FAILURE
            self.should_exit.set()
            return
        if self.stopping.is_set():
            return
        logger.info("%s died", cap(worker.label))
        replacement = self.new_worker("replace")
        replacement.start()
        self._workers[idx] = replacement

    def reap_retiring(self) -> None:
        still: list[tuple[W, float | None]] = []
        for worker, deadline in self.retiring:
            if not worker.is_running():
                worker.join(0)
            elif deadline is not None and time.monotonic() > deadline:
                logger.error("%s did not finish draining in time; killing it.", cap(worker.label))
                worker.kill()
                worker.join()
            else:
                still.append((worker, deadline))
        self.retiring = still

    # -- replacement ---------------------------------------------------------------------------

    def retire(self, worker: W, reason: DrainReason) -> None:
        """Ask a worker to drain and exit, without waiting for it (the main loop reaps it)."""
        worker.terminate(reason)
        self.retiring.append((worker, self._drain_deadline()))

    def replace(self, idx: int, why: str, reason: ReplaceReason = "restart") -> bool:
        """Start a replacement for worker ``idx``; once it is ready, retire the old one. False if it never got ready."""
        old = self._workers[idx]
        logger.info("Replacing %s: %s.", old.label, why)
        new = self.new_worker(reason)
        new.start()
        if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.stopping):
            new.kill()
            new.join()
            if not self.stopping.is_set():
                logger.error(
                    "New %s was not ready in time; keeping %s and aborting the restart.",
                    new.label,
                    old.label,
                )
            return False
        self._workers[idx] = new
        self._recycle_after.pop(id(old), None)
        self.retire(old, reason)
        return True

    def restart_all(self) -> None:
        """Replace each worker in turn, bringing its replacement into service before retiring it."""
        if self.stopping.is_set():
            return
        self.generation += 1
        for idx in range(len(self._workers)):
            if self.stopping.is_set():
                return
            if not self.replace(idx, "rolling restart"):
                return

    # -- signals -------------------------------------------------------------------------------

    def handle_signals(self) -> None:
        for sig in tuple(self.signal_queue):
            if sig not in self.signal_queue:
                continue
            self.signal_queue.remove(sig)
            sig_name = SIGNALS.get(sig, str(sig))
            handler = getattr(self, f"handle_{sig_name.lower()}", None)
            if handler is not None:
                handler()
            else:
                logger.debug("Received signal %s, but no handler is defined for it.", sig_name)

    def handle_int(self) -> None:
        logger.info("Received SIGINT, exiting.")
        self.should_exit.set()

    def handle_term(self) -> None:
        logger.info("Received SIGTERM, exiting.")
        self.should_exit.set()

    def handle_break(self) -> None:  # pragma: no cover - Windows only
        logger.info("Received SIGBREAK, exiting.")
        self.should_exit.set()

    def handle_hup(self) -> None:
        logger.info("Received SIGHUP, restarting %s.", self.plural)
        if self.service is not None:
            self.service.reloading()
        self.restart_all()
        if self.service is not None and not self.stopping.is_set():
            self.service.ready(self.status_line())

    def handle_ttin(self) -> None:
        logger.info("Received SIGTTIN, increasing the number of %s.", self.plural)
        self.workers_num += 1
        worker = self.new_worker("scale_up")
        worker.start()
        self._workers.append(worker)

    def handle_ttou(self) -> None:
        logger.info("Received SIGTTOU, decreasing number of %s.", self.plural)
        if self.workers_num <= 1:
            logger.info("Already reached one %s, cannot decrease the number of %s anymore.", self.kind, self.plural)
            return
        self.workers_num -= 1
        self.retire(self._workers.pop(), "scale_down")


def pid_message(verb: str, what: str) -> tuple[str, str]:
    pid = str(os.getpid())
    return f"{verb} {what} [{pid}]", f"{verb} {what} [{cyan(pid)}]"

"""Starting worker processes, and the heartbeat pipe between a worker and its supervisor.

Children are started with the ``spawn`` method: a fresh interpreter that imports the app itself
(no fork of a process that may hold threads and locks). The listening sockets and one end of a
pipe travel to the child; the parent keeps only its own end, so when the parent dies -- even by
SIGKILL -- the child reads EOF on the pipe and shuts itself down instead of lingering as an orphan.

The pipe also carries ``("drain", reason)`` before the SIGTERM that retires a worker while the
server goes on (rolling restart, recycle, scale down), so the worker's events say why it drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from socket import socket
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from pounce.config import Config
    from pounce.observability.runtime import WorkerIdentity

multiprocessing.allow_connection_pickling()
spawn = multiprocessing.get_context("spawn")

logger = logging.getLogger("uvicorn.error")

# What a worker reports when pinged.
Status = Literal["starting", "ready", "recycle", "stopping"]
Target = Callable[..., None]


class ServerLike(Protocol):
    started: bool
    should_exit: bool
    force_exit: bool


DRAIN = "drain"


def server_status(server: ServerLike | None) -> Status:
    """The heartbeat answer for a worker's server. No server (a plain target) counts as ready."""
    if server is None:
        return "ready"
    if getattr(server, "recycle_requested", False):
        return "recycle"
    if server.should_exit:
        return "stopping"
    return "ready" if server.started else "starting"


def loop_answers(server: ServerLike | None, timeout: float | None = None) -> bool:
    """Whether the server's event loop runs a callback posted to it (within ``timeout``; None: until it closes).

    A thread answering pings proves nothing about the loop: an app that blocks it (CPU-bound or
    synchronous code) would look healthy forever. Only checked once the server has started, so a
    slow import or lifespan startup is not taken for a hang.
    """
    loop: asyncio.AbstractEventLoop | None = getattr(server, "loop", None)
    if server is None or loop is None or not server.started:
        return True
    answered = threading.Event()
    try:
        loop.call_soon_threadsafe(answered.set)
    except RuntimeError:  # closed: the server has finished
        return False
    deadline = None if timeout is None else time.monotonic() + timeout
    while not answered.wait(0.05):
        if loop.is_closed() or (deadline is not None and time.monotonic() >= deadline):
            return False
    return True


def pong_forever(
    conn: Connection,
    status: Callable[[], Status],
    on_parent_gone: Callable[[], None],
    on_drain: Callable[[str], None] | None = None,
) -> None:
    """Child side of the heartbeat: answer each ping ``n`` with ``(n, status)``.

    ``("drain", reason)`` is answered the same way, after ``on_drain(reason)``. EOF means the
    supervisor is gone (it exited or was killed): stop serving rather than be orphaned.
    """
    while True:
        try:
            seq = conn.recv()
            if isinstance(seq, tuple) and len(seq) == 2 and seq[0] == DRAIN and on_drain is not None:
                on_drain(str(seq[1]))
            conn.send((seq, status()))
        except (EOFError, OSError):
            on_parent_gone()
            return
        except pickle.UnpicklingError:  # pragma: no cover - garbage on our own pipe
            continue


def ping(conn: Connection, seq: int, timeout: float) -> Status | None:
    """Parent side: send ping ``seq`` and wait up to ``timeout`` for its answer; None if none came.

    Answers to earlier pings that timed out arrive late; their sequence number tells them apart.
    """
    deadline = time.monotonic() + timeout
    try:
        conn.send(seq)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not conn.poll(remaining):
                return None
            answer = conn.recv()
            if isinstance(answer, tuple) and len(answer) == 2 and answer[0] == seq:
                status: Status = answer[1]
                return status
    except (OSError, EOFError, pickle.UnpicklingError, ValueError):
        return None


def announce_drain(conn: Connection, reason: str, timeout: float = 1.0) -> bool:
    """Parent side: tell the worker why it is about to be stopped; True once it has acknowledged."""
    message = (DRAIN, reason)
    deadline = time.monotonic() + timeout
    try:
        conn.send(message)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not conn.poll(remaining):
                return False
            answer = conn.recv()
            if isinstance(answer, tuple) and len(answer) == 2 and answer[0] == message:
                return True
    except (OSError, EOFError, pickle.UnpicklingError, ValueError):
        return False


def _supervisor_business(sig: int, frame: object) -> None:
    """Signals meant for the supervisor that reached a worker too (sent to the process group)."""


def get_subprocess(
    config: Config,
    target: Target | None,
    sockets: list[socket],
    conn: Connection | None = None,
    worker: WorkerIdentity | None = None,
    metrics_dir: str | None = None,
) -> SpawnProcess:
    """A not-yet-started child that runs ``target(sockets=...)``, or a worker server when target is None.

    ``worker`` is the identity a worker server reports in its events; ``metrics_dir`` the supervisor's
    prometheus-client multiprocess directory (``--metrics``).
    """
    try:
        stdin_fileno: int | None = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        stdin_fileno = None
    kwargs: dict[str, Any] = {
        "config": config,
        "target": target,
        "sockets": sockets,
        "stdin_fileno": stdin_fileno,
        "conn": conn,
    }
    if worker is not None:
        kwargs["worker"] = worker
    if metrics_dir is not None:
        kwargs["metrics_dir"] = metrics_dir
    from pounce.config import LOGGING_CONFIG

    if config.log_config is LOGGING_CONFIG:
        kwargs["default_logging"] = True
    return spawn.Process(target=subprocess_started, kwargs=kwargs)


def _adopt_default_logging(config: Config) -> None:
    """In a child: the parent's default logging configuration is the default here too.

    The config arrives by pickle, so its ``log_config`` is a copy of the parent's ``LOGGING_CONFIG``, not
    that object. ``Config.configure_logging`` tells the default from a ``--log-config`` by identity, and only
    the default gets ``--log-format json`` and ``--access-log-format`` applied: taken for a config of the
    user's own, the copy made every worker log plain text (and warn that its configuration decides). The
    copy holds what the parent's default held, so it becomes this process's ``LOGGING_CONFIG``.
    """
    from pounce.config import LOGGING_CONFIG

    transported = config.log_config
    if isinstance(transported, dict) and transported is not LOGGING_CONFIG:
        LOGGING_CONFIG.clear()
        LOGGING_CONFIG.update(transported)
        config.log_config = LOGGING_CONFIG


# The signals a terminal hang-up or ``kill -SIG -PGID`` sends every process of the group, which the
# workers leave to the supervisor.
GROUP_SIGNALS = frozenset(
    getattr(signal, name) for name in ("SIGHUP", "SIGTTIN", "SIGTTOU", "SIGUSR1", "SIGUSR2") if hasattr(signal, name)
)


@contextlib.contextmanager
def group_signals_blocked() -> Iterator[None]:
    """Start a worker process inside this: it inherits the signal mask across exec, so the group
    signals wait until its handlers are installed. Otherwise a hang-up in the few hundred milliseconds a
    spawned interpreter takes to boot kills the worker (their default action) before it can ignore it."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, GROUP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def subprocess_started(
    config: Config,
    target: Target | None,
    sockets: list[socket],
    stdin_fileno: int | None,
    conn: Connection | None = None,
    worker: WorkerIdentity | None = None,
    metrics_dir: str | None = None,
    default_logging: bool = False,
) -> None:
    """Entry point of every worker process (``default_logging``: the parent logs with ``LOGGING_CONFIG``)."""
    if stdin_fileno is not None:
        # Some debuggers need stdin; spawn gives the child none of its own.
        try:
            sys.stdin = os.fdopen(stdin_fileno)
        except OSError:  # pragma: no cover
            pass
    # Restarts and resizing are the supervisor's business. A signal sent to the whole process group
    # (a terminal hang-up, ``kill -HUP -PGID``) must not kill or stop the workers: HUP's and USR's
    # default action terminates, TTIN/TTOU's stops the process. A no-op handler rather than SIG_IGN,
    # because ignored signals stay ignored in programs the app runs, and handlers do not.
    for name in ("SIGHUP", "SIGTTIN", "SIGTTOU", "SIGUSR1", "SIGUSR2"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _supervisor_business)
    # The parent started us with these blocked (see ``group_signals_blocked``): one sent while this
    # interpreter was still booting is delivered now, to the handler, instead of killing it.
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, GROUP_SIGNALS)
    # Logging configuration does not survive spawn: set it up again.
    if default_logging:
        _adopt_default_logging(config)
    config.configure_logging()

    server: ServerLike | None
    on_drain: Callable[[str], None] | None = None
    if target is None:
        from pounce.observability.runtime import Telemetry
        from pounce.supervisors.worker_server import WorkerServer

        # Always a Telemetry of our own: a worker process never binds the --metrics listener itself.
        telemetry = Telemetry.process_worker(metrics_dir, bool(getattr(config, "otel", False)))
        worker_server = WorkerServer(config, worker=worker, telemetry=telemetry)
        server, run = worker_server, worker_server.run

        def on_drain(reason: str) -> None:
            if reason in ("restart", "recycle", "scale_down"):
                worker_server.drain_reason = reason  # type: ignore[assignment]
    else:
        # Uvicorn passes ``Server(config).run``; reach its server so readiness can be reported.
        owner = getattr(target, "__self__", None)
        server = owner if owner is not None and hasattr(owner, "started") else None
        run = target

    if conn is not None:

        def parent_gone() -> None:
            if server is not None:
                server.should_exit = True
            else:  # pragma: no cover - plain targets have no graceful path
                os.kill(os.getpid(), signal.SIGTERM)

        def status() -> Status:
            # A stuck loop gets no answer at all: the supervisor's ping times out and it replaces us.
            if not loop_answers(server):
                return "stopping"
            return server_status(server)

        threading.Thread(target=pong_forever, args=(conn, status, parent_gone, on_drain), daemon=True).start()

    try:
        run(sockets=sockets)
    except KeyboardInterrupt:  # pragma: no cover
        # The supervisor asked us to stop; a traceback here would only be noise.
        pass

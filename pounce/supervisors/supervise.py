"""``run_supervised``: what ``pounce.run()`` calls for ``--reload``, ``--workers N`` or thread workers."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from socket import socket
from typing import TYPE_CHECKING, Any

from pounce.container import PidFile
from pounce.supervisors.mode import choose_mode, watch_gil
from pounce.supervisors.rolling import STARTUP_FAILURE, WorkerPool
from pounce.systemd import activated_sockets, service_manager

if TYPE_CHECKING:
    from pounce.config import Config
    from pounce.observability.runtime import MultiprocessMetrics

logger = logging.getLogger("uvicorn.error")


def run_supervised(config: Config) -> int:
    """Bind the socket(s), run the reloader or the worker pool until stopped; return the exit code."""
    try:
        return _run(config)
    except SystemExit as exc:
        # Config.load()/bind_socket() log their error and exit with STARTUP_FAILURE.
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)


def _run(config: Config) -> int:
    from pounce.supervisors import ChangeReload

    if config.should_reload:
        from pounce.server import Server

        sock = _listeners(config)[0]
        # --metrics: the reloader serves them (old and new children overlap while the new code starts),
        # the children write prometheus-client multiprocess files, as process workers do.
        metrics = _multiprocess_metrics(config)
        try:
            server = Server(config=config, metrics_dir=metrics.directory if metrics is not None else None)
            reloader = ChangeReload(config, target=server.run, sockets=[sock])
            reloader.on_child_exit = metrics.worker_exited if metrics is not None else None
            with _pid_file(config):
                reloader.run()
        finally:
            if metrics is not None:
                metrics.close()
        return 0

    try:
        choice = choose_mode(str(config.worker_mode), max(config.workers, 1))
    except ValueError as exc:
        logger.error("%s", exc)
        return 2
    pool: WorkerPool[Any]
    if choice.kind == "process":
        if not isinstance(config.app, str):
            logger.warning("You must pass the application as an import string to enable 'reload' or 'workers'.")
            return STARTUP_FAILURE
        sockets = _listeners(config)
        from pounce.supervisors.multiprocess import Multiprocess

        pool = Multiprocess(config, sockets=sockets)
    else:
        if not config.loaded:
            # One import for every thread; a failure here exits before anything is bound.
            with watch_gil("the app"):
                config.load()
        sockets = _listeners(config)
        from pounce.supervisors.threads import ThreadWorkers

        pool = ThreadWorkers(config, sockets=sockets)
    # Logged by the pool once it starts, after "Started parent process [pid]", as Uvicorn's first line.
    pool.announcements.append((logging.INFO, choice.reason))
    if choice.warning:
        pool.announcements.append((logging.WARNING, choice.warning))
    pool.service = service_manager()
    try:
        with _pid_file(config):
            pool.run()
    finally:
        _close(sockets)
    return pool.exit_code


@contextmanager
def _pid_file(config: Config) -> Iterator[None]:
    """--pid-file, written after the bind (whoever reads it can reach the server), removed on the way out."""
    pid_file = PidFile(config.pid_file) if config.pid_file else None
    if pid_file is not None:
        pid_file.write()
    try:
        yield
    finally:
        if pid_file is not None:
            pid_file.remove()


def _listeners(config: Config) -> list[socket]:
    """The sockets systemd passed us (socket activation), else the one bound as configured."""
    return activated_sockets() or [config.bind_socket()]


def _multiprocess_metrics(config: Config) -> MultiprocessMetrics | None:
    address = getattr(config, "metrics_address", None)
    if address is None:
        return None
    from pounce.observability.runtime import MultiprocessMetrics

    return MultiprocessMetrics(address)


def _close(sockets: list[socket]) -> None:
    for sock in sockets:
        try:
            sock.close()
        except OSError:  # pragma: no cover
            pass

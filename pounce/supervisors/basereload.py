"""Dev reload: run the server in a child process and restart it when watched files change.

Same semantics and messages as Uvicorn's reloader, with one difference that matters while
editing: a restart starts the new child first and only stops the old one once the new one
serves. If the new code fails to import (or its startup fails), the old child keeps serving
the previous version and the error is logged; the next change tries again.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from socket import socket
from types import FrameType
from typing import TYPE_CHECKING

import click

from pounce.supervisors.multiprocess import Process

if TYPE_CHECKING:
    from pounce.config import Config

HANDLED_SIGNALS = (
    signal.SIGINT,  # Unix signal 2. Sent by Ctrl+C.
    signal.SIGTERM,  # Unix signal 15. Sent by `kill <pid>`.
)

# How long a restart waits for the new child to serve before swapping anyway (a slow startup
# is not a failure in development; only a child that exits is).
RELOAD_READY_TIMEOUT = 10.0

logger = logging.getLogger("uvicorn.error")


class BaseReload:
    def __init__(
        self,
        config: Config,
        target: Callable[[list[socket] | None], None] | None,
        sockets: list[socket],
    ) -> None:
        self.config = config
        self.target = target
        self.sockets = sockets
        self.should_exit = threading.Event()
        self.pid = os.getpid()
        self.is_restarting = False
        self.reloader_name: str | None = None
        self.process: Process | None = None
        # Called with a child's pid once it has exited (--metrics: its live gauges leave the sum).
        self.on_child_exit: Callable[[int], None] | None = None

    def signal_handler(self, sig: int, frame: FrameType | None) -> None:
        """Registered in the reloader (parent) process for SIGINT and SIGTERM."""
        self.should_exit.set()

    def run(self) -> None:
        self.startup()
        for changes in self:
            if changes:
                logger.warning(
                    "%s detected changes in %s. Reloading...",
                    self.reloader_name,
                    ", ".join(map(_display_path, changes)),
                )
                self.restart()
        self.shutdown()

    def pause(self) -> None:
        if self.should_exit.wait(self.config.reload_delay):
            raise StopIteration()

    def __iter__(self) -> Iterator[list[Path] | None]:
        return self

    def __next__(self) -> list[Path] | None:
        return self.should_restart()

    def _spawn(self) -> Process:
        process = Process(self.config, self.sockets, target=self.target, verbose=False, on_exit=self.on_child_exit)
        process.start()
        return process

    def startup(self) -> None:
        message = f"Started reloader process [{self.pid}] using {self.reloader_name}"
        color_message = "Started reloader process [{}] using {}".format(
            click.style(str(self.pid), fg="cyan", bold=True),
            click.style(str(self.reloader_name), fg="cyan", bold=True),
        )
        logger.info(message, extra={"color_message": color_message})

        for sig in HANDLED_SIGNALS:
            signal.signal(sig, self.signal_handler)

        self.process = self._spawn()

    def restart(self) -> None:
        old = self.process
        new = self._spawn()
        ready = self._wait_for(new)
        if not ready and not new.is_running() and old is not None and old.is_running():
            new.join()
            logger.error(
                "The new code failed to start (child process [%s] exited with code %s); "
                "still serving the previous version from child process [%s]. Fix the error and save again.",
                new.pid,
                new.exitcode,
                old.pid,
            )
            return
        if old is not None:
            old.terminate()
            old.join()
        self.process = new

    def _wait_for(self, process: Process) -> bool:
        """True once ``process`` serves; False if it exits first, on shutdown, or after the timeout."""
        deadline = time.monotonic() + max(RELOAD_READY_TIMEOUT, float(self.config.timeout_worker_healthcheck))
        while time.monotonic() < deadline and not self.should_exit.is_set():
            if not process.is_running():
                return False
            if process.is_ready(timeout=0.5):
                return True
            time.sleep(0.05)
        return False

    def shutdown(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.join()

        for sock in self.sockets:
            sock.close()

        message = f"Stopping reloader process [{self.pid}]"
        color_message = "Stopping reloader process [{}]".format(click.style(str(self.pid), fg="cyan", bold=True))
        logger.info(message, extra={"color_message": color_message})

    def should_restart(self) -> list[Path] | None:
        raise NotImplementedError("Reload strategies should override should_restart()")


def _display_path(path: Path) -> str:
    try:
        return f"'{path.relative_to(Path.cwd())}'"
    except ValueError:
        return f"'{path}'"

"""Gunicorn worker classes, for teams that keep Gunicorn as the process manager for now.

    gunicorn app:app -k pounce.workers.PounceWorker -w 4

Gunicorn forks and supervises the processes; each runs one Pounce ``Server`` on the sockets
Gunicorn bound. ``pounce app:app --workers 4`` does the same without Gunicorn (and, on a
free-threaded Python, with threads in one process).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any

from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker

from pounce._compat import asyncio_run
from pounce.config import Config
from pounce.server import Server


class PounceWorker(Worker):  # type: ignore[misc]
    """A Gunicorn worker that serves an ASGI app (or WSGI, through Pounce's adapter) with Pounce."""

    CONFIG_KWARGS: dict[str, Any] = {"loop": "auto", "http": "auto"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)

        # Route Pounce's loggers to Gunicorn's handlers, so --error-logfile / --access-logfile apply.
        for name, source in (("uvicorn.error", self.log.error_log), ("uvicorn.access", self.log.access_log)):
            target = logging.getLogger(name)
            target.handlers = source.handlers
            target.setLevel(source.level)
            target.propagate = False

        config_kwargs: dict[str, Any] = {
            "app": None,
            "log_config": None,
            "timeout_keep_alive": self.cfg.keepalive,
            "timeout_notify": self.timeout,
            "callback_notify": self.callback_notify,
            "limit_max_requests": self.max_requests,
            "forwarded_allow_ips": self.cfg.forwarded_allow_ips,
            # Within Gunicorn's drain budget, so lifespan shutdown runs before the arbiter kills us.
            "timeout_graceful_shutdown": max(int(self.cfg.graceful_timeout) - 1, 0),
        }
        if self.cfg.is_ssl:
            options = self.cfg.ssl_options
            config_kwargs.update(
                ssl_keyfile=options.get("keyfile"),
                ssl_certfile=options.get("certfile"),
                ssl_keyfile_password=options.get("password"),
                ssl_version=options.get("ssl_version"),
                ssl_cert_reqs=options.get("cert_reqs"),
                ssl_ca_certs=options.get("ca_certs"),
                ssl_ciphers=options.get("ciphers"),
            )
        if self.cfg.settings["backlog"].value:
            config_kwargs["backlog"] = self.cfg.settings["backlog"].value
        config_kwargs.update(self.CONFIG_KWARGS)
        self.config = Config(**config_kwargs)

    def init_signals(self) -> None:
        # Back to the defaults: Gunicorn's handlers would swallow the exit status of the server.
        # Server.serve() installs its own INT/TERM handlers.
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, self.handle_usr1)
        # Reopening logs on SIGUSR1 must not interrupt system calls of in-flight requests.
        signal.siginterrupt(signal.SIGUSR1, False)

    def _install_sigquit_handler(self) -> None:
        # Gunicorn sends SIGQUIT for a quick stop; treat it as an exit request like SIGTERM.
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGQUIT, self.handle_exit, signal.SIGQUIT, None)

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        server = Server(config=self.config)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

    def run(self) -> None:
        return asyncio_run(self._serve(), loop_factory=self.config.get_loop_factory())

    async def callback_notify(self) -> None:
        self.notify()


class PounceH11Worker(PounceWorker):
    """The same, pinned to the h11-based HTTP/1.1 implementation."""

    CONFIG_KWARGS = {"loop": "asyncio", "http": "h11"}

"""The server: binds listeners, runs lifespan, ticks the clock and drains connections on shutdown.

One ``Server`` runs one event loop. Process workers run one each; thread workers run one per
thread, all reading the same frozen ``ServerConfig``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Generator, Sequence
from email.utils import formatdate
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from pounce._compat import asyncio_run
from pounce.cert_reload import CertificateWatcher, can_rotate
from pounce.config import STARTUP_FAILURE, Config, ServerConfig
from pounce.drain import Drain, websocket_close_delay
from pounce.observability.bus import EventBus
from pounce.observability.access import AccessLogSubscriber
from pounce.observability.events import (
    DrainReason,
    ServerStarted,
    ServerStopping,
    WorkerDraining,
    WorkerStarted,
    WorkerStopped,
)
from pounce.observability.runtime import STANDALONE, Telemetry, WorkerIdentity, addresses_of

if TYPE_CHECKING:
    from pounce.observability.request_metrics import RequestRecorder
    from pounce.observability.tracing import RequestTracer
    from pounce.systemd import ServiceManager

HANDLED_SIGNALS = (
    signal.SIGINT,  # Unix signal 2. Sent by Ctrl+C.
    signal.SIGTERM,  # Unix signal 15. Sent by `kill <pid>`.
)

logger = logging.getLogger("uvicorn.error")

# How long cancelled app tasks (forced quit, graceful-shutdown timeout) get to answer before their
# connections are closed.
CANCELLED_TASKS_GRACE = 1.0

# The configuration of the server running the current task; lets an app (the demo, diagnostics)
# show what it is served with. Tasks inherit it from the server's loop context.
current_server_config: contextvars.ContextVar[ServerConfig | None] = contextvars.ContextVar(
    "pounce_server_config", default=None
)


class Connection(Protocol):
    """What the server needs of a protocol instance to drain it on shutdown."""

    def shutdown(self) -> None: ...


class ServerState:
    """State shared by every protocol instance of one server (one event loop)."""

    def __init__(self) -> None:
        self.total_requests = 0
        self.connections: set[Any] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        # ``date`` + configured headers as (name, value) pairs, refreshed once a second.
        self.default_headers: list[tuple[bytes, bytes]] = []
        # The same headers as one pre-encoded block ("name: value\r\n"...), for the fast path.
        self.default_headers_raw: bytes = b""
        # Fast-path responses whose head waits for its first body message; flushed together once per
        # loop iteration (see protocols/http/fast_impl.py).
        self.pending_heads: list[Any] = []
        # Events (pounce/observability/): the worker's bus always exists (frameworks subscribe through
        # it); ``events`` is that bus while it has a handler and None otherwise, so an emission point
        # costs one attribute test when nobody listens. ``request_events``: the same, for the events of
        # single requests, which handlers like the metrics one do without.
        self.event_bus = EventBus(on_change=self._events_changed)
        self.events: EventBus | None = None
        self.request_events: EventBus | None = None
        # --otel: the request tracer (None: no spans); the request cycle calls it around the app.
        self.tracer: RequestTracer | None = None
        # --metrics: this worker's per-request recorder (pounce/observability/request_metrics.py).
        self.request_metrics: RequestRecorder | None = None
        # Whether a request gets an observer (pounce/observability/request.py) for any of the above;
        # the protocols test this one attribute (and their own --server-timing) per request.
        self.observing = False
        # The access log's subscription to the bus, once made (see ``enable_access_log``).
        self.access_log: Callable[[], None] | None = None
        # scope["extensions"]["pounce.drain"] of every request of this worker (pounce/drain.py).
        self.drain = Drain()
        # The scope["extensions"] dicts every plain (non-TLS) HTTP/1.1 connection of this worker shares
        # (base.BaseHTTPProtocol._offer_extensions): plain, HTTP/1.1, HTTP/1.1 with trailers.
        self.plain_extensions: tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | None = None

    def _events_changed(self, active: bool, requests: bool) -> None:
        self.events = self.event_bus if active else None
        self.request_events = self.event_bus if requests else None
        self._refresh_observing()

    def set_telemetry(self, tracer: RequestTracer | None, request_metrics: RequestRecorder | None) -> None:
        self.tracer = tracer
        self.request_metrics = request_metrics
        self._refresh_observing()

    def _refresh_observing(self) -> None:
        self.observing = (
            self.request_events is not None or self.tracer is not None or self.request_metrics is not None
        )

    def enable_access_log(self) -> None:
        """Subscribe the access log (one line per response) if ``uvicorn.access`` has somewhere to write.

        As Uvicorn decides it: per connection, while ``--access-log`` is on and that logger has handlers,
        so a handler configured after startup (an app's own logging setup) still gets the lines. The
        server calls it at startup; every connection calls it again while it is not subscribed, so
        protocols served without a ``Server`` (a ServerState of their own, as Uvicorn's protocol tests
        build them) log too. Subscribed once: later calls are one attribute test.
        """
        if self.access_log is None and logging.getLogger("uvicorn.access").hasHandlers():
            self.access_log = self.event_bus.subscribe(AccessLogSubscriber())

    def disable_access_log(self) -> None:
        if self.access_log is not None:
            unsubscribe, self.access_log = self.access_log, None
            unsubscribe()


class Server:
    def __init__(
        self,
        config: Config,
        *,
        worker: WorkerIdentity | None = None,
        telemetry: Telemetry | None = None,
        metrics_dir: str | None = None,
    ) -> None:
        """``worker`` and ``telemetry`` come from a supervisor; a server run on its own has neither and
        owns its ``--metrics`` endpoint and tracer itself. ``metrics_dir``: write metrics to a supervisor's
        prometheus-client multiprocess directory instead of serving them (a ``--reload`` child)."""
        self.config = config
        self.worker = worker or STANDALONE
        self.telemetry = telemetry
        self.metrics_dir = metrics_dir
        self._owns_telemetry = False
        # Set by a supervisor before asking this worker to stop while the server goes on.
        self.drain_reason: DrainReason | None = None
        self.server_state = ServerState()
        self.started = False
        self.should_exit = False
        self.force_exit = False
        self.last_notified = 0.0
        self.servers: list[asyncio.base_events.Server] = []
        self._captured_signals: list[int] = []
        self._told_to_shut_down: set[Any] = set()
        # Until then (monotonic), open WebSockets are left to the app, which sees the drain (pounce/drain.py).
        self._websockets_close_at = 0.0
        # --http3: the UDP endpoint (pounce/protocols/http3/), and the Alt-Svc header announcing it.
        self.http3: Any = None
        self._extra_headers: list[tuple[bytes, bytes]] = []
        # Set by pounce.main for a server that is the top process (never for a supervisor's workers):
        # systemd's notifications (pounce/systemd.py), what runs once it serves and once it has stopped
        # (the pid file): the latter before a caught SIGTERM is re-raised and ends the process.
        self.service: ServiceManager | None = None
        self.on_started: list[Callable[[], None]] = []
        self.on_stopped: list[Callable[[], None]] = []
        # Certificate rotation (pounce/cert_reload.py): on SIGHUP (set for a single TLS server by
        # pounce.main) and by --ssl-reload-interval polls (every server, workers included).
        self.rotate_on_hup = False
        self.cert_watcher: CertificateWatcher | None = None

    @functools.cached_property
    def limit_max_requests(self) -> int | None:
        if self.config.limit_max_requests is None:
            return None
        return self.config.limit_max_requests + random.randint(0, self.config.limit_max_requests_jitter)

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        return asyncio_run(self.serve(sockets=sockets), loop_factory=self.config.get_loop_factory())

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        with self.capture_signals():
            await self._serve(sockets)

    def log_started(self, process_id: int) -> None:
        """Uvicorn's first line. A thread worker says which worker it is instead (the process said this)."""
        logger.info("Started server process [%d]", process_id, extra={"color_message": _cyan_pid_message("Started")})

    async def _serve(self, sockets: list[socket.socket] | None = None) -> None:
        process_id = os.getpid()
        config = self.config
        if not config.loaded:
            config.load()
        current_server_config.set(config.server_config)
        if can_rotate(config) and (config.ssl_reload_interval or self.rotate_on_hup):
            self.cert_watcher = CertificateWatcher(config, config.ssl_reload_interval)
        unsubscribe = self._setup_events(config.server_config)
        worker = self.worker
        announced = False
        try:
            self.lifespan = config.lifespan_class(config)
            # The lifespan scope offers the same "pounce.events" extension as the request scopes.
            self.lifespan.event_source = self.server_state.event_bus.source

            self.log_started(process_id)
            events = self.server_state.events
            if events is not None:
                events.emit(
                    WorkerStarted(
                        time=time.monotonic(),
                        worker_id=worker.worker_id,
                        mode=worker.mode,
                        generation=worker.generation,
                        pid=process_id,
                        reason=worker.start_reason,
                    )
                )
                announced = True
            await self.startup(sockets=sockets)
            if self.started:
                for started in self.on_started:
                    started()
                if self.service is not None:
                    self.service.ready(self._status_line())
            if not self.should_exit:
                await self.main_loop()
            if self.started:
                if self.service is not None:
                    self.service.stopping()
                await self.shutdown(sockets=sockets)
                logger.info(
                    "Finished server process [%d]", process_id, extra={"color_message": _cyan_pid_message("Finished")}
                )
        finally:
            events = self.server_state.events
            if events is not None and announced:
                events.emit(
                    WorkerStopped(
                        time=time.monotonic(),
                        worker_id=worker.worker_id,
                        mode=worker.mode,
                        generation=worker.generation,
                        requests_served=self.server_state.total_requests,
                    )
                )
            tracer = self.server_state.tracer
            if tracer is not None:
                # Before a re-raised SIGTERM ends the process without atexit (see RequestTracer.flush).
                tracer.flush()
            for undo in unsubscribe:
                undo()
            for stopped in self.on_stopped:
                stopped()
            if self._owns_telemetry and self.telemetry is not None:
                self.telemetry.close()
                self.telemetry = None
                self._owns_telemetry = False

    def _setup_events(self, cfg: ServerConfig) -> list[Callable[[], None]]:
        """Subscribe the configured handlers and the built-in ones (metrics) to this worker's bus.

        Returns what undoes it, for the end of ``serve()``.
        """
        if self.telemetry is None and (cfg.metrics_address is not None or cfg.otel):
            if self.metrics_dir is not None:
                self.telemetry = Telemetry.process_worker(self.metrics_dir, cfg.otel)
            else:
                self.telemetry = Telemetry.in_process(cfg.metrics_address, cfg.otel)
            self._owns_telemetry = True
        bus = self.server_state.event_bus
        bus.worker_id = self.worker.worker_id
        handlers = cfg.event_handlers + (self.telemetry.handlers if self.telemetry is not None else ())
        undo = []
        if cfg.access_log:
            # The access log is one more subscriber (the first): a line per response, Uvicorn's by default.
            self.server_state.enable_access_log()
            undo.append(self.server_state.disable_access_log)
        if self.telemetry is not None:
            state = self.server_state
            state.set_telemetry(self.telemetry.tracer, self.telemetry.request_recorder())
            recorder = state.request_metrics
            if recorder is not None:

                def retire() -> None:
                    # This worker's request counts join the process's retired totals (nothing is lost).
                    state.set_telemetry(state.tracer, None)
                    recorder.retire()

                undo.append(retire)
        return undo + [bus.subscribe(handler) for handler in handlers]

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(STARTUP_FAILURE)

        config = self.config
        cfg = config.server_config
        # Seed the default headers before the first connection, not at the first tick.
        self._refresh_default_headers(time.time())

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            return cfg.http_protocol_class(  # type: ignore[call-arg]
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
                _loop=_loop,
            )

        loop = asyncio.get_running_loop()
        listeners: Sequence[socket.SocketType]
        if sockets is not None:
            # Sockets bound by a supervisor (process or thread workers, Gunicorn).
            self.servers = []
            for sock in sockets:
                server = await loop.create_server(create_protocol, sock=sock, ssl=cfg.ssl, backlog=cfg.backlog)
                self.servers.append(server)
            listeners = sockets
        elif cfg.fd is not None:
            sock = socket.fromfd(cfg.fd, socket.AF_UNIX, socket.SOCK_STREAM)
            server = await loop.create_server(create_protocol, sock=sock, ssl=cfg.ssl, backlog=cfg.backlog)
            assert server.sockets is not None
            listeners = server.sockets
            self.servers = [server]
        elif cfg.uds is not None:
            uds_perms = 0o666
            if os.path.exists(cfg.uds):
                uds_perms = os.stat(cfg.uds).st_mode
            server = await loop.create_unix_server(create_protocol, path=cfg.uds, ssl=cfg.ssl, backlog=cfg.backlog)
            os.chmod(cfg.uds, uds_perms)
            assert server.sockets is not None
            listeners = server.sockets
            self.servers = [server]
        else:
            try:
                server = await loop.create_server(
                    create_protocol, host=cfg.host, port=cfg.port, ssl=cfg.ssl, backlog=cfg.backlog
                )
            except OSError as exc:
                logger.error(exc)
                await self.lifespan.shutdown()
                sys.exit(STARTUP_FAILURE)
            assert server.sockets is not None
            listeners = server.sockets
            self.servers = [server]

        if cfg.http3 is not None:
            await self._start_http3(listeners, shared=sockets is not None)
        if sockets is None:
            self._log_started_message(listeners)
        self.started = True
        events = self.server_state.events
        if events is not None:
            events.emit(
                ServerStarted(
                    time=time.monotonic(), worker_id=events.worker_id, addresses=addresses_of(listeners, cfg.ssl is not None)
                )
            )

    async def _start_http3(self, listeners: Sequence[socket.SocketType], shared: bool) -> None:
        from pounce.protocols.http3.options import alt_svc
        from pounce.protocols.http3.serve import start_http3

        try:
            self.http3 = await start_http3(self.config, self.server_state, self.lifespan.state, listeners, shared)
        except OSError as exc:
            logger.error("HTTP/3: %s", exc)
            await self.lifespan.shutdown()
            sys.exit(STARTUP_FAILURE)
        # Through the default headers: every TCP response carries it at no cost per request.
        self._extra_headers = [alt_svc(self.http3.port)]
        self._refresh_default_headers(time.time())

    def _log_started_message(self, listeners: Sequence[socket.SocketType]) -> None:
        cfg = self.config.server_config
        if cfg.fd is not None:
            logger.info("Pounce running on socket %s (Press CTRL+C to quit)", listeners[0].getsockname())
        elif cfg.uds is not None:
            logger.info("Pounce running on unix socket %s (Press CTRL+C to quit)", cfg.uds)
        else:
            addr_format = "%s://%s:%d"
            host = "0.0.0.0" if cfg.host is None else cfg.host
            if ":" in host:
                addr_format = "%s://[%s]:%d"
            port = cfg.port
            if port == 0:
                port = listeners[0].getsockname()[1]
            protocol_name = "https" if cfg.ssl else "http"
            message = f"Pounce running on {addr_format} (Press CTRL+C to quit)"
            color_message = "Pounce running on \033[1m" + addr_format + "\033[0m (Press CTRL+C to quit)"
            logger.info(message, protocol_name, host, port, extra={"color_message": color_message})

    async def main_loop(self) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter += 1
            counter = counter % 864000
            await asyncio.sleep(0.1)
            should_exit = await self.on_tick(counter)

    def _refresh_default_headers(self, now: float) -> None:
        headers = list(self.config.encoded_headers) + self._extra_headers
        if self.config.date_header:
            headers.insert(0, (b"date", formatdate(now, usegmt=True).encode()))
        self.server_state.default_headers = headers
        self.server_state.default_headers_raw = b"".join(b"%s: %s\r\n" % pair for pair in headers)

    async def on_tick(self, counter: int) -> bool:
        # The date header has one-second resolution: refresh it once a second, not per request.
        if counter % 10 == 0:
            current_time = time.time()
            self._refresh_default_headers(current_time)
            if self.config.callback_notify is not None:
                if current_time - self.last_notified > self.config.timeout_notify:
                    self.last_notified = current_time
                    await self.config.callback_notify()

        if self.cert_watcher is not None:
            self.cert_watcher.tick()
        if self.service is not None:
            # From this loop's own tick: the watchdog is fed only while the loop runs.
            self.service.tick(self._status_line())

        if self.should_exit:
            return True

        return self.max_requests_exceeded()

    def _status_line(self) -> str:
        return f"serving, {len(self.server_state.connections)} connections"

    def max_requests_exceeded(self) -> bool:
        """True once ``--limit-max-requests`` is reached; supervisors override it to recycle the worker."""
        max_requests = self.limit_max_requests
        if max_requests is not None and self.server_state.total_requests >= max_requests:
            logger.info("Maximum request limit of %d exceeded. Terminating process.", max_requests)
            return True
        return False

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        logger.info("Shutting down")
        events = self.server_state.events
        if events is not None:
            now = time.monotonic()
            if self.drain_reason is not None:
                worker = self.worker
                events.emit(
                    WorkerDraining(
                        time=now,
                        worker_id=worker.worker_id,
                        mode=worker.mode,
                        generation=worker.generation,
                        reason=self.drain_reason,
                    )
                )
            events.emit(
                ServerStopping(time=now, worker_id=events.worker_id, open_connections=len(self.server_state.connections))
            )

        # Tell the app first: long-lived responses (SSE, long polls) can end themselves now.
        self.server_state.drain.start()
        self._websockets_close_at = time.monotonic() + websocket_close_delay(self.config.timeout_graceful_shutdown)

        # Stop accepting new connections.
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        if self.http3 is not None:
            self.http3.stop_accepting()  # its connections get GOAWAY below; the socket stays for them

        # Ask every connection to finish its current request and close.
        self._shutdown_connections()
        await asyncio.sleep(0.1)

        try:
            await asyncio.wait_for(self._wait_tasks_to_complete(), timeout=self.config.timeout_graceful_shutdown)
        except asyncio.TimeoutError:
            logger.error(
                "Cancel %s running task(s), timeout graceful shutdown exceeded",
                len(self.server_state.tasks),
            )
            await self._cancel_tasks("Task cancelled, timeout graceful shutdown exceeded")
        else:
            if self.force_exit:
                # As Uvicorn: a forced quit cancels what is in flight, and a request whose response
                # had not started is answered 500 (and logged) rather than dropped without a reply.
                await self._cancel_tasks(None)

        # Whatever is still open now (a forced quit, the graceful timeout, a peer that ignores our
        # close handshake) is closed here: once this loop stops, nobody would ever close it, and its
        # client would hang on a connection that looks alive.
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None and not transport.is_closing():
                transport.close()
        await asyncio.sleep(0)
        if self.http3 is not None:
            await self.http3.close()

        if not self.force_exit:
            await self.lifespan.shutdown()

    async def _cancel_tasks(self, msg: str | None) -> None:
        """Cancel the running app tasks and give them a moment to answer (500, or closing a response
        cut short) before their connections are closed."""
        tasks = list(self.server_state.tasks)
        for task in tasks:
            task.cancel(msg=msg)
        if tasks:
            # Bounded: an app that goes on after its cancellation must not hold the forced quit up.
            await asyncio.wait(tasks, timeout=CANCELLED_TASKS_GRACE)
        await asyncio.sleep(0)  # what the answers scheduled (an HTTP/2 connection's flush) goes out

    def _shutdown_connections(self) -> None:
        # Connections accepted just before the listeners closed reach connection_made a few loop turns
        # later, after the first sweep: sweep again while waiting, telling each connection once.
        defer_websockets = time.monotonic() < self._websockets_close_at
        # WebSockets first: one carried on an HTTP/2 stream must send its 1012 before its connection's
        # GOAWAY (h2-based clients take no frames after a GOAWAY; the connection waits for the stream).
        connections = sorted(self.server_state.connections, key=lambda c: not hasattr(c, "drain_open"))
        for connection in connections:
            if connection not in self._told_to_shut_down:
                if defer_websockets and getattr(connection, "drain_open", _never)():
                    continue  # an open WebSocket: its app was told; 1012 comes later (pounce/drain.py)
                self._told_to_shut_down.add(connection)
                connection.shutdown()

    async def _wait_tasks_to_complete(self) -> None:
        if self.server_state.connections and not self.force_exit:
            logger.info("Waiting for connections to close. (CTRL+C to force quit)")
            while self.server_state.connections and not self.force_exit:
                self._shutdown_connections()
                await asyncio.sleep(0.1)

        if self.server_state.tasks and not self.force_exit:
            logger.info("Waiting for background tasks to complete. (CTRL+C to force quit)")
            while self.server_state.tasks and not self.force_exit:
                await asyncio.sleep(0.1)

        for server in self.servers:
            await server.wait_closed()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # Signals can only be handled in the main thread; thread workers are stopped through should_exit.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        # signal.signal (not loop.add_signal_handler) so the previous handlers can be restored after.
        original_handlers = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        if self.rotate_on_hup and hasattr(signal, "SIGHUP"):
            original_handlers[signal.SIGHUP] = signal.signal(signal.SIGHUP, self.handle_hup)
        try:
            yield
        finally:
            for sig, handler in original_handlers.items():
                signal.signal(sig, handler)
        # Re-raise what we caught so the default behaviour (and the exit status) follows, LIFO.
        for captured_signal in reversed(self._captured_signals):
            signal.raise_signal(captured_signal)

    def handle_hup(self, sig: int, frame: FrameType | None) -> None:
        if self.cert_watcher is not None:
            self.cert_watcher.request()  # loaded on the next tick, outside signal context

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._captured_signals.append(sig)
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True


def _never() -> bool:
    return False


def _cyan_pid_message(verb: str) -> str:
    return f"{verb} server process [\033[36m%d\033[0m]"

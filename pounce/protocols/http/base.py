"""What both HTTP/1.1 protocols (our parser and h11) share: connection bookkeeping, timers,
WebSocket hand-off, concurrency limits and starting the app task. The protocols add parsing and
response framing on top.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import functools
import importlib.util
import sys
from urllib.parse import unquote
from collections.abc import Coroutine
from typing import Any

from pounce._types import ASGI3Application, Scope
from pounce.config import Config
from pounce.drain import DRAIN_KEY
from pounce.logging import TRACE_LOG_LEVEL
from pounce.observability import hooks
from pounce.observability.bus import EXTENSION_KEY
from pounce.observability.events import ProtocolName
from pounce.observability.request import RequestObserver
from pounce.protocols.http.cycle import EARLY_HINT, PATHSEND, TRAILERS, RequestResponseCycle
from pounce.protocols.http.flow_control import FlowControl, service_unavailable
from pounce.protocols.utils import get_local_addr, get_remote_addr, is_ssl
from pounce.tls import tls_extension
from pounce.server import ServerState

NO_WS_LIBRARY_MESSAGE = (
    "No supported WebSocket library detected. Please use \"pip install 'pounce-asgi[ws]'\", or install 'wsproto' manually."
)
INVALID_REQUEST = "Invalid HTTP request received."
WS_NOT_INSTALLED = "WebSocket support is not installed on this server (pip install 'pounce-asgi[ws]')."


@functools.lru_cache(maxsize=None)
def websocket_library_installed() -> bool:
    return importlib.util.find_spec("wsproto") is not None


def error_body(status: int, reason: str) -> bytes:
    """The body of a response to a request we reject: Uvicorn's wording for 400, else the reason."""
    return INVALID_REQUEST.encode() if status == 400 and reason != WS_NOT_INSTALLED else reason.encode("ascii")


# On shutdown an idle keep-alive connection stays open this long (at most) for a request already on
# its way; see ``shutdown``.
MAX_DRAIN_GRACE = 1.0


class BaseHTTPProtocol(asyncio.Protocol):
    # What this connection reports itself as in events; and whether ``_attach`` reports it opened (the
    # --http2 negotiation reports it once it knows which protocol the connection speaks).
    protocol_name: ProtocolName = "http/1.1"
    _announce_on_attach = True
    # The connection's id in events: 0 until events need one; reported opened (and so closed) or not.
    connection_id = 0
    _announced = False
    # scope["extensions"] of this connection's requests (see _offer_extensions).
    extensions: dict[str, Any]
    extensions_http11: dict[str, Any]
    extensions_trailers: dict[str, Any]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        cfg = config.server_config

        self.config = config
        self.app: ASGI3Application = cfg.app  # type: ignore[assignment]
        self.loop = _loop or asyncio.get_event_loop()
        self.logger = logging.getLogger("uvicorn.error")
        self.ws_protocol_class = cfg.ws_protocol_class
        self.root_path = cfg.root_path
        self.root_path_raw = cfg.root_path.encode("ascii")
        self.limit_concurrency = cfg.limit_concurrency
        self.app_state = app_state
        self.asgi_version = cfg.asgi_version
        self.timeout_keep_alive = cfg.timeout_keep_alive
        self.timeout_request_header = cfg.timeout_request_header
        self.timeout_request_body = cfg.timeout_request_body
        self.limit_request_body = cfg.limit_request_body
        self.reset_contextvars = cfg.reset_contextvars
        self.server_timing = cfg.server_timing
        # Eager request tasks need Python 3.12+ and a real event loop (not a test double).
        self.eager_tasks = sys.version_info >= (3, 12) and isinstance(self.loop, asyncio.AbstractEventLoop)

        # Shared server state
        self.server_state = server_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        if cfg.access_log and server_state.access_log is None:
            server_state.enable_access_log()  # see there: Uvicorn decides per connection

        # Per-connection state
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.flow: FlowControl = None  # type: ignore[assignment]
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme: str = "http"
        self.scope: Scope = None  # type: ignore[assignment]
        self.cycle: RequestResponseCycle | None = None
        self.timeout_keep_alive_task: asyncio.TimerHandle | None = None
        self._requests = 0  # requests started on this connection; the lazy keep-alive timer reads it
        self._body_received = 0  # request body bytes of the current request (--limit-request-body)
        self._keepalive_mark = -1
        self._header_timer: asyncio.TimerHandle | None = None
        # Set by ``shutdown`` on an idle connection: serve at most one more request, with "connection: close".
        self.draining = False
        self._drain_timer: asyncio.TimerHandle | None = None

    def _trace(self, message: str) -> None:
        if self.logger.level <= TRACE_LOG_LEVEL:
            prefix = "%s:%d - " % self.client if self.client else ""
            self.logger.log(TRACE_LOG_LEVEL, "%s" + message, prefix)

    # Protocol interface
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._attach(transport)
        self._trace("HTTP connection made")
        self._arm_header_timer()

    def _attach(self, transport: asyncio.BaseTransport) -> None:
        """What every HTTP protocol does with a new connection: register it and learn its addresses."""
        self.connections.add(self)
        self.transport = transport  # type: ignore[assignment]
        self.flow = FlowControl(self.transport, self.config.server_config.timeout_write)
        self.server = get_local_addr(transport)
        self.client = get_remote_addr(transport)
        self.scheme = "https" if is_ssl(transport) else "http"
        self._offer_extensions(transport)
        if self._announce_on_attach:
            self._announce()

    def _offer_extensions(self, transport: asyncio.BaseTransport) -> None:
        """The ``scope["extensions"]`` dicts of this connection's requests, built once per connection and
        shared by its scopes (as ``EventBus.scope_extensions`` shares its dict): per HTTP version,
        since early hints need HTTP/1.1, and with trailers only for a request that accepts them.

        Without TLS nothing in them is the connection's own, so one set serves every such connection of
        the worker: seven dicts fewer per connection for the garbage collector to walk (its full passes
        take time in proportion to what is alive, and idle connections are most of that)."""
        if self.scheme != "https":
            shared = self.server_state.plain_extensions
            if shared is not None:
                self.extensions, self.extensions_http11, self.extensions_trailers = shared
                return
        extensions: dict[str, Any] = {
            EXTENSION_KEY: self.server_state.event_bus.source,
            DRAIN_KEY: self.server_state.drain,  # one object per worker (pounce/drain.py)
            PATHSEND: {},
        }
        if self.scheme == "https":
            extensions["tls"] = tls_extension(transport)
        self.extensions = extensions
        self.extensions_http11 = {**extensions, EARLY_HINT: {}}
        self.extensions_trailers = {**extensions, EARLY_HINT: {}, TRAILERS: {}}
        if self.scheme != "https":
            self.server_state.plain_extensions = (extensions, self.extensions_http11, self.extensions_trailers)

    def _announce(self) -> None:
        """Report the connection opened, if anyone listens (then its close is reported too)."""
        events = self.server_state.events
        if events is not None:
            self.connection_id = hooks.connection_opened(
                events, self.protocol_name, self.client, self.scheme == "https", self.connection_id or None
            )
            self._announced = True

    def _report_closed(self, upgraded_to: ProtocolName | None = None) -> None:
        if self._announced:
            self._announced = False
            hooks.connection_closed(
                self.server_state.event_bus, self.connection_id, self.protocol_name, self._requests, upgraded_to
            )

    def _observe(self, cycle: RequestResponseCycle, scope: Scope, stream_id: int | None = None) -> None:
        """Give the request its observer (events, span, Server-Timing); called only when one is needed."""
        if not self.connection_id:
            self.connection_id = self.server_state.event_bus.next_connection_id()
        cycle.observer = RequestObserver(self.server_state, self.connection_id, scope, self.server_timing, stream_id)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self._trace("HTTP connection lost")
        cycle = self.cycle
        if cycle is not None:
            if not cycle.response_complete:
                cycle.disconnected = True
                if cycle.observer is not None:
                    cycle.observer.client_disconnected()
            cycle.notify()
        self._report_closed()
        if self.flow is not None:
            self.flow.resume_writing()
        self._cancel_header_timer()
        self._unset_keepalive_if_required()
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        if exc is None and not self.transport.is_closing():
            self.transport.close()

    def eof_received(self) -> None:
        pass

    def pause_writing(self) -> None:
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        self.flow.resume_writing()

    def shutdown(self) -> None:
        """Called by the server on shutdown: finish what is in flight, then close.

        A busy connection finishes its response with "connection: close". An idle keep-alive connection
        is not closed at once: its client may be sending the next request right now, and closing would
        fail that request (the classic race of rolling restarts). It drains instead: a request arriving
        within the grace window is served with "connection: close"; otherwise it closes when the window
        ends. A connection accepted a moment ago that has not sent a byte yet drains the same way (Uvicorn
        closes it at once, failing the request its client is sending in that moment).
        """
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False
            return
        if not self.draining:
            self.draining = True
            grace = min(self.timeout_keep_alive, MAX_DRAIN_GRACE)
            self._drain_timer = self.loop.call_later(grace, self._drain_timeout)

    def _drain_timeout(self) -> None:
        self._drain_timer = None
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            return  # A last request arrived in time; its response closes the connection.
        self._close()

    def _close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    # Requests
    def build_scope(
        self,
        method: bytes,
        target: bytes,
        http_version: str,
        headers: list[tuple[bytes, bytes]],
        trailers: bool = False,
    ) -> Scope:
        """The ASGI HTTP connection scope (ASGI HTTP spec 2.4) for one request; ``trailers``: an HTTP/1.1
        request that accepts a trailer section (TE: trailers)."""
        if target[:1] != b"/" and target != b"*":
            # RFC 9112 §3.2.2: absolute-form ("http://host/path?q"); the app sees only path and query.
            scheme_end = target.find(b"://")
            path_start = target.find(b"/", scheme_end + 3) if scheme_end >= 0 else -1
            if path_start < 0:
                query_start = target.find(b"?")
                target = b"/" + target[query_start:] if query_start >= 0 else b"/"
            else:
                target = target[path_start:]
        raw_path, _, query_string = target.partition(b"?")
        path = raw_path.decode("ascii")
        if "%" in path:
            path = unquote(path)
        return {
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.4"},
            "http_version": http_version,
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": method.decode("ascii"),
            "root_path": self.root_path,
            "path": self.root_path + path,
            "raw_path": self.root_path_raw + raw_path,
            "query_string": query_string,
            "headers": headers,
            "state": self.app_state.copy(),
            # Frameworks subscribe to this worker's events through "pounce.events" (observability/bus.py).
            "extensions": (
                self.extensions
                if http_version != "1.1"
                else self.extensions_trailers if trailers else self.extensions_http11
            ),
        }

    def _select_app(self) -> ASGI3Application:
        if self.limit_concurrency is not None and (
            len(self.connections) >= self.limit_concurrency or len(self.tasks) >= self.limit_concurrency
        ):
            self.logger.warning("Exceeded concurrency limit.")
            return service_unavailable
        return self.app

    def _run_cycle(self, cycle: RequestResponseCycle, app: ASGI3Application, eager: bool = False) -> None:
        self._requests += 1
        coro: Coroutine[Any, Any, None] = cycle.run_asgi(app)
        if eager:
            # Python 3.12+: the task starts at once, in this callback; a response that needs no I/O wait
            # completes without a round trip through the event loop. The task (and current_task()) is
            # real, so apps and libraries see no difference.
            context = contextvars.Context() if self.reset_contextvars else None
            task: asyncio.Task[None] = asyncio.Task(  # type: ignore[call-arg]
                coro, loop=self.loop, context=context, eager_start=True
            )
        elif self.reset_contextvars:
            # Opt-in isolation: asyncio can leak context variables between tasks of one connection.
            if sys.version_info >= (3, 11):
                task = self.loop.create_task(coro, context=contextvars.Context())
            else:
                task = contextvars.Context().run(self.loop.create_task, coro)
        else:
            task = self.loop.create_task(coro)
        # The cycle removes its task from the set when run_asgi ends (no done-callback round trip);
        # a task that already finished (eager task factories) is never added.
        cycle.task = task
        cycle.tasks = self.tasks
        if not cycle.finished:
            self.tasks.add(task)

    def _count_body(self, size: int) -> bool:
        """Count ``size`` more body bytes of this request; past ``--limit-request-body``, 413 and False.

        A declared Content-Length is checked against the limit before the app runs; this catches
        chunked bodies, whose size is known only as they arrive.
        """
        self._body_received += size
        assert self.limit_request_body is not None
        if self._body_received > self.limit_request_body:
            self._send_error(413, "Request body too large", log=False)
            return False
        return True

    def request_body_timeout(self) -> None:
        """The app waited ``--timeout-request-body`` for body bytes that did not come: 408, then close."""
        client = "%s:%d" % self.client if self.client else "client"
        self.logger.warning("Request body not received in time from %s.", client)
        self._send_error(408, "Request body not received in time.", log=False)

    def _unsupported_upgrade(self, upgrade: bytes) -> bool:
        """An Upgrade we will not perform: warn, and the app gets the request as plain HTTP (as Uvicorn).

        One exception, answered here (returns True): a WebSocket handshake while WebSockets are wanted
        (``--ws`` is not ``none``) but no library is installed. The app could not complete it, so the
        client gets a clear 400 saying what is missing instead of whatever the app makes of it.
        """
        self.logger.warning("Unsupported upgrade request.")
        if self.ws_protocol_class is None:
            self.logger.warning(NO_WS_LIBRARY_MESSAGE)
            if upgrade == b"websocket" and self.config.ws != "none" and not websocket_library_installed():
                self._send_error(400, WS_NOT_INSTALLED, log=False)
                return True
        return False

    def _send_error(self, status: int, reason: str, log: bool = True) -> None:
        raise NotImplementedError  # pragma: no cover

    def _handle_websocket_upgrade(self, raw_request: bytes) -> None:
        """Hand the connection to the WebSocket protocol, replaying the request head to it."""
        if self.draining:
            # The server is going away: a WebSocket opened now would only be cut off again.
            self._send_error(503, "Service Unavailable", log=False)
            return
        self._trace("Upgrading to WebSocket")
        assert self.ws_protocol_class is not None
        self.connections.discard(self)
        self._report_closed(upgraded_to="websocket")
        self._cancel_header_timer()
        self._unset_keepalive_if_required()
        protocol = self.ws_protocol_class(  # type: ignore[call-arg]
            config=self.config, server_state=self.server_state, app_state=self.app_state
        )
        protocol.connection_id = self.connection_id  # type: ignore[attr-defined]  # events: the same connection
        protocol.connection_made(self.transport)
        protocol.data_received(raw_request)
        self.transport.set_protocol(protocol)

    # Timers
    def _arm_keepalive(self) -> None:
        # One lazily re-armed timer per connection instead of a new timer per response. The timer
        # remembers how many requests the connection had started when it was set; when it fires, a
        # changed count means the connection was used in the meantime and gets another full period.
        # An idle connection therefore closes between one and two timeouts after its last request,
        # never before one.
        if self.timeout_keep_alive_task is None:
            self._keepalive_mark = self._requests
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def _unset_keepalive_if_required(self) -> None:
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None

    def timeout_keep_alive_handler(self) -> None:
        self.timeout_keep_alive_task = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # Busy: the response's completion arms the timer again.
        if self._waiting_for_head():
            return  # The next request's head is arriving: its own deadline (the header timer) runs.
        if self._keepalive_mark != self._requests:
            self._arm_keepalive()
            return
        self._close()

    def _arm_header_timer(self) -> None:
        # One deadline for the whole head, not per packet: a client trickling bytes cannot hold on.
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.timeout_request_header, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _waiting_for_head(self) -> bool:
        """True while part of a request head has arrived and the rest has not."""
        raise NotImplementedError  # pragma: no cover

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return
        if self._waiting_for_head():
            client = "%s:%d" % self.client if self.client else "client"
            self.logger.warning("Request headers not received in time from %s.", client)
            self._send_error(408, "Request headers not received in time.", log=False)
        else:
            self._close()

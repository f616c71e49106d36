"""Prometheus metrics from the event stream: ``--metrics HOST:PORT`` (extra ``pounce-asgi[metrics]``).

``PrometheusMetrics`` is an event handler that turns events into prometheus-client metrics;
``MetricsEndpoint`` serves ``/metrics`` (prometheus-client's own exposition, text or OpenMetrics
by the scraper's ``Accept``) on a listener of its own, never on the app's port, so neither the
app's routes nor the clients of the app ever see it.

Names follow the OpenTelemetry HTTP semantic conventions as Prometheus renders them; Pounce's own
are under ``pounce_``:

=============================================== ========= ==============================================
``http_server_request_duration_seconds``        histogram ``http_request_method``, ``http_response_status_code``,
                                                          ``network_protocol_version``, ``url_scheme``
``http_server_response_body_size_bytes``        histogram the same labels
``http_server_active_requests``                 gauge     ``http_request_method``, ``url_scheme``
``pounce_http_requests_total``                  counter   ``http_request_method``, ``status_class`` (``2xx``),
                                                          ``protocol`` (``http/1.1``, ``h2``, ``h3``)
``pounce_client_disconnects_total``             counter   ``protocol``
``pounce_app_errors_total``                     counter   ``error_type``
``pounce_connections_total``                    counter   ``protocol``
``pounce_open_connections``                     gauge     ``protocol`` (``websocket`` included)
``pounce_websocket_connections``                gauge     open WebSocket sessions
``pounce_websocket_messages_total``             counter   ``direction`` (``received``, ``sent``)
``pounce_http2_stream_resets_total``            counter   ``initiator``
``pounce_workers``                              gauge     ``mode``
``pounce_worker_restarts_total``                counter   ``reason`` (``restart``, ``recycle``, ``replace``)
``pounce_worker_drains_total``                  counter   ``reason`` (``restart``, ``recycle``, ``scale_down``)
=============================================== ========= ==============================================

The first six are per request: the request observer records them through ``recorder()`` (one per
worker) instead of events, for their cost (see ``pounce.observability.request_metrics``); the rest
arrive as events. Methods outside the registered set are counted as ``_OTHER`` (as the conventions
say), so a client cannot grow the label space. One scrape sees the whole server: thread workers share
one handler and one registry (prometheus-client's metrics are thread-safe, and each worker's request
counts are summed at scrape time); process workers write prometheus-client's multiprocess files, which
the supervisor's endpoint reads (see ``pounce.observability.runtime``).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from pounce.observability.events import (
    ConnectionClosed,
    ConnectionOpened,
    Event,
    StreamReset,
    WebSocketAccepted,
    WebSocketClosed,
    WorkerDraining,
    WorkerStarted,
    WorkerStopped,
)
from pounce.observability.request_metrics import (
    DURATION_BUCKETS,
    SIZE_BUCKETS,
    DirectRecorder,
    RequestCollector,
    RequestRecorder,
)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

RESTART_REASONS = frozenset(("restart", "recycle", "replace"))
INSTALL_HINT = "--metrics needs prometheus-client: pip install 'pounce-asgi[metrics]'"


def parse_address(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (``"[::1]:9100"`` for IPv6, ``":9100"`` for all interfaces) as ``(host, port)``."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"{text!r} is not HOST:PORT.")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"{text!r}: the port must be between 1 and 65535.")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 host in brackets, [{host}]:{port}.")
    return (host or "0.0.0.0", port)


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("prometheus_client") is not None


class PrometheusMetrics:
    """The event handler behind ``--metrics``; thread-safe, one per process, shared by its workers."""

    # Request events are not needed: the request observer records per-request series through
    # ``requests`` (see pounce.observability.request_metrics); the bus builds them only for others.
    wants_request_events = False

    def __init__(self, registry: CollectorRegistry | None = None, multiprocess: bool = False) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        self.requests: RequestCollector | DirectRecorder = (
            DirectRecorder(reg) if multiprocess else RequestCollector(reg)
        )
        self.connections_total = Counter(
            "pounce_connections", "Connections served, by protocol.", ("protocol",), registry=reg
        )
        self.open_connections = Gauge(
            "pounce_open_connections", "Open connections, by protocol.", ("protocol",), registry=reg,
            multiprocess_mode="livesum",
        )
        self.websockets = Gauge(
            "pounce_websocket_connections", "Open WebSocket sessions.", registry=reg, multiprocess_mode="livesum"
        )
        self.websocket_messages = Counter(
            "pounce_websocket_messages", "WebSocket messages of closed sessions, by direction.", ("direction",),
            registry=reg,
        )
        self.stream_resets = Counter(
            "pounce_http2_stream_resets", "HTTP/2 streams ended with RST_STREAM.", ("initiator",), registry=reg
        )
        self.workers = Gauge(
            "pounce_workers", "Workers serving.", ("mode",), registry=reg, multiprocess_mode="livesum"
        )
        self.worker_restarts = Counter(
            "pounce_worker_restarts", "Workers started to replace another one.", ("reason",), registry=reg
        )
        self.worker_drains = Counter(
            "pounce_worker_drains", "Workers taken out of service while the server went on.", ("reason",), registry=reg
        )
        # Label children, looked up once per label combination (labels() takes a lock and validates).
        self._children: dict[tuple[Any, ...], Any] = {}
        self._dispatch: dict[type[Event], Callable[[Any], None]] = {
            ConnectionOpened: self._connection_opened,
            ConnectionClosed: self._connection_closed,
            WebSocketAccepted: self._websocket_accepted,
            WebSocketClosed: self._websocket_closed,
            StreamReset: self._stream_reset,
            WorkerStarted: self._worker_started,
            WorkerStopped: self._worker_stopped,
            WorkerDraining: self._worker_draining,
        }

    def __call__(self, event: Event) -> None:
        handler = self._dispatch.get(type(event))
        if handler is not None:
            handler(event)

    def _child(self, metric: Any, *labels: Any) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children.setdefault(key, metric.labels(*labels))
        return child

    def recorder(self) -> RequestRecorder:
        """A new worker's per-request recorder (the request observer calls it)."""
        return self.requests.recorder()

    # -- connections ---------------------------------------------------------------------------

    def _connection_opened(self, event: ConnectionOpened) -> None:
        self._child(self.connections_total, event.protocol).inc()
        self._child(self.open_connections, event.protocol).inc()

    def _connection_closed(self, event: ConnectionClosed) -> None:
        self._child(self.open_connections, event.protocol).dec()

    def _websocket_accepted(self, event: WebSocketAccepted) -> None:
        self.websockets.inc()

    def _websocket_closed(self, event: WebSocketClosed) -> None:
        self.websockets.dec()
        self._child(self.websocket_messages, "received").inc(event.messages_received)
        self._child(self.websocket_messages, "sent").inc(event.messages_sent)

    def _stream_reset(self, event: StreamReset) -> None:
        self._child(self.stream_resets, event.initiator).inc()

    # -- workers -------------------------------------------------------------------------------

    def _worker_started(self, event: WorkerStarted) -> None:
        self._child(self.workers, event.mode).inc()
        if event.reason in RESTART_REASONS:
            self._child(self.worker_restarts, event.reason).inc()

    def _worker_stopped(self, event: WorkerStopped) -> None:
        self._child(self.workers, event.mode).dec()

    def _worker_draining(self, event: WorkerDraining) -> None:
        self._child(self.worker_drains, event.reason).inc()


class _Union:
    """A collector that yields what several registries collect: Pounce's metrics and the app's."""

    def __init__(self, registries: Iterable[Any]) -> None:
        self._registries = tuple(registries)

    def collect(self) -> Iterator[Metric]:
        for registry in self._registries:
            yield from registry.collect()


def in_process_registry(pounce_registry: CollectorRegistry, include_default: bool = True) -> CollectorRegistry:
    """What one process's endpoint serves: Pounce's registry, plus prometheus-client's default one (the app's)."""
    from prometheus_client import REGISTRY, CollectorRegistry

    exposed = CollectorRegistry()
    exposed.register(_Union([pounce_registry, REGISTRY] if include_default else [pounce_registry]))
    return exposed


def multiprocess_registry(directory: str) -> CollectorRegistry:
    """What the process supervisor's endpoint serves: every worker's multiprocess files, summed."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class MetricsEndpoint:
    """``GET /metrics`` on ``(host, port)``, served from a daemon thread until ``close()``."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        from prometheus_client import make_wsgi_app
        from prometheus_client.exposition import ThreadingWSGIServer

        exposition = make_wsgi_app(registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") != "/metrics":
                start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
                return [b"Not Found: metrics are at /metrics\n"]
            return exposition(environ, start_response)  # type: ignore[no-any-return]

        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Server(ThreadingWSGIServer):
            address_family = family

        self.httpd = make_server(host, port, app, Server, handler_class=_QuietHandler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="pounce-metrics", daemon=True)
        self.thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return (str(host), int(port))

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}/metrics" if ":" in host else f"http://{host}:{port}/metrics"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


__all__ = [
    "DURATION_BUCKETS",
    "MetricsEndpoint",
    "PrometheusMetrics",
    "SIZE_BUCKETS",
    "in_process_registry",
    "multiprocess_registry",
    "parse_address",
]

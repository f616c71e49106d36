"""OpenTelemetry tracing: ``--otel`` (extra ``pounce-asgi[otel]``), one SERVER span per request.

The request cycle calls two functions around the app, in the task that runs it::

    traced = tracer.start_request(scope, started=head_parsed)   # the span starts and becomes current
    try:
        await app(scope, receive, send)
    finally:
        traced.end(status, error)                                # the span ends, the context is restored

so spans the app makes while it runs are children of the server span. ``start_request`` continues
the caller's trace from ``traceparent``/``tracestate`` (through the globally configured propagators:
W3C trace context and baggage unless ``OTEL_PROPAGATORS`` says otherwise). Attributes follow the
stable HTTP semantic conventions: ``http.request.method`` (``_OTHER`` plus
``http.request.method_original`` for unknown methods), ``url.path``, ``url.query``, ``url.scheme``,
``network.protocol.name``/``version``, ``server.address``/``server.port`` (from ``Host`` or
``:authority``, else the local address), ``network.peer.address``/``port`` (the connection's peer),
``client.address``/``client.port`` (read when the span ends, so after ``--proxy-headers`` rewrote
the client), ``user_agent.original``, ``http.response.status_code``; a 5xx or an exception sets
the span's status to ERROR and ``error.type``.

The exporter is configured the standard way, by environment variables read by
``configure_tracing()``: ``OTEL_TRACES_EXPORTER`` (default ``otlp``; ``console``; ``none``; several
comma-separated; names are looked up as the SDK's ``opentelemetry_traces_exporter`` entry points, so
``otlp`` needs ``opentelemetry-exporter-otlp``), ``OTEL_EXPORTER_OTLP_ENDPOINT`` (read by that
exporter), ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` (the resource),
``OTEL_TRACES_SAMPLER``. A tracer provider the app (or ``opentelemetry-instrument``) already set is
used as it is.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pounce._types import Scope

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.propagators.textmap import Getter
    from opentelemetry.trace import Span, TracerProvider

logger = logging.getLogger("uvicorn.error")

INSTALL_HINT = "--otel needs OpenTelemetry: pip install 'pounce-asgi[otel]'"
KNOWN_METHODS = frozenset(("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"))
INSTRUMENTATION_NAME = "pounce"
# The longest a stopping server waits for its last spans to be exported.
FLUSH_TIMEOUT = 5.0


def available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("opentelemetry", "opentelemetry.sdk"))


_getter: Getter[Sequence[tuple[bytes, bytes]]] | None = None


def _headers_getter() -> Getter[Sequence[tuple[bytes, bytes]]]:
    """Reads propagation fields from ASGI headers (a list of lower-case byte pairs)."""
    global _getter
    if _getter is None:
        from opentelemetry.propagators.textmap import Getter

        class HeadersGetter(Getter[Sequence[tuple[bytes, bytes]]]):
            def get(self, carrier: Sequence[tuple[bytes, bytes]], key: str) -> list[str] | None:
                wanted = key.lower().encode("latin-1")
                values = [value.decode("latin-1") for name, value in carrier if name == wanted]
                return values or None

            def keys(self, carrier: Sequence[tuple[bytes, bytes]]) -> list[str]:
                return [name.decode("latin-1") for name, _ in carrier]

        _getter = HeadersGetter()
    return _getter


def _host_and_port(value: str) -> tuple[str, int | None]:
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = value.partition(":")
    return host, int(port) if port.isdigit() else None


class TracedRequest:
    """One request's span; ``end()`` it once, in the task that called ``start_request``."""

    __slots__ = ("span", "_token", "_scope", "_ended")

    def __init__(self, span: Span, token: object, scope: Scope) -> None:
        self.span = span
        self._token = token
        self._scope = scope
        self._ended = False

    def end(self, status: int | None = None, error: BaseException | None = None, ended: float | None = None) -> None:
        """End the span (``ended``: a ``time.monotonic()`` reading, default now) and restore the context."""
        if self._ended:
            return
        self._ended = True
        span = self.span
        if not span.is_recording():  # not sampled (OTEL_TRACES_SAMPLER): nothing to add to it
            try:
                _api.context.detach(self._token)
            finally:
                span.end()
            return
        attributes: dict[str, Any] = {}
        client = self._scope.get("client")
        if client:
            attributes["client.address"] = str(client[0])
            attributes["client.port"] = int(client[1])
        if status is not None:
            attributes["http.response.status_code"] = status
        if error is not None:
            span.record_exception(error)
            attributes["error.type"] = type(error).__qualname__
            span.set_status(_api.Status(_api.StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        elif status is not None and status >= 500:
            attributes["error.type"] = str(status)
            span.set_status(_api.Status(_api.StatusCode.ERROR))
        if attributes:
            span.set_attributes(attributes)  # one call: the SDK locks and validates per call
        try:
            _api.context.detach(self._token)
        finally:
            span.end(end_time=_epoch_ns(ended))


class _API:
    """The OpenTelemetry API modules, imported once (an import statement per request costs microseconds)."""

    def __init__(self) -> None:
        from opentelemetry import context, propagate, trace
        from opentelemetry.trace import Status, StatusCode

        self.context = context
        # The parent of a request without trace headers: the root context, never the current one. A
        # request's task is created with a copy of the context of whatever created it, and for a pipelined
        # request (either HTTP/1.1 parser) that is the previous request's task, where its span is current.
        self.root = context.Context()
        self.propagate = propagate
        self.trace = trace
        self.Status = Status
        self.StatusCode = StatusCode


_api: Any = None


def _epoch_ns(monotonic: float | None) -> int | None:
    """A ``time.monotonic()`` reading as the epoch nanoseconds OpenTelemetry wants; None: now."""
    if monotonic is None:
        return None
    return time.time_ns() - int((time.monotonic() - monotonic) * 1e9)


class RequestTracer:
    """Starts the server spans of requests. Thread-safe (the SDK is); one per process is enough."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        from opentelemetry import trace

        import pounce

        global _api
        if _api is None:
            _api = _API()
        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self.provider = provider
        self.tracer = provider.get_tracer(INSTRUMENTATION_NAME, pounce.__version__)
        # The header names the configured propagators read (traceparent, tracestate, baggage by
        # default): a request carrying none of them has no parent to extract, and is spared the work.
        self._carrier_fields = frozenset(field.lower().encode("latin-1") for field in _api.propagate.get_global_textmap().fields)

    def flush(self, timeout: float = FLUSH_TIMEOUT) -> None:
        """Export the spans the provider's processors still hold (a batch processor waits up to 5 s).

        Called when a server stops: a server stopped by SIGTERM re-raises it once shut down, as Uvicorn
        does, which ends the process without running ``atexit`` -- where the SDK would otherwise flush
        -- so the spans of the last requests would be lost. Never raises.
        """
        force_flush = getattr(self.provider, "force_flush", None)  # the SDK's provider has it; the API's not
        if force_flush is None:
            return
        try:
            force_flush(int(timeout * 1000))
        except Exception:  # an exporter failing must not break the shutdown
            logger.warning("Flushing the OpenTelemetry spans failed.", exc_info=True)

    def start_request(self, scope: Scope, started: float | None = None) -> TracedRequest:
        """Start ``scope``'s SERVER span (``started``: the head-parsed ``time.monotonic()``) and make it current."""
        api = _api
        headers: Sequence[tuple[bytes, bytes]] = scope.get("headers", ())
        fields = self._carrier_fields
        parent: Context = api.root
        for name, _ in headers:
            if name in fields:
                parent = api.propagate.extract(headers, getter=_headers_getter())
                break
        attributes = self.attributes(scope, headers)
        method = attributes["http.request.method"]
        span = self.tracer.start_span(
            "HTTP" if method == "_OTHER" else str(method),
            context=parent,
            kind=api.trace.SpanKind.SERVER,
            attributes=attributes,
            start_time=_epoch_ns(started),
        )
        token = api.context.attach(api.trace.set_span_in_context(span, parent))
        return TracedRequest(span, token, scope)

    @staticmethod
    def attributes(scope: Scope, headers: Sequence[tuple[bytes, bytes]]) -> dict[str, Any]:
        """The semantic-convention attributes known when the request starts."""
        raw_method = scope.get("method", "GET")  # a WebSocket scope has none: its handshake is a GET
        method = raw_method if raw_method in KNOWN_METHODS else "_OTHER"
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.path": scope.get("path", "/"),
            "url.scheme": scope.get("scheme", "http"),
            "network.protocol.name": "http",
            "network.protocol.version": scope.get("http_version", "1.1"),
        }
        if method == "_OTHER":
            attributes["http.request.method_original"] = raw_method
        query: bytes = scope.get("query_string", b"")
        if query:
            attributes["url.query"] = query.decode("latin-1")
        authority = None
        user_agent = None
        for name, value in headers:
            if name in (b"host", b":authority") and authority is None:
                authority = value.decode("latin-1")
            elif name == b"user-agent" and user_agent is None:
                user_agent = value.decode("latin-1")
        if authority:
            host, port = _host_and_port(authority)
            attributes["server.address"] = host
            if port is not None:
                attributes["server.port"] = port
        elif scope.get("server"):
            host_name, local_port = scope["server"]
            attributes["server.address"] = str(host_name)
            if local_port is not None:
                attributes["server.port"] = int(local_port)
        peer = scope.get("client")
        if peer:
            attributes["network.peer.address"] = str(peer[0])
            attributes["network.peer.port"] = int(peer[1])
        if user_agent is not None:
            attributes["user_agent.original"] = user_agent
        return attributes


_configure_lock = threading.Lock()
_process_tracer: RequestTracer | None = None


def configure_tracing() -> RequestTracer:
    """This process's request tracer; the first call sets up the SDK from the environment (see above)."""
    global _process_tracer
    with _configure_lock:
        if _process_tracer is not None:
            return _process_tracer
        from opentelemetry import trace

        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            trace.set_tracer_provider(_provider_from_environment())
        _process_tracer = RequestTracer()
        return _process_tracer


def _provider_from_environment() -> TracerProvider:
    from importlib.metadata import entry_points

    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = SDKTracerProvider(resource=Resource.create())
    names = [name.strip() for name in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if name.strip()]
    for name in names:
        if name == "none":
            continue
        found = list(entry_points(group="opentelemetry_traces_exporter", name=name))
        if not found:
            hint = " (pip install opentelemetry-exporter-otlp)" if name.startswith("otlp") else ""
            logger.warning("OTEL_TRACES_EXPORTER names '%s', which is not installed%s; its spans are dropped.", name, hint)
            continue
        exporter_class = found[0].load()
        provider.add_span_processor(BatchSpanProcessor(exporter_class()))
    return provider


__all__ = ["RequestTracer", "TracedRequest", "configure_tracing"]

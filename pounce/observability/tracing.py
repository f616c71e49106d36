"""OpenTelemetry tracing: ``--otel`` (extra ``pounce[otel]``), one SERVER span per request.

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

INSTALL_HINT = "--otel needs OpenTelemetry: pip install 'pounce[otel]'"
KNOWN_METHODS = frozenset(("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"))
INSTRUMENTATION_NAME = "pounce"


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
        from opentelemetry import context
        from opentelemetry.trace import Status, StatusCode

        span = self.span
        client = self._scope.get("client")
        if client:
            span.set_attribute("client.address", str(client[0]))
            span.set_attribute("client.port", int(client[1]))
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        if error is not None:
            span.record_exception(error)
            span.set_attribute("error.type", type(error).__qualname__)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        elif status is not None and status >= 500:
            span.set_attribute("error.type", str(status))
            span.set_status(Status(StatusCode.ERROR))
        try:
            context.detach(self._token)  # type: ignore[arg-type]
        finally:
            span.end(end_time=_epoch_ns(ended))


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

        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self.tracer = provider.get_tracer(INSTRUMENTATION_NAME, pounce.__version__)

    def start_request(self, scope: Scope, started: float | None = None) -> TracedRequest:
        """Start ``scope``'s SERVER span (``started``: the head-parsed ``time.monotonic()``) and make it current."""
        from opentelemetry import context, propagate, trace

        headers: Sequence[tuple[bytes, bytes]] = scope.get("headers", ())
        parent: Context = propagate.extract(headers, getter=_headers_getter())
        attributes = self.attributes(scope, headers)
        method = attributes["http.request.method"]
        span = self.tracer.start_span(
            "HTTP" if method == "_OTHER" else str(method),
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes=attributes,
            start_time=_epoch_ns(started),
        )
        token = context.attach(trace.set_span_in_context(span, parent))
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

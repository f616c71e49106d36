"""Per-request Prometheus metrics, recorded by the request observer rather than through events.

A request's metrics (its duration and response size histograms, the request counter, in-flight
requests, early disconnects, app errors) are what ``--metrics`` costs on every request, so they do not
take the event path: building and dispatching three events per request costs about 7 µs here,
more than the whole budget (8% of a ~40 µs keep-alive request). Instead the request observer
(``pounce.observability.request``) calls a ``RequestRecorder`` of its worker with plain values at the
same points it emits events. Everything that happens once per connection, WebSocket, stream or worker
still reaches ``PrometheusMetrics`` as events.

Two recorders, one interface:

* ``LocalRecorder`` (one server, thread workers): each worker counts into its own plain Python
  accumulator (no lock: only that worker's event-loop thread writes it), and ``RequestCollector``
  sums every worker's accumulator when ``/metrics`` is scraped. A worker that stops hands its counts
  to the collector's retired totals, so a rolling restart loses nothing and the list of accumulators
  stays as long as the list of live workers. On a free-threaded build the workers never contend.
* ``DirectRecorder`` (process workers): prometheus-client's multiprocess metrics, written per request,
  so every sample is in the memory-mapped files at once and a worker killed with SIGKILL loses
  nothing (see ``pounce.observability.runtime``). A scrape can only read those files there.

Both expose the same series, under the names in ``pounce.observability.metrics``.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pounce.observability.events import protocol_for_version

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

# OpenTelemetry's advice for http.server.request.duration.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
SIZE_BUCKETS = (0, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000)
KNOWN_METHODS = frozenset(("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"))
ASGI_PROTOCOL_ERROR = "asgi_protocol"  # pounce_app_errors_total's error_type for an app that broke ASGI

REQUEST_LABELS = ("http_request_method", "http_response_status_code", "network_protocol_version", "url_scheme")
ACTIVE_LABELS = ("http_request_method", "url_scheme")
COUNT_LABELS = ("http_request_method", "status_class", "protocol")

DURATION = ("http_server_request_duration_seconds",
            "Duration of HTTP server requests, from the request head parsed to the last response byte.")
SIZE = ("http_server_response_body_size_bytes", "Size of HTTP server response bodies.")
ACTIVE = ("http_server_active_requests", "Number of active HTTP server requests.")
REQUESTS = ("pounce_http_requests", "HTTP requests answered, by method, status class and protocol.")
DISCONNECTS = ("pounce_client_disconnects", "Requests whose connection ended before the response was complete.")
APP_ERRORS = ("pounce_app_errors", "Requests whose app raised or broke the ASGI protocol.")


ActiveKey = tuple[str, str]  # (method label, scheme) of an in-flight request


def method_label(method: str) -> str:
    """Methods outside the registered set are ``_OTHER`` (as the conventions say): a client cannot grow
    the label space."""
    return method if method in KNOWN_METHODS else "_OTHER"


class _Histograms:
    """One response series: per-bucket counts (not cumulative; the last is +Inf) and sums."""

    __slots__ = ("durations", "duration_sum", "sizes", "size_sum")

    def __init__(self) -> None:
        self.durations = [0] * (len(DURATION_BUCKETS) + 1)
        self.duration_sum = 0.0
        self.sizes = [0] * (len(SIZE_BUCKETS) + 1)
        self.size_sum = 0.0

    def add(self, other: _Histograms) -> None:
        self.durations = [a + b for a, b in zip(self.durations, list(other.durations))]
        self.sizes = [a + b for a, b in zip(self.sizes, list(other.sizes))]
        self.duration_sum += other.duration_sum
        self.size_sum += other.size_sum


class _Counts:
    """What one worker (or all retired ones) counted. Key: (method, status, http_version, scheme)."""

    __slots__ = ("responses", "active", "disconnects", "errors")

    def __init__(self) -> None:
        self.responses: dict[tuple[str, int, str, str], _Histograms] = {}
        self.active: dict[tuple[str, str], int] = {}
        self.disconnects: dict[str, int] = {}
        self.errors: dict[str, int] = {}

    def add(self, other: _Counts) -> None:
        """Fold ``other``'s totals in (not its in-flight requests: they ended with their worker)."""
        for key, series in other.responses.copy().items():
            mine = self.responses.get(key)
            if mine is None:
                mine = self.responses[key] = _Histograms()
            mine.add(series)
        _add_counts(self.disconnects, other.disconnects)
        _add_counts(self.errors, other.errors)


def _add_counts(into: dict[str, int], other: dict[str, int]) -> None:
    for key, value in other.copy().items():
        into[key] = into.get(key, 0) + value


class LocalRecorder:
    """One worker's request metrics, counted in its own event-loop thread (see the module docstring)."""

    __slots__ = ("_counts", "_collector")

    def __init__(self, collector: RequestCollector) -> None:
        self._counts = _Counts()
        self._collector = collector

    def started(self, method: str, scheme: str) -> ActiveKey:
        """A request is in flight; returns what its end must hand back (the scope may change meanwhile:
        a proxy-headers rewrite of the scheme must not unbalance the gauge)."""
        active = self._counts.active
        key = (method if method in KNOWN_METHODS else "_OTHER", scheme)
        active[key] = active.get(key, 0) + 1
        return key

    def completed(
        self, active_key: ActiveKey, method: str, status: int, http_version: str, scheme: str, seconds: float,
        body_bytes: int,
    ) -> None:
        counts = self._counts
        key = (method if method in KNOWN_METHODS else "_OTHER", status, http_version, scheme)
        series = counts.responses.get(key)
        if series is None:
            series = counts.responses[key] = _Histograms()
        series.durations[bisect_left(DURATION_BUCKETS, seconds)] += 1
        series.duration_sum += seconds
        series.sizes[bisect_left(SIZE_BUCKETS, body_bytes)] += 1
        series.size_sum += body_bytes
        counts.active[active_key] = counts.active.get(active_key, 0) - 1

    def disconnected(self, active_key: ActiveKey, http_version: str) -> None:
        counts = self._counts
        protocol = protocol_for_version(http_version)
        counts.disconnects[protocol] = counts.disconnects.get(protocol, 0) + 1
        counts.active[active_key] = counts.active.get(active_key, 0) - 1

    def failed(self, error_type: str | None) -> None:
        errors = self._counts.errors
        key = error_type or ASGI_PROTOCOL_ERROR
        errors[key] = errors.get(key, 0) + 1

    def retire(self) -> None:
        """The worker stopped: its totals join the collector's retired ones (call once, after its loop ended)."""
        self._collector.retire(self)


class RequestCollector:
    """A prometheus-client collector summing the accumulators of one process's workers at scrape time."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._lock = threading.Lock()
        self._live: list[LocalRecorder] = []
        self._retired = _Counts()
        self._created = time.time()
        registry.register(self)

    def recorder(self) -> LocalRecorder:
        """A new worker's recorder, counted in every scrape until it retires."""
        recorder = LocalRecorder(self)
        with self._lock:
            self._live.append(recorder)
        return recorder

    def retire(self, recorder: LocalRecorder) -> None:
        with self._lock:
            if recorder in self._live:
                self._live.remove(recorder)
                self._retired.add(recorder._counts)

    def _snapshot(self) -> tuple[_Counts, dict[tuple[str, str], int]]:
        total = _Counts()
        active: dict[tuple[str, str], int] = {}
        with self._lock:
            total.add(self._retired)
            for recorder in self._live:
                total.add(recorder._counts)
                for key, value in recorder._counts.active.copy().items():
                    active[key] = active.get(key, 0) + value
        return total, active

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
        from prometheus_client.utils import floatToGoString

        total, active = self._snapshot()
        durations = HistogramMetricFamily(*DURATION, labels=REQUEST_LABELS)
        sizes = HistogramMetricFamily(*SIZE, labels=REQUEST_LABELS)
        requests = CounterMetricFamily(*REQUESTS, labels=COUNT_LABELS, created=self._created)
        by_class: dict[tuple[str, str, str], int] = {}
        for (method, status, version, scheme), series in sorted(total.responses.items()):
            labels = [method, str(status), version, scheme]
            durations.add_metric(labels, _buckets(DURATION_BUCKETS, series.durations, floatToGoString),
                                 series.duration_sum)
            sizes.add_metric(labels, _buckets(SIZE_BUCKETS, series.sizes, floatToGoString), series.size_sum)
            key = (method, f"{status // 100}xx", protocol_for_version(version))
            by_class[key] = by_class.get(key, 0) + sum(series.durations)
        for labels3, count in sorted(by_class.items()):
            requests.add_metric(labels3, count, created=self._created)
        gauge = GaugeMetricFamily(*ACTIVE, labels=ACTIVE_LABELS)
        for labels2, value in sorted(active.items()):
            gauge.add_metric(labels2, value)
        disconnects = CounterMetricFamily(*DISCONNECTS, labels=("protocol",))
        for protocol, count in sorted(total.disconnects.items()):
            disconnects.add_metric([protocol], count, created=self._created)
        errors = CounterMetricFamily(*APP_ERRORS, labels=("error_type",))
        for error_type, count in sorted(total.errors.items()):
            errors.add_metric([error_type], count, created=self._created)
        yield from (durations, sizes, gauge, requests, disconnects, errors)


def _buckets(bounds: tuple[float, ...], counts: list[int], go: Any) -> list[tuple[str, float]]:
    cumulative = 0
    out: list[tuple[str, float]] = []
    for bound, count in zip(bounds, counts):
        cumulative += count
        out.append((go(bound), cumulative))
    out.append(("+Inf", cumulative + counts[-1]))
    return out


class DirectRecorder:
    """Process workers: the same series as prometheus-client multiprocess metrics, written per request."""

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.duration = Histogram(*DURATION, REQUEST_LABELS, buckets=DURATION_BUCKETS, registry=registry)
        self.size = Histogram(*SIZE, REQUEST_LABELS, buckets=SIZE_BUCKETS, registry=registry)
        # "livesum": the values of exited workers are dropped, the live ones summed.
        self.active = Gauge(*ACTIVE, ACTIVE_LABELS, registry=registry, multiprocess_mode="livesum")
        self.requests = Counter(*REQUESTS, COUNT_LABELS, registry=registry)
        self.disconnects = Counter(*DISCONNECTS, ("protocol",), registry=registry)
        self.errors = Counter(*APP_ERRORS, ("error_type",), registry=registry)
        # Label children, looked up once per label combination (labels() takes a lock and validates).
        self._children: dict[tuple[Any, ...], tuple[Any, Any, Any]] = {}
        self._actives: dict[tuple[str, str], Any] = {}

    def recorder(self) -> DirectRecorder:
        return self  # one worker per process

    def _active(self, key: ActiveKey) -> Any:
        child = self._actives.get(key)
        if child is None:
            child = self._actives[key] = self.active.labels(*key)
        return child

    def started(self, method: str, scheme: str) -> ActiveKey:
        key = (method_label(method), scheme)
        self._active(key).inc()
        return key

    def completed(
        self, active_key: ActiveKey, method: str, status: int, http_version: str, scheme: str, seconds: float,
        body_bytes: int,
    ) -> None:
        key = (method_label(method), status, http_version, scheme)
        children = self._children.get(key)
        if children is None:
            label, _, _, _ = key
            children = self._children[key] = (
                self.duration.labels(label, status, http_version, scheme),
                self.size.labels(label, status, http_version, scheme),
                self.requests.labels(label, f"{status // 100}xx", protocol_for_version(http_version)),
            )
        duration, size, count = children
        duration.observe(seconds)
        size.observe(body_bytes)
        count.inc()
        self._active(active_key).dec()

    def disconnected(self, active_key: ActiveKey, http_version: str) -> None:
        self.disconnects.labels(protocol_for_version(http_version)).inc()
        self._active(active_key).dec()

    def failed(self, error_type: str | None) -> None:
        self.errors.labels(error_type or ASGI_PROTOCOL_ERROR).inc()

    def retire(self) -> None:
        pass  # every sample is in the multiprocess files already


RequestRecorder = LocalRecorder | DirectRecorder

__all__ = [
    "DURATION_BUCKETS",
    "DirectRecorder",
    "KNOWN_METHODS",
    "LocalRecorder",
    "RequestCollector",
    "RequestRecorder",
    "SIZE_BUCKETS",
    "method_label",
]

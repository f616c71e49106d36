"""Who runs what for ``--metrics`` and ``--otel``, per process, in every worker mode.

* One ``Server`` without a supervisor (and each ``--reload`` child): the server owns a
  ``Telemetry`` with the metrics handler, the tracer and the ``/metrics`` endpoint.
* Thread workers: the thread supervisor owns one ``Telemetry`` and hands it to every worker, so all
  threads share one handler, one registry and one endpoint.
* Process workers: **prometheus-client's multiprocess mode**. The supervisor creates a temporary
  directory, exports it as ``PROMETHEUS_MULTIPROC_DIR`` to the children and serves ``/metrics``
  from ``MultiProcessCollector`` over it; each child's handler writes its samples to its own
  memory-mapped files there. Chosen over aggregation in the supervisor because every increment is
  on disk at once: a worker that is replaced, recycled or killed with SIGKILL loses nothing (its
  counters and histograms stay in the sum), the supervisor needs no sample channel or merge code of
  its own and never has to trust a dying worker to send a last report. When a worker exits the
  supervisor calls ``mark_process_dead`` so its live gauges (``livesum``) leave the sum. The app's
  own prometheus-client metrics in the workers land in the same directory and show in the same
  scrape.

The tracer is one per process too (``configure_tracing``); span processors flush at exit.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pounce.observability.bus import EventHandler
from pounce.observability.events import StartReason, WorkerMode

if TYPE_CHECKING:
    from pounce.observability.metrics import MetricsEndpoint, PrometheusMetrics
    from pounce.observability.request_metrics import RequestRecorder
    from pounce.observability.tracing import RequestTracer

logger = logging.getLogger("uvicorn.error")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
STARTUP_FAILURE = 3


@dataclass(frozen=True)
class WorkerIdentity:
    """Which worker a ``Server`` is, as its events report it."""

    worker_id: int
    mode: WorkerMode
    generation: int = 0
    start_reason: StartReason = "initial"


STANDALONE = WorkerIdentity(worker_id=0, mode="single")


class Telemetry:
    """The built-in subscribers and the tracer one process shares among its workers, and what to close."""

    def __init__(
        self,
        metrics: PrometheusMetrics | None = None,
        tracer: RequestTracer | None = None,
        endpoint: MetricsEndpoint | None = None,
    ) -> None:
        self.metrics = metrics
        self.tracer = tracer
        self.endpoint = endpoint

    @property
    def handlers(self) -> tuple[EventHandler, ...]:
        return (self.metrics,) if self.metrics is not None else ()

    def request_recorder(self) -> RequestRecorder | None:
        """A worker's per-request metrics recorder (one per worker, which retires it when it stops)."""
        return self.metrics.recorder() if self.metrics is not None else None

    @classmethod
    def in_process(cls, metrics_address: tuple[str, int] | None, otel: bool, *, serve: bool = True) -> Telemetry:
        """For a process whose workers all run here (one server, thread workers); serves /metrics if asked."""
        metrics = endpoint = None
        if metrics_address is not None:
            from pounce.observability.metrics import MetricsEndpoint, PrometheusMetrics, in_process_registry

            metrics = PrometheusMetrics()
            if serve:
                endpoint = _bind(metrics_address, lambda: in_process_registry(metrics.registry))
        return cls(metrics=metrics, tracer=_tracer(otel), endpoint=endpoint)

    @classmethod
    def process_worker(cls, metrics_dir: str | None, otel: bool) -> Telemetry:
        """For one worker process: its samples go to the supervisor's multiprocess directory."""
        metrics = None
        if metrics_dir is not None:
            os.environ[MULTIPROC_ENV] = metrics_dir
            if "prometheus_client.values" in sys.modules:  # imported before the variable was set
                from prometheus_client import values

                values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
            from pounce.observability.metrics import PrometheusMetrics

            metrics = PrometheusMetrics(multiprocess=True)
        return cls(metrics=metrics, tracer=_tracer(otel))

    def close(self) -> None:
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None


def _tracer(otel: bool) -> RequestTracer | None:
    if not otel:
        return None
    from pounce.observability.tracing import configure_tracing

    return configure_tracing()


def _bind(address: tuple[str, int], registry_factory: object) -> MetricsEndpoint:
    from pounce.observability.metrics import MetricsEndpoint

    assert callable(registry_factory)
    host, port = address
    try:
        endpoint = MetricsEndpoint(host, port, registry_factory())
    except OSError as exc:
        logger.error("Cannot serve metrics on %s:%d: %s", host, port, exc)
        sys.exit(STARTUP_FAILURE)
    logger.info("Metrics on %s", endpoint.url)
    return endpoint


class MultiprocessMetrics:
    """The process supervisor's side of ``--metrics``: the directory, the endpoint, dead workers' cleanup."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.directory = tempfile.mkdtemp(prefix="pounce-metrics-")
        self._previous_env = os.environ.get(MULTIPROC_ENV)
        # Inherited by the children at spawn, so the app's own metrics there are multiprocess too.
        os.environ[MULTIPROC_ENV] = self.directory
        try:
            from pounce.observability.metrics import multiprocess_registry

            directory = self.directory
            self.endpoint: MetricsEndpoint | None = _bind(address, lambda: multiprocess_registry(directory))
        except BaseException:
            self._cleanup()
            raise

    def worker_exited(self, pid: int) -> None:
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(pid, self.directory)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None
        self._cleanup()

    def _cleanup(self) -> None:
        if self._previous_env is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = self._previous_env
        shutil.rmtree(self.directory, ignore_errors=True)


def addresses_of(sockets: Sequence[object], tls: bool) -> tuple[str, ...]:
    """``ServerStarted.addresses`` for listening sockets."""
    import socket as socket_module

    scheme = "https" if tls else "http"
    found: list[str] = []
    for sock in sockets:
        # Plain sockets (bound by a supervisor) or asyncio's TransportSocket wrappers.
        try:
            name = sock.getsockname()  # type: ignore[attr-defined]
            family = sock.family  # type: ignore[attr-defined]
        except (AttributeError, OSError):
            continue
        if family == getattr(socket_module, "AF_UNIX", None):
            found.append(f"unix:{name}")
        elif family == socket_module.AF_INET6:
            found.append(f"{scheme}://[{name[0]}]:{name[1]}")
        else:
            found.append(f"{scheme}://{name[0]}:{name[1]}")
    return tuple(found)


__all__ = ["MULTIPROC_ENV", "MultiprocessMetrics", "STANDALONE", "Telemetry", "WorkerIdentity", "addresses_of"]

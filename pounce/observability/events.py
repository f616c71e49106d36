"""The typed events Pounce emits: one frozen, slotted dataclass per thing that happens.

Every event has ``time`` -- ``time.monotonic()`` when it happened, the event loop's own clock
(``loop.time()``), system-wide on Linux and macOS so events of process workers on one host compare --
and ``worker_id``, the worker that emitted it (0 for a server run without a supervisor; supervised
workers are numbered from 1, a replacement gets a new number). Request-scoped events carry
``connection_id`` and ``request_id`` (both counted per worker from 1), so a subscriber can correlate
them without keeping state: ``(worker_id, request_id)`` is unique within one server run.

Order and pairing, the guarantees a subscriber can build on:

* a worker: ``WorkerStarted``, ``ServerStarted``, ... [``WorkerDraining``], ``ServerStopping``,
  ``WorkerStopped`` (the worker's last event, also after a failed startup);
* a connection: ``ConnectionOpened`` ... ``ConnectionClosed``, both or neither (a connection opened
  before anyone subscribed is never reported closed). An upgrade to WebSocket closes the HTTP/1.1
  connection (``upgraded_to="websocket"``) and opens a ``"websocket"`` one with the same id;
* a request: ``RequestStarted``, ``ResponseStarted``, then exactly one of ``ResponseCompleted`` or
  ``ClientDisconnected``. ``RequestFailed`` (the app raised or broke the ASGI protocol) is extra: it
  comes before the 500's ``ResponseCompleted`` when Pounce could answer, before ``ClientDisconnected``
  when the response had started and Pounce cut it off, and after ``ClientDisconnected`` when the app
  failed once the client had gone;
* a WebSocket: ``WebSocketAccepted`` ... ``WebSocketClosed``, or ``WebSocketRejected`` alone.

Events hold references, not copies (``RequestStarted.scope`` is the dict the app gets): handlers
read them and must not modify them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar, Union

from pounce._types import Scope

WorkerMode = Literal["single", "thread", "process"]
# Why a worker was started: the first ones, a SIGHUP rolling restart, --limit-max-requests, after the
# previous one died or stopped answering, or SIGTTIN.
StartReason = Literal["initial", "restart", "recycle", "replace", "scale_up"]
# Why a supervisor took a worker out of service while the server goes on (a whole-server stop is
# ServerStopping alone).
DrainReason = Literal["restart", "recycle", "scale_down"]
ProtocolName = Literal["http/1.1", "h2", "h3", "websocket"]
Initiator = Literal["client", "server"]
# (host, port) as the ASGI scope has it.
Address = tuple[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """What every event has."""

    time: float
    worker_id: int


# -- workers and servers -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerStarted(Event):
    """A worker's event loop runs; its app's lifespan startup comes next."""

    mode: WorkerMode
    generation: int  # rolling restarts (SIGHUP) before this worker started
    pid: int
    reason: StartReason


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerStarted(Event):
    """The worker's server accepts connections (after lifespan startup)."""

    addresses: tuple[str, ...]  # "http://127.0.0.1:8000", "https://[::1]:8443", "unix:/run/app.sock"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerDraining(Event):
    """The supervisor takes this worker out of service while the server goes on; ServerStopping follows."""

    mode: WorkerMode
    generation: int
    reason: DrainReason


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerStopping(Event):
    """The worker's server stopped accepting; its open connections finish, then lifespan shutdown runs."""

    open_connections: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerStopped(Event):
    """The worker is done (after lifespan shutdown, or after a startup that failed): its last event."""

    mode: WorkerMode
    generation: int
    requests_served: int


# -- connections ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionOpened(Event):
    """A connection is served under ``protocol`` (for --http2, once ALPN or the preface decided)."""

    connection_id: int
    protocol: ProtocolName
    peer: Address | None  # None for UNIX sockets
    tls: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed(Event):
    connection_id: int
    protocol: ProtocolName
    requests_served: int
    # "websocket" when the connection was not closed but handed to the WebSocket protocol.
    upgraded_to: ProtocolName | None = None


# -- requests ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestEvent(Event):
    """What every request-scoped event has."""

    connection_id: int
    request_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestStarted(RequestEvent):
    """A request head was parsed; the app is about to be called."""

    method: str
    path: str  # as in the scope: decoded, root_path included
    http_version: str  # "1.0", "1.1", "2", "3"
    stream_id: int | None  # HTTP/2 and HTTP/3; None for HTTP/1.x
    scope: Scope  # the app's scope: headers, query, client (rewritten by --proxy-headers in place)


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseStarted(RequestEvent):
    """The app sent ``http.response.start``."""

    status: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseCompleted(RequestEvent):
    """The last byte of the response was handed to the connection. A request's end (or ClientDisconnected)."""

    status: int
    body_bytes: int  # response body bytes sent (none for HEAD, 1xx, 204, 304: the app's body is dropped)
    queue_seconds: float  # head parsed -> app called
    first_byte_seconds: float  # app called -> first response byte handed to the connection
    total_seconds: float  # head parsed -> last response byte
    request: RequestStarted


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientDisconnected(RequestEvent):
    """The connection (or stream) ended before the response was complete. A request's end."""

    status: int | None  # of the response that had started; None if none had
    body_bytes: int  # response body bytes sent before that
    request: RequestStarted

    @property
    def response_started(self) -> bool:
        return self.status is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestFailed(RequestEvent):
    """The app raised, or broke the ASGI protocol (returned without a response, or with a value)."""

    exception_type: str | None  # "ValueError", "myapp.errors.Timeout"; None when nothing was raised
    error: BaseException | None
    message: str  # what Pounce logged: "Exception in ASGI application", ...
    sent_500: bool  # Pounce answered with a 500 (False: the response had started, it was cut off)
    request: RequestStarted


# -- WebSockets and HTTP/2 streams ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSocketAccepted(RequestEvent):
    path: str
    subprotocol: str | None
    scope: Scope


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSocketRejected(RequestEvent):
    """The handshake was refused: the app closed before accepting, or Pounce answered it (400, 503)."""

    path: str
    status: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSocketClosed(RequestEvent):
    close_code: int  # 1006 when the connection was lost without a close frame
    initiator: Initiator
    messages_received: int
    messages_sent: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamReset(Event):
    """An HTTP/2 stream ended with RST_STREAM."""

    connection_id: int
    stream_id: int
    request_id: int | None  # None for a stream reset before its request started
    error_code: int  # RFC 9113 §7: 0x8 CANCEL, 0x7 REFUSED_STREAM, ...
    initiator: Initiator


AnyEvent = Union[
    WorkerStarted,
    ServerStarted,
    WorkerDraining,
    ServerStopping,
    WorkerStopped,
    ConnectionOpened,
    ConnectionClosed,
    RequestStarted,
    ResponseStarted,
    ResponseCompleted,
    ClientDisconnected,
    RequestFailed,
    WebSocketAccepted,
    WebSocketRejected,
    WebSocketClosed,
    StreamReset,
]

EVENT_TYPES: tuple[type[Event], ...] = (
    WorkerStarted,
    ServerStarted,
    WorkerDraining,
    ServerStopping,
    WorkerStopped,
    ConnectionOpened,
    ConnectionClosed,
    RequestStarted,
    ResponseStarted,
    ResponseCompleted,
    ClientDisconnected,
    RequestFailed,
    WebSocketAccepted,
    WebSocketRejected,
    WebSocketClosed,
    StreamReset,
)

REQUEST_END_TYPES: tuple[type[Event], ...] = (ResponseCompleted, ClientDisconnected)


E = TypeVar("E", bound=Event)


def fast_constructor(cls: type[E]) -> Callable[..., E]:
    """A positional constructor for ``cls`` that sets its slots directly: the same frozen object as
    ``cls(**fields)``, for about a third of the cost (a frozen dataclass's keyword-only ``__init__`` goes
    through ``object.__setattr__`` per field). Arguments in field order, every field given. For the
    protocols' hot path (``pounce.observability.hooks``); everyone else uses the class itself.
    """
    names = [field.name for field in dataclasses.fields(cls)]
    namespace: dict[str, object] = {"_new": object.__new__, "_cls": cls}
    lines = [f"def make({', '.join(names)}):", "    self = _new(_cls)"]
    for index, name in enumerate(names):
        namespace[f"_set{index}"] = getattr(cls, name).__set__  # the slot's member descriptor
        lines.append(f"    _set{index}(self, {name})")
    lines.append("    return self")
    local: dict[str, Callable[..., E]] = {}
    exec("\n".join(lines), namespace, local)
    make = local["make"]
    make.__qualname__ = f"{cls.__name__}.fast"
    return make


def exception_type_name(exc: BaseException) -> str:
    """``RequestFailed.exception_type`` for ``exc``: the class name, with its module unless a builtin."""
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def protocol_for_version(http_version: str) -> ProtocolName:
    """The connection protocol a request with this ``http_version`` travels on."""
    if http_version == "2":
        return "h2"
    if http_version == "3":
        return "h3"
    return "http/1.1"


__all__ = [
    "Address",
    "AnyEvent",
    "ClientDisconnected",
    "ConnectionClosed",
    "ConnectionOpened",
    "DrainReason",
    "EVENT_TYPES",
    "Event",
    "Initiator",
    "ProtocolName",
    "REQUEST_END_TYPES",
    "RequestEvent",
    "RequestFailed",
    "RequestStarted",
    "ResponseCompleted",
    "ResponseStarted",
    "ServerStarted",
    "ServerStopping",
    "StartReason",
    "StreamReset",
    "WebSocketAccepted",
    "WebSocketClosed",
    "WebSocketRejected",
    "WorkerDraining",
    "WorkerMode",
    "WorkerStarted",
    "WorkerStopped",
    "exception_type_name",
    "fast_constructor",
    "protocol_for_version",
]

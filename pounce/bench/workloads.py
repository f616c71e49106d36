"""The built-in workloads, and the one made of a user's APP: what to request, and what a right answer is."""

from __future__ import annotations

import dataclasses
from typing import Sequence

from pounce.bench import apps
from pounce.bench.machine import UsageError
from pounce.bench.servers import Probe

APPS_MODULE = "pounce_bench_apps"  # the name apps.py is copied to for the servers
H2_STREAMS = 10  # concurrent streams per HTTP/2 connection
WS_WINDOW = 16  # messages in flight per WebSocket connection (see pounce.bench.native)


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    app: str  # "module:attr"
    protocol: str  # http1 | http2 | ws
    description: str
    method: str = "GET"
    path: str = "/"
    body: bytes = b""
    expected_body: bytes | None = None  # checked once per server start; None: any 2xx body
    chunks: int = 0  # stream: body messages per response, for time per chunk

    @property
    def probe(self) -> Probe:
        if self.protocol == "ws":  # the echo app answers plain HTTP too
            return Probe("GET", "/", b"", False, apps.WS_HTTP_BODY)
        return Probe(self.method, self.path, self.body, self.protocol == "http2", self.expected_body)

    @property
    def in_flight_per_connection(self) -> int:
        return {"http2": H2_STREAMS, "ws": WS_WINDOW}.get(self.protocol, 1)

    def connections(self, in_flight: int) -> int:
        """``--connections`` is requests in flight: HTTP/2 and WebSocket carry several on each connection."""
        return max(1, in_flight // self.in_flight_per_connection)

    def over_http2(self) -> Workload:
        if self.protocol != "http1":
            return self
        return dataclasses.replace(self, protocol="http2", description=self.description + " over HTTP/2")


def _builtin(name: str, attr: str, protocol: str, description: str, **kw: object) -> Workload:
    return Workload(name, f"{APPS_MODULE}:{attr}", protocol, description, **kw)  # type: ignore[arg-type]


UPLOAD = b"x" * 2**20
ECHO = b"x" * 1024

WORKLOADS: dict[str, Workload] = {w.name: w for w in (
    _builtin("hello", "hello", "http1", "GET, 13-byte text/plain", expected_body=apps.HELLO_BODY),
    _builtin("json", "json_app", "http1", "GET, small JSON serialised per request", expected_body=apps.JSON_BODY),
    _builtin("echo-1k", "echo", "http1", "POST 1 KiB, echoed back", method="POST", body=ECHO, expected_body=ECHO),
    _builtin("stream", "stream", "http1", f"GET, {apps.STREAM_CHUNKS} streamed chunks of 1 KiB",
             expected_body=apps.STREAM_CHUNK * apps.STREAM_CHUNKS, chunks=apps.STREAM_CHUNKS),
    _builtin("download-1m", "download", "http1", "GET, 1 MiB body", expected_body=apps.DOWNLOAD_BODY),
    _builtin("upload-1m", "upload", "http1", "POST 1 MiB, read whole, length answered", method="POST",
             body=UPLOAD, expected_body=str(len(UPLOAD)).encode()),
    _builtin("ws-echo", "ws_echo", "ws", f"WebSocket echo of 32-byte text messages, {WS_WINDOW} in flight per "
             "connection", path="/echo"),
    _builtin("h2", "hello", "http2", f"HTTP/2 hello, {H2_STREAMS} streams per connection",
             expected_body=apps.HELLO_BODY),
)}


def parse_workloads(text: str) -> list[Workload]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown or not names:
        raise UsageError(f"unknown workload {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(WORKLOADS)}")
    return [WORKLOADS[n] for n in dict.fromkeys(names)]


def app_workload(app: str, *, method: str, path: str, body: bytes, http: str) -> Workload:
    if not path.startswith("/"):
        raise UsageError(f"--path must start with '/', not {path!r}")
    return Workload("app", app, "http2" if http == "2" else "http1", f"{method} {path} of {app}",
                    method=method.upper(), path=path, body=body)


def with_http(workloads: Sequence[Workload], http: str) -> list[Workload]:
    return [w.over_http2() if http == "2" else w for w in workloads]

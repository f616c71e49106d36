"""The access log: named-field line formats (``--access-log-format``) and the subscriber that writes it.

A format is text with ``{field}`` placeholders; ``{{`` and ``}}`` are literal braces. Fields:

============== ==================================================================================
``client``     the client as ``host:port`` (after ``--proxy-headers``), as in Uvicorn's line
``client_host`` the client's host alone
``method``     ``GET``
``path``       the path, percent-encoded as Uvicorn's line shows it
``query``      the query string, without ``?``
``target``     path and ``?query`` (the request target)
``request_line`` ``GET /a?b HTTP/1.1``
``http_version`` ``1.1``, ``2``
``protocol``   ``HTTP/1.1``, ``HTTP/2``
``scheme``     ``http``, ``https``
``status``     ``200``
``status_phrase`` ``OK``
``bytes``      response body bytes sent
``duration``   seconds from the request head parsed to the last response byte (``0.001234``)
``duration_ms`` the same in milliseconds (``1.234``)
``user_agent`` the ``user-agent`` request header
``referer``    the ``referer`` request header
``request_id`` Pounce's id of the request, ``<worker_id>-<request_id>`` of its events
``worker_id``  the worker that served it
``header.NAME`` any request header, by case-insensitive name (``{header.x-request-id}``); repeated
               fields are joined with ``, ``
============== ==================================================================================

A value that is not known is ``-`` (a missing header; ``bytes``, ``duration`` and the headers on
records that carry only Uvicorn's five arguments). Unknown fields are an error when the format is
parsed, at startup.

Records keep Uvicorn's message and five arguments (``'%s - "%s %s HTTP/%s" %d'``), so a
``--log-config`` written for Uvicorn formats them unchanged; the subscriber adds the
``ResponseCompleted`` event as ``record.pounce_response`` for the formatters that know more.
"""

from __future__ import annotations

import http
import logging
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pounce.observability.events import ClientDisconnected, Event, ResponseCompleted

# The record attribute holding the event (``extra={RECORD_ATTRIBUTE: event}``): a ResponseCompleted, or
# the ClientDisconnected of a response that had started.
RECORD_ATTRIBUTE = "pounce_response"
UVICORN_MESSAGE = '%s - "%s %s HTTP/%s" %d'
MISSING = "-"


@dataclass(frozen=True, slots=True)
class AccessEntry:
    """The fields of one access-log line, from an event or from Uvicorn's record arguments."""

    client: str
    method: str
    path: str  # percent-encoded
    query: str
    http_version: str
    status: int
    scheme: str | None = None
    body_bytes: int | None = None
    duration: float | None = None
    headers: Sequence[tuple[bytes, bytes]] = ()
    request_id: str | None = None
    worker_id: int | None = None

    @classmethod
    def from_event(cls, event: ResponseCompleted | ClientDisconnected) -> AccessEntry:
        scope = event.request.scope
        client = scope.get("client")
        query: bytes = scope.get("query_string", b"")
        return cls(
            client="%s:%d" % (client[0], client[1]) if client else "",
            method=event.request.method,
            path=urllib.parse.quote(scope.get("path", event.request.path)),
            query=query.decode("latin-1"),
            http_version=event.request.http_version,
            status=event.status or 0,
            scheme=scope.get("scheme"),
            body_bytes=event.body_bytes,
            duration=event.total_seconds if isinstance(event, ResponseCompleted) else event.time - event.request.time,
            headers=scope.get("headers", ()),
            request_id=f"{event.worker_id}-{event.request_id}",
            worker_id=event.worker_id,
        )

    @classmethod
    def from_uvicorn_args(cls, args: Sequence[Any]) -> AccessEntry | None:
        """From ``(client_addr, method, full_path, http_version, status_code)``; None if they are not that."""
        if len(args) != 5:
            return None
        client, method, full_path, http_version, status = args
        try:
            status_code = int(status)
        except (TypeError, ValueError):
            return None
        path, _, query = str(full_path).partition("?")
        return cls(str(client), str(method), path, query, str(http_version), status_code)

    @classmethod
    def from_record(cls, record: logging.LogRecord) -> AccessEntry | None:
        event = record.__dict__.get(RECORD_ATTRIBUTE)
        if isinstance(event, (ResponseCompleted, ClientDisconnected)):
            return cls.from_event(event)
        args = record.args
        return cls.from_uvicorn_args(args) if isinstance(args, tuple) else None

    def header(self, name: str) -> str | None:
        """The request header ``name`` (lower-case), repeated fields joined with ``, ``; None if absent."""
        wanted = name.encode("latin-1")
        values = [value.decode("latin-1") for key, value in self.headers if key.lower() == wanted]
        return ", ".join(values) if values else None

    @property
    def target(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path

    @property
    def request_line(self) -> str:
        return f"{self.method} {self.target} HTTP/{self.http_version}"

    def fields(self) -> dict[str, Any]:
        """The known fields as a dict (what ``--log-format json`` writes for an access record)."""
        fields: dict[str, Any] = {
            "client": self.client,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "http_version": self.http_version,
            "protocol": f"HTTP/{self.http_version}",
        }
        if self.scheme is not None:
            fields["scheme"] = self.scheme
        if self.body_bytes is not None:
            fields["bytes"] = self.body_bytes
        if self.duration is not None:
            fields["duration"] = round(self.duration, 6)
        if self.headers:
            for key, name in (("user_agent", "user-agent"), ("referer", "referer")):
                value = self.header(name)
                if value is not None:
                    fields[key] = value
        if self.request_id is not None:
            fields["request_id"] = self.request_id
        if self.worker_id is not None:
            fields["worker_id"] = self.worker_id
        return fields


def _status_phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def _or_missing(value: object) -> str:
    return MISSING if value is None else str(value)


_FIELDS: dict[str, Callable[[AccessEntry], str]] = {
    "client": lambda e: e.client or MISSING,
    "client_host": lambda e: e.client.rpartition(":")[0] or MISSING,
    "method": lambda e: e.method,
    "path": lambda e: e.path,
    "query": lambda e: e.query,
    "target": lambda e: e.target,
    "request_line": lambda e: e.request_line,
    "http_version": lambda e: e.http_version,
    "protocol": lambda e: f"HTTP/{e.http_version}",
    "scheme": lambda e: _or_missing(e.scheme),
    "status": lambda e: str(e.status),
    "status_phrase": lambda e: _status_phrase(e.status),
    "bytes": lambda e: _or_missing(e.body_bytes),
    "duration": lambda e: MISSING if e.duration is None else f"{e.duration:.6f}",
    "duration_ms": lambda e: MISSING if e.duration is None else f"{e.duration * 1000:.3f}",
    "user_agent": lambda e: _or_missing(e.header("user-agent")),
    "referer": lambda e: _or_missing(e.header("referer")),
    "request_id": lambda e: _or_missing(e.request_id),
    "worker_id": lambda e: _or_missing(e.worker_id),
}
FIELD_NAMES: tuple[str, ...] = tuple(_FIELDS) + ("header.NAME",)


def _header_field(name: str) -> Callable[[AccessEntry], str]:
    def get(entry: AccessEntry) -> str:
        return _or_missing(entry.header(name))

    return get


class AccessLogFormat:
    """A parsed ``--access-log-format``: ``AccessLogFormat("{client} {status}").render(entry)``."""

    __slots__ = ("text", "_parts")

    def __init__(self, text: str) -> None:
        self.text = text
        self._parts: tuple[str | Callable[[AccessEntry], str], ...] = tuple(_parse(text))

    def render(self, entry: AccessEntry) -> str:
        return "".join(part if isinstance(part, str) else part(entry) for part in self._parts)

    def __repr__(self) -> str:
        return f"AccessLogFormat({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AccessLogFormat) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __reduce__(self) -> tuple[type[AccessLogFormat], tuple[str]]:
        # Pickled as its text (a Config travels to worker processes): the parsed parts hold functions.
        return (AccessLogFormat, (self.text,))


def _parse(text: str) -> list[str | Callable[[AccessEntry], str]]:
    parts: list[str | Callable[[AccessEntry], str]] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char in "{}" and text[i + 1 : i + 2] == char:
            literal.append(char)
            i += 2
            continue
        if char == "}":
            raise ValueError(f"Single '}}' at position {i} of the access log format (write '}}}}' for a brace).")
        if char != "{":
            literal.append(char)
            i += 1
            continue
        end = text.find("}", i)
        if end < 0:
            raise ValueError(f"Unclosed '{{' at position {i} of the access log format.")
        name = text[i + 1 : end].strip()
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(_field(name))
        i = end + 1
    if literal:
        parts.append("".join(literal))
    return parts


def _field(name: str) -> Callable[[AccessEntry], str]:
    if name.startswith("header."):
        header = name[len("header.") :].strip().lower()
        if not header or any(c in header for c in " \t{}:"):
            raise ValueError(f"{{{name}}} does not name a header.")
        return _header_field(header)
    getter = _FIELDS.get(name)
    if getter is None:
        raise ValueError(f"Unknown access log field {{{name}}}; known fields: {', '.join(FIELD_NAMES)}.")
    return getter


class AccessLogSubscriber:
    """Writes one access record per response, on ``uvicorn.access``, as Uvicorn writes it.

    Uvicorn logs every response that started; so does this, at its end: on ``ResponseCompleted``, and
    on ``ClientDisconnected`` when a response had started (with the bytes sent until then). The
    record's message and arguments are Uvicorn's, so the default line stays byte-for-byte Uvicorn's
    under any formatter; the event rides along as ``record.pounce_response`` for
    ``--access-log-format`` and ``--log-format json``. Stateless, so thread-safe.
    """

    __slots__ = ("logger",)

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("uvicorn.access")

    def __call__(self, event: Event) -> None:
        if not isinstance(event, (ResponseCompleted, ClientDisconnected)) or event.status is None:
            return
        if not self.logger.isEnabledFor(logging.INFO):
            return
        entry = AccessEntry.from_event(event)
        self.logger.info(
            UVICORN_MESSAGE,
            entry.client,
            entry.method,
            entry.target,
            entry.http_version,
            entry.status,
            extra={RECORD_ATTRIBUTE: event},
        )


__all__ = [
    "AccessEntry",
    "AccessLogFormat",
    "AccessLogSubscriber",
    "FIELD_NAMES",
    "RECORD_ATTRIBUTE",
    "UVICORN_MESSAGE",
]

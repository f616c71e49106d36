"""The opening handshake (RFC 6455 section 4), done by wsproto, as bytes in and bytes out.

Everything ``wsproto_impl`` needs of wsproto lives here: validating the upgrade request, the ASGI
scope it becomes, negotiating permessage-deflate (RFC 7692), and the answers: 101, 400/426 for a
malformed request, 403, 500 and a ``websocket.http.response`` denial. After the 101, wsproto is
done: the traffic goes through ``frames``.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import unquote

import h11
import wsproto
from wsproto import ConnectionType, events
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from pounce._types import Scope
from pounce.protocols.websockets.frames import Deflate

__all__ = ["Handshake", "RemoteProtocolError"]

Headers = list[tuple[bytes, bytes]]

# RFC 6455 §4.1: the only version there is (and that wsproto speaks).
WEBSOCKET_VERSION = b"13"
_VERSION_FIELD = re.compile(rb"\r\nsec-websocket-version:[ \t]*([^\r\n]*?)[ \t]*\r\n", re.IGNORECASE)


class Handshake:
    """One connection's side of the handshake; every method returns the bytes to write."""

    def __init__(self) -> None:
        self.conn = wsproto.WSConnection(connection_type=ConnectionType.SERVER)
        self.head = b""  # the request bytes so far (the HTTP protocol replays the whole head at once)

    def receive(self, data: bytes) -> events.Request | None:
        """Request bytes in; the upgrade request once it is complete. Raises ``RemoteProtocolError``."""
        self.head = self.head + data if self.head else data
        self.conn.receive_data(data)
        for event in self.conn.events():
            if isinstance(event, events.Request):
                return event
        return None

    def trailing_data(self) -> bytes:
        """Bytes that followed the request head in the same read. They sit in wsproto's HTTP parser,
        which never hands them on after the upgrade: the client's first frames, sent early."""
        h11_conn = getattr(self.conn.handshake, "_h11_connection", None)
        return bytes(getattr(h11_conn, "trailing_data", (b"", False))[0])

    def reason(self, err: RemoteProtocolError) -> str:
        """What was wrong with the upgrade request, in words.

        wsproto says "Missing header, 'Sec-WebSocket-Version'" for a version it does not speak too
        (``Sec-WebSocket-Version: 8`` was sent, yet the answer said it was missing): name the version.
        """
        hint = err.event_hint
        if isinstance(hint, events.RejectConnection) and hint.status_code == 426:
            found = _VERSION_FIELD.search(self.head)
            sent = found.group(1).decode("latin-1") if found else "?"
            return f"unsupported Sec-WebSocket-Version {sent!r}; this server supports {WEBSOCKET_VERSION.decode()}"
        return str(err)

    def reject(self, err: RemoteProtocolError) -> bytes:
        """A malformed upgrade request: wsproto's status and headers, and the reason.

        400 for a request that is not a valid upgrade; RFC 6455 §4.4: 426 with ``Sec-WebSocket-Version:
        13`` (the versions we speak) for a version we do not, as wsproto (and Uvicorn's wsproto
        protocol) answer it.
        """
        hint = err.event_hint
        status = hint.status_code if isinstance(hint, events.RejectConnection) else 400
        headers = list(hint.headers) if isinstance(hint, events.RejectConnection) else []
        body = f"Invalid WebSocket upgrade request: {self.reason(err)}\n".encode()
        headers += [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
            (b"connection", b"close"),
        ]
        try:
            output = self.conn.send(events.RejectConnection(status_code=status, headers=headers, has_body=True))
            return output + self.conn.send(events.RejectData(data=body))
        except (LocalProtocolError, h11.LocalProtocolError):
            return b""  # the request was not even HTTP: nothing sensible to answer

    def accept(self, subprotocol: str | None, headers: Headers, deflate: bool) -> tuple[bytes, Deflate | None]:
        """The 101, and the permessage-deflate state if the client's offer was taken."""
        extension = PerMessageDeflate() if deflate else None
        extensions: list[Extension] = [extension] if extension is not None else []
        output = self.conn.send(events.AcceptConnection(subprotocol=subprotocol, extensions=extensions, extra_headers=headers))
        negotiated = Deflate(extension) if extension is not None and extension.enabled() else None
        return output, negotiated

    def forbid(self) -> bytes:
        """``websocket.close`` before ``websocket.accept``: 403."""
        return bytes(self.conn.send(events.RejectConnection(status_code=403, headers=[])))

    def deny(self, status: int, headers: Headers) -> bytes:
        """The head of a ``websocket.http.response`` (ASGI's denial response extension)."""
        return bytes(self.conn.send(events.RejectConnection(status_code=status, headers=headers, has_body=True)))

    def deny_body(self, body: bytes, finished: bool) -> bytes:
        return bytes(self.conn.send(events.RejectData(data=body, body_finished=finished)))

    def internal_error(self) -> bytes:
        """500, for an app that failed (or ended) before deciding."""
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"connection", b"close"),
            (b"content-length", b"21"),
        ]
        try:
            output = self.conn.send(events.RejectConnection(status_code=500, headers=headers, has_body=True))
            return output + self.conn.send(events.RejectData(data=b"Internal Server Error"))
        except (LocalProtocolError, h11.LocalProtocolError):  # pragma: no cover - defensive
            return b""


def build_scope(
    event: events.Request,
    *,
    scheme: Literal["ws", "wss"],
    server: tuple[str, int | None] | None,
    client: tuple[str, int] | None,
    root_path: str,
    asgi_version: str,
    state: dict[str, Any],
) -> Scope:
    """The ASGI ``websocket`` scope of an upgrade request."""
    headers: Headers = [(b"host", event.host.encode())]
    headers += [(key.lower(), value) for key, value in event.extra_headers]
    # wsproto strips these two from extra_headers; ASGI apps expect every request header.
    if event.subprotocols:
        headers.append((b"sec-websocket-protocol", ", ".join(event.subprotocols).encode()))
    if event.extensions:
        offered = [ext if isinstance(ext, str) else ext.name for ext in event.extensions]
        headers.append((b"sec-websocket-extensions", ", ".join(offered).encode()))
    raw_path, _, query_string = event.target.partition("?")
    return {
        "type": "websocket",
        "asgi": {"version": asgi_version, "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": scheme,
        "server": server,
        "client": client,
        "root_path": root_path,
        "path": root_path + unquote(raw_path),
        "raw_path": root_path.encode("ascii") + raw_path.encode("ascii"),
        "query_string": query_string.encode("ascii"),
        "headers": headers,
        "subprotocols": event.subprotocols,
        "state": state,
        "extensions": {"websocket.http.response": {}},
    }

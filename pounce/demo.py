"""A small demo app shipped with Pounce: ``pounce pounce.demo:app``.

- ``/``        a page showing the runtime (Python build, GIL state, process, thread) and the server's
               resolved configuration;
- ``/stream``  a streamed response, one line every 0.2 s (``?n=`` lines, at most 100);
- ``/echo``    echoes the request (method, path, headers, body) back as JSON;
- ``/health``  ``ok``, for load balancers and scripts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import json
import os
import platform
import sys
import sysconfig
import threading
from typing import Any

import pounce
from pounce._types import ASGIReceiveCallable, ASGISendCallable, Scope
from pounce.main import gil_state
from pounce.server import current_server_config

_HIDDEN_FIELDS = {"app", "ssl"}


def runtime_info() -> dict[str, Any]:
    return {
        "pounce": pounce.__version__,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "free-threaded build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "GIL": "disabled" if gil_state() == "free-threaded" else "enabled",
        "process": os.getpid(),
        "thread": threading.current_thread().name,
        "platform": platform.platform(),
    }


def config_info() -> dict[str, Any]:
    config = current_server_config.get()
    if config is None:
        return {}
    info: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        if field.name in _HIDDEN_FIELDS:
            continue
        value = getattr(config, field.name)
        if isinstance(value, type):
            value = f"{value.__module__}.{value.__qualname__}"
        elif field.name == "default_headers":
            value = [f"{k.decode('latin-1')}: {v.decode('latin-1')}" for k, v in value]
        info[field.name] = value
    info["tls"] = config.ssl is not None
    return info


def _table(rows: dict[str, Any]) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(str(value))}</td></tr>" for key, value in rows.items()
    )
    return f"<table>{cells}</table>"


def base_url(scope: Scope) -> str:
    """The URL this page was asked for, without its path: what a curl command on the page should name.

    From the request's Host (RFC 9110 §7.2), else the address the server listens on; with the
    --root-path prefix the app is mounted under.
    """
    host = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"host"), "")
    if not host:
        server = scope.get("server")
        host = "localhost" if server is None else (f"{server[0]}:{server[1]}" if server[1] else server[0])
    return f"{scope['scheme']}://{host}{scope.get('root_path', '')}"


def index_page(scope: Scope) -> bytes:
    base = html.escape(base_url(scope))
    root = html.escape(scope.get("root_path", ""))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Pounce demo</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:60em}}th{{text-align:left;padding-right:1em}}
td,th{{border-bottom:1px solid #ddd;padding:.2em .5em}}code{{background:#f4f4f4}}</style></head>
<body><h1>Pounce is serving this page</h1>
<p>Try <a href="{root}/stream">/stream</a>, <code>curl -d hello {base}/echo</code>, or <a href="{root}/health">/health</a>.</p>
<h2>Runtime</h2>{_table(runtime_info())}
<h2>Server configuration</h2>{_table(config_info())}
</body></html>""".encode()


async def _read_body(receive: ASGIReceiveCallable, limit: int = 1024 * 1024) -> bytes | None:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body", False):
            return bytes(body)


async def _respond(send: ASGISendCallable, status: int, content_type: bytes, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return

    # Behind --root-path the scope's path includes the prefix (ASGI spec); route on what follows it.
    path = scope["path"]
    root_path = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :] or "/"
    if path == "/":
        await _respond(send, 200, b"text/html; charset=utf-8", index_page(scope))
    elif path == "/health":
        await _respond(send, 200, b"text/plain; charset=utf-8", b"ok")
    elif path == "/echo":
        body = await _read_body(receive)
        if body is None:
            await _respond(send, 413, b"text/plain; charset=utf-8", b"Request body too large (1 MiB at most).")
            return
        payload = {
            "method": scope["method"],
            "path": path,
            "query_string": scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "body": body.decode("utf-8", "replace"),
        }
        await _respond(send, 200, b"application/json", json.dumps(payload, indent=2).encode())
    elif path == "/stream":
        query = dict(part.split("=", 1) for part in scope["query_string"].decode().split("&") if "=" in part)
        try:
            count = max(1, min(100, int(query.get("n", "10"))))
        except ValueError:
            await _respond(send, 400, b"text/plain; charset=utf-8", b"n must be an integer.")
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for i in range(count):
            await send({"type": "http.response.body", "body": b"line %d of %d\n" % (i + 1, count), "more_body": True})
            await asyncio.sleep(0.2)
        await send({"type": "http.response.body", "body": b""})
    else:
        await _respond(send, 404, b"text/plain; charset=utf-8", b"Not Found")


__all__ = ["app", "config_info", "runtime_info"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit("Serve it with: pounce pounce.demo:app")

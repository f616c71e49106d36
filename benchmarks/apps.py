"""ASGI apps used by the benchmark scripts: pounce.bench's built-in workloads' apps, one copy.

- ``hello``     13-byte ``text/plain`` body ("Hello, world!"), the classic plaintext test.
- ``json_app``  a small JSON object serialised on every request, as TechEmpower does.
- ``large``     a 64 KiB ``application/octet-stream`` body, sent in one ``http.response.body``.

Servers import them as ``benchmarks.apps:<name>`` from the checkout (and ``--baseline`` from that
commit's tree), so the names here stay.
"""

from __future__ import annotations

from pounce.bench.apps import HELLO_BODY, JSON_BODY, LARGE_BODY, _lifespan, hello, json_app, large

__all__ = ["EXPECTED_BODIES", "HELLO_BODY", "LARGE_BODY", "_lifespan", "hello", "json_app", "large"]

# What a correct server must send back for each app: checked once per server start so
# that a server returning errors quickly can't win the benchmark.
EXPECTED_BODIES: dict[str, bytes] = {"hello": HELLO_BODY, "json_app": JSON_BODY, "large": LARGE_BODY}

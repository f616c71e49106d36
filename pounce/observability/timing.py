"""``--server-timing``: the ``Server-Timing`` response header, true when the head leaves.

Pounce holds a response head until the app's first body message, so when the head is written the
app's time to its first byte is known. Two metrics, durations in milliseconds (W3C Server Timing):

* ``queue`` -- from the request head parsed to the app called (time spent waiting in Pounce);
* ``app`` -- from the app called to its first response byte (the head, written with the first body).

An app that sets ``Server-Timing`` itself keeps its header untouched: Pounce adds its own as a second
``server-timing`` field (the header is a list, RFC 9110 §5.3: clients read both fields as one), so
neither side's metrics are lost and Pounce never has to parse the app's value.
"""

from __future__ import annotations

HEADER_NAME = b"server-timing"

QUEUE_DESCRIPTION = "head parsed to app called"
APP_DESCRIPTION = "app called to first byte"


# The whole value but the two durations, encoded once (this runs on every response while it is on).
_VALUE = b'queue;dur=%%.3f;desc="%s", app;dur=%%.3f;desc="%s"' % (QUEUE_DESCRIPTION.encode(), APP_DESCRIPTION.encode())


def server_timing_value(head_parsed: float, app_called: float, first_byte: float) -> bytes:
    """The header value for three ``time.monotonic()`` readings (seconds); negative spans count as 0."""
    queue_ms = app_called - head_parsed
    app_ms = first_byte - app_called
    return _VALUE % (queue_ms * 1000.0 if queue_ms > 0.0 else 0.0, app_ms * 1000.0 if app_ms > 0.0 else 0.0)


def server_timing_header(head_parsed: float, app_called: float, first_byte: float) -> tuple[bytes, bytes]:
    """``(b"server-timing", value)``, ready to append to a response's headers."""
    return (HEADER_NAME, server_timing_value(head_parsed, app_called, first_byte))


__all__ = ["APP_DESCRIPTION", "HEADER_NAME", "QUEUE_DESCRIPTION", "server_timing_header", "server_timing_value"]

"""``http.response.pathsend`` (asgiref docs/extensions.rst): the app names a file, the server sends it.

The cycle opens the file, lets the protocol frame the body for its size (``frame_file``) and send it
(``write_file``). Two ways of sending, chosen per connection:

* on a plain TCP connection (HTTP/1.1) the kernel copies the file to the socket (``loop.sendfile``,
  ``os.sendfile``): no byte passes through Python;
* under TLS and on HTTP/2, where the bytes must be encrypted or framed by us, the file is read in
  chunks and written as body, under the flow control any body has; at most one chunk is in memory.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO

from pounce.protocols.utils import ClientDisconnected

if TYPE_CHECKING:
    from pounce.protocols.http.cycle import RequestResponseCycle
    from pounce.protocols.http.flow_control import FlowControl

# Bytes read and written at a time where the file passes through Python (TLS, HTTP/2).
FILE_CHUNK = 256 * 1024
# loop.sendfile is called for slices of the file, so that a client that stops reading is noticed:
# a slice not taken within --timeout-write ends the connection, as a stalled write does. Slices start
# small and double while the client takes them quickly, so a fast client costs few calls and a slow
# one is not cut off for the size of a slice.
SENDFILE_FIRST_SLICE = 256 * 1024
SENDFILE_MAX_SLICE = 16 * 1024 * 1024
_QUICK = 0.5  # seconds: a slice taken faster than this doubles the next one


async def send_path(cycle: RequestResponseCycle, path: object) -> None:
    """Send the file at ``path`` as the response body (its end is the caller's)."""
    if not isinstance(path, str) or not os.path.isabs(path):
        raise RuntimeError(f"http.response.pathsend needs an absolute file path, got {path!r}.")
    loop = asyncio.get_running_loop()
    try:
        # Opening may wait for the disk (or a network file system): not on the event loop.
        file, size = await loop.run_in_executor(None, _open, path)
    except OSError as exc:
        # Not an OSError to the app: from send() that would read as "the client disconnected".
        raise RuntimeError(f"http.response.pathsend cannot open {path!r}: {exc.strerror or exc}") from None
    try:
        if cycle.disconnected:  # while the file was being opened
            raise ClientDisconnected("The client disconnected before the response was complete.")
        count = cycle.frame_file(size)
        sent = await cycle.write_file(file, count) if count else 0
    finally:
        file.close()
    observer = cycle.observer
    if observer is not None:
        observer.body_bytes += sent
    if sent < count:
        # Framed for ``count`` bytes: a file that shrank meanwhile leaves a response that cannot end well.
        raise RuntimeError(f"File {path!r} shrank while it was being sent.")


def _open(path: str) -> tuple[BinaryIO, int]:
    file = open(path, "rb")
    try:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise IsADirectoryError(0, "not a regular file")
    except BaseException:
        file.close()
        raise
    return file, info.st_size


async def write_file_in_chunks(
    cycle: RequestResponseCycle, file: BinaryIO, count: int, write: Callable[[bytes], None] | None = None
) -> int:
    """The file a chunk at a time through ``write`` (by default as body, through ``write_body``),
    waiting whenever the peer is behind; returns how many bytes there were."""
    loop = asyncio.get_running_loop()
    sent = 0
    while sent < count:
        chunk = await loop.run_in_executor(None, file.read, min(FILE_CHUNK, count - sent))
        if not chunk:
            break
        if cycle.disconnected:
            raise ClientDisconnected("The client disconnected before the response was complete.")
        if write is None:
            cycle.write_body(chunk, True)
        else:
            write(chunk)
        sent += len(chunk)
        if cycle.flow.write_paused:
            await cycle.flow.drain()
    if cycle.disconnected:
        raise ClientDisconnected("The client disconnected before the response was complete.")
    return sent


def can_sendfile(transport: asyncio.BaseTransport) -> bool:
    """Whether the kernel can copy a file straight to this connection's socket (plain TCP or UNIX)."""
    return hasattr(os, "sendfile") and transport.get_extra_info("sslcontext") is None


async def write_file_raw(cycle: RequestResponseCycle, file: BinaryIO, count: int) -> int:
    """``count`` bytes of ``file`` onto the connection as they are, framing written by the caller:
    by the kernel (``loop.sendfile``) where it can, else read in chunks."""
    try:
        sent = await _sendfile(cycle.transport, cycle.flow, file, count)
    except ClientDisconnected:
        cycle.disconnected = True
        raise
    if sent is None:
        sent = await write_file_in_chunks(cycle, file, count, cycle.transport.write)
    return sent


async def _sendfile(transport: asyncio.Transport, flow: FlowControl, file: BinaryIO, count: int) -> int | None:
    """``count`` bytes of ``file`` from its current position by ``loop.sendfile``; how many went out.

    None when the kernel cannot do it for this file or transport before anything was sent. A client
    that leaves, or takes a slice no faster than ``--timeout-write`` allows, ends the connection.
    """
    loop = asyncio.get_running_loop()
    offset = file.tell()
    sent = 0
    size = SENDFILE_FIRST_SLICE
    while sent < count:
        if transport.is_closing():
            raise ClientDisconnected("The client disconnected before the response was complete.")
        part = min(size, count - sent)
        started = time.monotonic()
        try:
            done = await asyncio.wait_for(
                loop.sendfile(transport, file, offset + sent, part, fallback=False), flow.write_timeout
            )
        except asyncio.TimeoutError:
            flow.give_up()
            raise ClientDisconnected("The client took no data in time.") from None
        except (asyncio.SendfileNotAvailableError, NotImplementedError):
            if sent:
                raise
            return None
        except OSError as exc:
            transport.abort()
            raise ClientDisconnected("The client disconnected before the response was complete.") from exc
        except RuntimeError:
            # asyncio's "Transport is closing": the connection went while the slice waited to be sent.
            if not transport.is_closing():
                raise
            raise ClientDisconnected("The client disconnected before the response was complete.") from None
        if not done:
            break  # The file ends earlier than it did when it was opened.
        sent += done
        if time.monotonic() - started < _QUICK and size < SENDFILE_MAX_SLICE:
            size *= 2
    return sent

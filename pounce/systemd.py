"""systemd's two protocols, without a dependency: readiness notification and socket activation.

* **Notification** (``sd_notify(3)``): while ``NOTIFY_SOCKET`` is set, the service manager listens on
  that Unix datagram socket (a path, or an abstract name written ``@name``) for newline-separated
  ``KEY=VALUE`` assignments: ``READY=1``, ``RELOADING=1`` with ``MONOTONIC_USEC=``, ``STOPPING=1``,
  ``STATUS=...``, ``WATCHDOG=1``. One datagram per message; a failed send is logged once and never
  stops the server (systemd may have gone, or the socket may belong to a test that closed it).
* **Activation** (``sd_listen_fds(3)``): systemd passes listening sockets as descriptors 3, 4, ... and
  says so in ``LISTEN_PID`` (this process), ``LISTEN_FDS`` (how many) and ``LISTEN_FDNAMES`` (their
  names, colon-separated). The variables are removed once read, as ``sd_listen_fds(unset=1)`` does, so
  that processes this one starts do not take the descriptors for theirs.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import MutableMapping
from dataclasses import dataclass

logger = logging.getLogger("uvicorn.error")

LISTEN_FDS_START = 3  # SD_LISTEN_FDS_START


@dataclass(frozen=True)
class ActivatedSocket:
    """A socket systemd passed, with the name ``LISTEN_FDNAMES`` gave it (``"unknown"`` if none)."""

    sock: socket.socket
    name: str


def listen_fds(environ: MutableMapping[str, str] | None = None, unset: bool = True) -> list[ActivatedSocket]:
    """The sockets systemd passed to this process; empty when it passed none (or passed them to another).

    Raises ValueError for variables that are set but malformed: a service started with broken
    activation must not quietly bind a port of its own instead.
    """
    env = os.environ if environ is None else environ
    pid_text = env.get("LISTEN_PID")
    count_text = env.get("LISTEN_FDS")
    names_text = env.get("LISTEN_FDNAMES")
    if unset:
        for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            env.pop(key, None)
    if count_text is None:
        return []
    if pid_text is None or not pid_text.strip().isdigit():
        raise ValueError(f"LISTEN_FDS is set but LISTEN_PID is {pid_text!r}, not a process id.")
    if int(pid_text) != os.getpid():
        return []  # meant for the process that started us
    if not count_text.strip().isdigit():
        raise ValueError(f"LISTEN_FDS={count_text!r} is not a number of descriptors.")
    count = int(count_text)
    names = names_text.split(":") if names_text else []
    activated = []
    for index in range(count):
        fd = LISTEN_FDS_START + index
        try:
            sock = socket.socket(fileno=fd)  # family and type from the descriptor itself
        except OSError as exc:
            raise ValueError(f"LISTEN_FDS={count}: descriptor {fd} is not a socket ({exc.strerror}).") from None
        sock.set_inheritable(True)
        activated.append(ActivatedSocket(sock, names[index] if index < len(names) and names[index] else "unknown"))
    return activated


class Notifier:
    """Sends ``sd_notify`` messages to ``NOTIFY_SOCKET``; every method does nothing when it is unset."""

    def __init__(self, address: str | None = None) -> None:
        address = os.environ.get("NOTIFY_SOCKET") if address is None else address
        self._address: str | bytes | None = None
        self._sock: socket.socket | None = None
        self._failed = False
        if address:
            # "@name" is an abstract socket: a leading NUL byte on the wire.
            self._address = b"\0" + address[1:].encode() if address.startswith("@") else address
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; whether it went."""
        if self._sock is None or self._address is None:
            return False
        try:
            self._sock.sendto("\n".join(assignments).encode(), self._address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                logger.warning("Cannot notify the service manager at NOTIFY_SOCKET: %s", exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *((f"STATUS={status}",) if status else ()))

    def reloading(self) -> bool:
        # systemd >= 253 wants the monotonic time with RELOADING=1 (Type=notify-reload); older ones ignore it.
        return self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(environ: MutableMapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), or None when the watchdog is off
    or meant for another process (``WATCHDOG_PID``)."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid is not None and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 2e6


__all__ = ["ActivatedSocket", "LISTEN_FDS_START", "Notifier", "listen_fds", "watchdog_interval"]

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


# Read once per process: listen_fds() removes the variables, so a second look would find nothing.
_activated: list[ActivatedSocket] | None = None


def activated_sockets() -> list[socket.socket]:
    """The sockets systemd passed to this process (empty: bind as configured), each logged once taken over.

    Malformed activation variables stop the server (exit code 3) rather than letting it bind a port of
    its own behind systemd's back.
    """
    global _activated
    if _activated is None:
        try:
            _activated = listen_fds()
        except ValueError as exc:
            logger.error("%s", exc)
            raise SystemExit(3) from None
        for item in _activated:
            logger.info("Pounce running on socket %s activated by systemd (%s)", _describe(item.sock), item.name)
    return [item.sock for item in _activated]


def _describe(sock: socket.socket) -> str:
    try:
        address = sock.getsockname()
    except OSError:  # pragma: no cover - a socket we cannot ask
        return f"fd {sock.fileno()}"
    if sock.family == socket.AF_UNIX:
        return f"unix:{address.decode() if isinstance(address, bytes) else address}"
    kind = "udp" if sock.type == socket.SOCK_DGRAM else "tcp"
    host, port = address[0], address[1]
    return f"{kind}://[{host}]:{port}" if ":" in host else f"{kind}://{host}:{port}"


class ServiceManager:
    """What the top process (single server or supervisor) tells systemd: readiness, reloads, stop, status,
    and the watchdog pings, sent from the loop whose health they vouch for (``tick``)."""

    # STATUS= is for humans reading ``systemctl status``: at most this often, and only when it changed.
    STATUS_EVERY = 1.0

    def __init__(self, notifier: Notifier, watchdog: float | None) -> None:
        self.notifier = notifier
        self.watchdog = watchdog
        self._next_ping = 0.0
        self._next_status = 0.0
        self._last_status = ""

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None) -> ServiceManager | None:
        """The manager for ``NOTIFY_SOCKET``, or None. The variables are removed (as ``sd_notify``'s
        ``unset_environment``), so workers this process starts neither notify nor ping in its name."""
        env = os.environ if environ is None else environ
        interval = watchdog_interval(env)
        address = env.pop("NOTIFY_SOCKET", None)
        for key in ("WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(key, None)
        if not address:
            return None
        return cls(Notifier(address), interval)

    def ready(self, status: str) -> None:
        self._last_status = status
        self.notifier.ready(status)

    def reloading(self) -> None:
        self.notifier.reloading()

    def stopping(self) -> None:
        self.notifier.stopping()

    def tick(self, status: str | None = None) -> None:
        """Called from every turn of the healthy main loop: ping the watchdog when due, post a changed status."""
        now = time.monotonic()
        if self.watchdog is not None and now >= self._next_ping:
            self._next_ping = now + self.watchdog
            self.notifier.watchdog()
        if status is not None and status != self._last_status and now >= self._next_status:
            self._next_status = now + self.STATUS_EVERY
            self._last_status = status
            self.notifier.status(status)

    def close(self) -> None:
        self.notifier.close()


_service: ServiceManager | None = None
_service_read = False


def service_manager() -> ServiceManager | None:
    """This process's ServiceManager (None when not run by a service manager); read from the environment once."""
    global _service, _service_read
    if not _service_read:
        _service_read = True
        _service = ServiceManager.from_environ()
    return _service


__all__ = [
    "ActivatedSocket",
    "LISTEN_FDS_START",
    "Notifier",
    "ServiceManager",
    "activated_sockets",
    "listen_fds",
    "service_manager",
    "watchdog_interval",
]

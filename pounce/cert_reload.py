"""Certificate rotation without a restart: SIGHUP, or ``--ssl-reload-interval`` seeing the files change.

The new certificate and key are loaded into the SSLContext the listeners already hold
(``pounce.tls.reload_cert_chain``): new connections shake hands with the new certificate,
established ones are not touched. A new pair that does not load (a half-copied file, a key that
does not match) is logged as an error and the old one stays in use: never a crash, never a
listener without TLS.

Who reloads: a single server on SIGHUP (it would otherwise die of it) and on its polls; thread
workers share one context, which the supervisor reloads on SIGHUP before the rolling restart; process
workers build their context when they start, so a SIGHUP's rolling restart gives them the new files
(the supervisor checks the pair first and keeps the old workers if it does not load). With
``--ssl-reload-interval`` each worker's server polls the files' modification times itself.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pounce.config import Config

logger = logging.getLogger("uvicorn.error")


def can_rotate(config: Config) -> bool:
    """Whether this configuration's TLS context comes from files we can load again."""
    return bool(config.ssl_certfile) and getattr(config, "ssl", None) is not None


def rotate(config: Config) -> bool:
    """Load ``config``'s certificate and key files into its context again; whether the new pair is in use."""
    from pounce.tls import TLSConfigError, reload_cert_chain

    if not can_rotate(config) or config.ssl is None or config.ssl_certfile is None:
        return False
    try:
        reload_cert_chain(config.ssl, config.ssl_certfile, config.ssl_keyfile, config.ssl_keyfile_password)
    except TLSConfigError as exc:
        logger.error("The new TLS certificate was not loaded, the current one stays in use: %s", exc)
        return False
    logger.info("Loaded the TLS certificate %s again; new connections use it.", os.fspath(config.ssl_certfile))
    return True


def pair_loads(config: Config) -> bool:
    """Whether the certificate files load now (logged if not): what a process-worker restart will need."""
    from pounce.tls import TLSConfigError, reload_cert_chain

    if not config.ssl_certfile:
        return True
    import ssl

    scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        reload_cert_chain(scratch, config.ssl_certfile, config.ssl_keyfile, config.ssl_keyfile_password)
    except TLSConfigError as exc:
        logger.error("The new TLS certificate does not load; keeping the current workers: %s", exc)
        return False
    return True


class CertificateWatcher:
    """Reloads on request (a SIGHUP handler calls ``request``) or when the files change, from the server's tick."""

    def __init__(self, config: Config, interval: float | None) -> None:
        self.config = config
        self.interval = interval
        self._requested = False
        self._next_check = time.monotonic() + (interval or 0.0)
        self._stamps = self._stat()

    def request(self) -> None:
        """Safe from a signal handler: only sets a flag, the next tick reloads."""
        self._requested = True

    def _stat(self) -> tuple[tuple[int, int] | None, ...]:
        stamps = []
        for path in (self.config.ssl_certfile, self.config.ssl_keyfile):
            try:
                info = os.stat(path) if path else None
            except OSError:
                info = None
            stamps.append((info.st_mtime_ns, info.st_size) if info is not None else None)
        return tuple(stamps)

    def tick(self) -> None:
        if self._requested:
            self._requested = False
            self._stamps = self._stat()
            rotate(self.config)
            return
        if self.interval is None:
            return
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self.interval
        stamps = self._stat()
        if stamps != self._stamps:
            # Taken as seen, even if the load fails: a cert written before its key is retried when the key changes.
            self._stamps = stamps
            rotate(self.config)


__all__ = ["CertificateWatcher", "can_rotate", "pair_loads", "rotate"]

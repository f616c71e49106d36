"""The ``--http3`` options, checked and resolved without importing any QUIC library.

``Config.load`` and the CLI both ask ``http3_problem`` first, so a combination that cannot work is one
clear usage error (exit code 2) before anything is bound.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os

BACKENDS = ("auto", "aioquic", "zoomies")
INSTALL_HINT = "pip install 'pounce-asgi[h3]'"
# As measured for issue 11 (bengal-zoomies 0.3.3): its QUIC is not RFC 9000/9001 conformant (packet
# protection, key schedule, QPACK, no MAX_DATA/MAX_STREAM_DATA/MAX_STREAMS), so it talks only to
# its own client, and no patch layer in Pounce could fix that. The seam is ready for a release that does.
ZOOMIES_UNAVAILABLE = (
    "--http3-backend zoomies is not available: bengal-zoomies (0.3.3, as measured) interoperates only "
    "with its own client and needs Python >= 3.14, so Pounce ships no backend for it yet; "
    "use --http3-backend aioquic (the default)."
)


@dataclasses.dataclass(frozen=True)
class HTTP3Options:
    """What a worker needs to serve HTTP/3 (``ServerConfig.http3``; None when ``--http3`` is off)."""

    backend: str  # resolved: "aioquic"
    port: int | None  # None: the port of the TLS listener
    zero_rtt: bool
    retry: bool
    certfile: str
    keyfile: str
    password: str | None


def http3_problem(backend: str, certfile: object, keyfile: object) -> str | None:
    """Why ``--http3`` cannot work as configured, or None."""
    if backend not in BACKENDS:
        return f"--http3-backend must be one of {', '.join(BACKENDS)}, not {backend!r}."
    if not certfile or not keyfile:
        return "--http3 needs --ssl-certfile and --ssl-keyfile: QUIC carries its own TLS 1.3, read from those files."
    if backend == "zoomies":
        return ZOOMIES_UNAVAILABLE
    if importlib.util.find_spec("aioquic") is None:
        return f"--http3 needs the aioquic package: {INSTALL_HINT}"
    return None


def resolve_http3(
    port: int | None,
    zero_rtt: bool,
    retry: bool,
    certfile: str | os.PathLike[str],
    keyfile: str | os.PathLike[str],
    password: str | None,
) -> HTTP3Options:
    """The options of a configuration ``http3_problem`` found nothing wrong with."""
    return HTTP3Options("aioquic", port, zero_rtt, retry, os.fspath(certfile), os.fspath(keyfile), password)


def alt_svc(port: int) -> tuple[bytes, bytes]:
    """RFC 7838 Alt-Svc for our HTTP/3 port, for every response over TCP (a day, as browsers cache it)."""
    return (b"alt-svc", b'h3=":%d"; ma=86400' % port)


__all__ = ["BACKENDS", "HTTP3Options", "alt_svc", "http3_problem", "resolve_http3"]

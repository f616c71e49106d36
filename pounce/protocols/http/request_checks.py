"""What a multiplexed protocol checks of a request head its library accepted (HTTP/2 and HTTP/3 alike).

h2 and the QUIC libraries validate framing and field syntax; the target and authority syntax and our
own limits on header fields and declared body size are checked here, once for both.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pounce.protocols.http.parser import valid_host

# RFC 9113 §8.3.1 / RFC 9114 §4.3.1: ":path" is the absolute-path and query of the target URI (RFC
# 3986), so visible ASCII only, as our HTTP/1.1 parser requires of a request-target: raw UTF-8, spaces
# or controls make the request malformed (RFC 9113 §8.1.1, RFC 9114 §4.1.2).
_PATH = re.compile(rb"[\x21-\x7e]+")
_MAX_LENGTH_DIGITS = 18
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")


def request_problem(
    method: bytes,
    path: bytes,
    authority: bytes | None,
    headers: Iterable[tuple[bytes, bytes]],
    max_fields: int,
    max_body: int | None,
) -> tuple[int | None, str] | None:
    """What is wrong with a request the protocol library accepted, or None.

    (None, why): the request is malformed (RFC 9113 §8.1.1, RFC 9114 §4.1.2), a stream error;
    (status, why): it is well-formed but over one of our limits, answered with that status.
    """
    if _TOKEN.fullmatch(method) is None:
        return None, "invalid :method"  # RFC 9110 §9.1: method = token
    if not (path[:1] == b"/" or (path == b"*" and method == b"OPTIONS")) or _PATH.fullmatch(path) is None:
        return None, "invalid :path"
    if authority is not None and not valid_host(authority):
        return None, "invalid :authority"  # RFC 9113 §8.3.1: uri-host [ ":" port ], no userinfo
    count = 0
    for name, value in headers:
        count += 1
        if name == b"host" and not valid_host(value):
            return None, "invalid host"
        if name == b"content-length":
            if not value.isdigit():
                return None, "invalid content-length"  # RFC 9110 §8.6 (h2 skips this check for HEAD)
            # As our HTTP/1.1 parser: more than 18 digits is at least 10^18 bytes, more than anyone reads.
            if len(value) > _MAX_LENGTH_DIGITS or (max_body is not None and int(value) > max_body):
                return 413, "Request body too large"
    if count > max_fields:
        return 431, "Too many request header fields"
    return None


__all__ = ["request_problem"]

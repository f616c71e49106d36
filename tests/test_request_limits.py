"""Request-head limits (--limit-request-line, --limit-request-field-size, --limit-request-fields) through
real sockets, for both HTTP/1.1 parsers: the defaults serve what Uvicorn serves, the options are exact at
their boundaries (414 for the line, 431 for fields), 0 lifts an option's own limit, and the whole head
stays bounded whatever the options say.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest
from click.testing import CliRunner

from pounce.config import DEFAULT_LIMIT_REQUEST_FIELD_SIZE, MAX_REQUEST_HEAD, Config
from pounce.main import main
from tests.utils import RunningServer, read_response, run_server, wait_closed

PROTOCOLS = ["auto", "h11"]


async def app(scope: Any, receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    sizes = b"%d %d" % (len(scope["raw_path"]), sum(len(name) + len(value) for name, value in scope["headers"]))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": sizes})


def request(target: bytes, *fields: bytes) -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n"


def send(running: RunningServer, data: bytes, pieces: int = 1) -> int:
    """Send ``data`` (in ``pieces`` writes, a little apart) and return the response's status."""
    with running.connect(timeout=10) as sock:
        step = -(-len(data) // pieces)
        try:
            for offset in range(0, len(data), step):
                sock.sendall(data[offset : offset + step])
                if pieces > 1:
                    time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the end arrived: the answer is already there
        response = read_response(sock, timeout=10)
        if response.status != 200:
            assert b"close" in (response.header(b"connection") or b"").lower()
            assert wait_closed(sock) == b""
        return response.status


def line_of(size: int) -> bytes:
    """A request target whose request line ("GET <target> HTTP/1.1") is ``size`` bytes."""
    return b"/" + b"a" * (size - len(b"GET / HTTP/1.1"))


def field_of(size: int) -> bytes:
    """A field line ("X-Big: vvv...") of ``size`` bytes."""
    return b"X-Big: " + b"v" * (size - len(b"X-Big: "))


@pytest.mark.parametrize("http", PROTOCOLS)
def test_defaults_serve_what_uvicorn_serves(http: str) -> None:
    # Uvicorn's httptools parser has no limits (its tests serve a 64 KiB cookie); its h11 one 16 KiB of
    # head. A 9 KB URL was a 414 here.
    with run_server(app, http=http) as running:
        assert send(running, request(line_of(9_000))) == 200
        assert send(running, request(line_of(120_000))) == 200
        assert send(running, request(b"/", field_of(20_000))) == 200
        assert send(running, request(b"/", b"Cookie: " + b"x" * 64 * 1024)) == 200
        # A head well past 64 KiB (one read's worth of buffer), trickled in: read to its end.
        big = request(line_of(60_000), field_of(60_000), b"X-More: " + b"m" * 60_000)
        assert send(running, big, pieces=40) == 200


@pytest.mark.parametrize("http", PROTOCOLS)
def test_a_head_past_64_kib_trickling_in_is_read_to_its_end(http: str) -> None:
    # Reading paused at 64 KiB buffered (the pipelining bound) while the head was still arriving: the
    # fast parser then waited for its header deadline and answered 408.
    head = request(b"/", *[b"X-%d: %s" % (i, b"v" * 8000) for i in range(10)])
    assert len(head) > 80_000
    with run_server(app, http=http, timeout_request_header=5) as running:
        started = time.monotonic()
        assert send(running, head, pieces=20) == 200
        assert time.monotonic() - started < 3


@pytest.mark.parametrize("http", PROTOCOLS)
@pytest.mark.parametrize("pieces", [1, 7])
def test_limits_are_exact_at_their_boundaries(http: str, pieces: int) -> None:
    with run_server(
        app, http=http, limit_request_line=1000, limit_request_field_size=500, limit_request_fields=5
    ) as running:
        assert send(running, request(line_of(1000)), pieces) == 200
        assert send(running, request(line_of(1001)), pieces) == 414
        assert send(running, request(b"/", field_of(500)), pieces) == 200
        assert send(running, request(b"/", field_of(501)), pieces) == 431
        # Host and four more are five fields.
        assert send(running, request(b"/", *[b"X-%d: v" % i for i in range(4)]), pieces) == 200
        assert send(running, request(b"/", *[b"X-%d: v" % i for i in range(5)]), pieces) == 431


@pytest.mark.parametrize("http", PROTOCOLS)
def test_an_over_long_field_is_refused_before_the_head_ends(http: str) -> None:
    with run_server(app, http=http, limit_request_field_size=500) as running, running.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + field_of(502))  # no CRLF yet: already too long
        response = read_response(sock)
        assert response.status == 431
        assert wait_closed(sock) == b""


@pytest.mark.parametrize("http", PROTOCOLS)
def test_zero_is_no_limit_of_its_own_and_the_head_stays_bounded(http: str) -> None:
    with run_server(
        app, http=http, limit_request_line=0, limit_request_field_size=0, limit_request_fields=0
    ) as running:
        assert send(running, request(line_of(300_000))) == 200
        assert send(running, request(b"/", field_of(300_000))) == 200
        assert send(running, request(b"/", *[b"X-%d: v" % i for i in range(1000)])) == 200
        # The whole head is held to MAX_REQUEST_HEAD (1 MiB): memory per connection stays bounded.
        assert send(running, request(line_of(MAX_REQUEST_HEAD + 10))) in (414, 431)
        assert send(running, request(b"/", field_of(MAX_REQUEST_HEAD // 2), field_of(MAX_REQUEST_HEAD // 2))) == 431


def test_server_config_resolves_the_limits() -> None:
    cfg = Config(app, limit_request_line=100, limit_request_field_size=200, limit_request_fields=3)
    cfg.load()
    frozen = cfg.server_config
    assert (frozen.max_request_line_size, frozen.max_field_size, frozen.limit_request_fields) == (100, 200, 3)
    assert frozen.max_request_head == MAX_REQUEST_HEAD
    unlimited = Config(app, limit_request_line=0, limit_request_field_size=0, limit_request_fields=0)
    unlimited.load()
    frozen = unlimited.server_config
    assert frozen.max_request_line_size == frozen.max_field_size == frozen.max_request_head == MAX_REQUEST_HEAD
    # Room for options larger than the default head, and for Uvicorn's h11 buffer setting.
    roomy = Config(app, limit_request_line=2 * MAX_REQUEST_HEAD, h11_max_incomplete_event_size=5)
    roomy.load()
    assert roomy.server_config.max_request_head == 2 * MAX_REQUEST_HEAD + DEFAULT_LIMIT_REQUEST_FIELD_SIZE


@pytest.mark.parametrize("option", ["--limit-request-line", "--limit-request-field-size", "--limit-request-fields"])
def test_negative_limits_are_usage_errors(option: str) -> None:
    result = CliRunner().invoke(main, ["tests.apps.basic:hello", option, "-1"])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}': must be 0 or more, not -1." in result.output


@pytest.mark.parametrize("prefix", ["POUNCE", "UVICORN"])
def test_limits_are_read_from_the_environment(prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    # (pounce.main, the module: the package exports a command of the same name)
    monkeypatch.setattr(sys.modules["pounce.main"], "run", lambda app, **kwargs: seen.update(kwargs))
    monkeypatch.setenv(f"{prefix}_LIMIT_REQUEST_LINE", "1234")
    monkeypatch.setenv(f"{prefix}_LIMIT_REQUEST_FIELD_SIZE", "0")
    monkeypatch.setenv(f"{prefix}_LIMIT_REQUEST_FIELDS", "7")
    result = CliRunner().invoke(main, ["tests.apps.basic:hello"])
    assert result.exit_code == 0, result.output
    assert (seen["limit_request_line"], seen["limit_request_field_size"], seen["limit_request_fields"]) == (1234, 0, 7)


def test_help_lists_gunicorns_names() -> None:
    output = CliRunner().invoke(main, ["--help"]).output
    for option in ("--limit-request-line", "--limit-request-fields", "--limit-request-field-size"):
        assert option in output


def test_the_helpers_build_the_sizes_the_limits_count() -> None:
    assert len(b"GET " + line_of(1000) + b" HTTP/1.1") == 1000  # without CRLF, as Gunicorn counts
    assert len(field_of(500)) == 500

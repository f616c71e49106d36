from __future__ import annotations

import io
import logging
import logging.config
import sys
from typing import Any

import pytest

from pounce._ansi import style
from pounce.logging import TRACE_LOG_LEVEL, AccessFormatter, ColourizedFormatter, DefaultFormatter

DEFAULT_FMT = "%(levelprefix)s %(message)s"
ACCESS_FMT = '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'


def record(level: int, msg: str, args: Any = (), name: str = "uvicorn.error", **extra: Any) -> logging.LogRecord:
    rec = logging.LogRecord(name, level, __file__, 1, msg, args, None)
    if level == TRACE_LOG_LEVEL:
        rec.levelname = "TRACE"
    rec.__dict__.update(extra)
    return rec


def access(status: Any, method: str = "GET", path: str = "/", version: str = "1.1") -> logging.LogRecord:
    return record(logging.INFO, '%s - "%s %s HTTP/%s" %s', ("127.0.0.1:5000", method, path, version, status),
                  name="uvicorn.access")  # fmt: skip


def test_ansi_style() -> None:
    assert style("x") == "x\x1b[0m"
    assert style("x", fg="red") == "\x1b[31mx\x1b[0m"
    assert style("x", fg="bright_white", bold=True) == "\x1b[97m\x1b[1mx\x1b[0m"


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (TRACE_LOG_LEVEL, "TRACE:    hello world"),
        (logging.DEBUG, "DEBUG:    hello world"),
        (logging.INFO, "INFO:     hello world"),
        (logging.WARNING, "WARNING:  hello world"),
        (logging.ERROR, "ERROR:    hello world"),
        (logging.CRITICAL, "CRITICAL: hello world"),
    ],
)
def test_levelprefix_plain(level: int, expected: str) -> None:
    assert DefaultFormatter(DEFAULT_FMT, use_colors=False).format(record(level, "hello %s", ("world",))) == expected


@pytest.mark.parametrize(
    ("level", "name", "code"),
    [
        (TRACE_LOG_LEVEL, "TRACE", 34),
        (logging.DEBUG, "DEBUG", 36),
        (logging.INFO, "INFO", 32),
        (logging.WARNING, "WARNING", 33),
        (logging.ERROR, "ERROR", 31),
        (logging.CRITICAL, "CRITICAL", 91),
    ],
)
def test_levelprefix_coloured(level: int, name: str, code: int) -> None:
    out = DefaultFormatter(DEFAULT_FMT, use_colors=True).format(record(level, "msg"))
    assert out == f"\x1b[{code}m{name}\x1b[0m:" + " " * (8 - len(name)) + " msg"


def test_unknown_level_is_not_coloured() -> None:
    rec = record(25, "msg")
    assert rec.levelname == "Level 25"
    assert DefaultFormatter(DEFAULT_FMT, use_colors=True).format(rec) == "Level 25: msg"


def test_color_message_only_with_colours() -> None:
    rec = record(logging.INFO, "Started server process [%d]", (42,), color_message="Started server process [\x1b[36m%d\x1b[0m]")
    assert DefaultFormatter(DEFAULT_FMT, use_colors=False).format(rec) == "INFO:     Started server process [42]"
    assert (
        DefaultFormatter(DEFAULT_FMT, use_colors=True).format(rec)
        == "\x1b[32mINFO\x1b[0m:     Started server process [\x1b[36m42\x1b[0m]"
    )
    # The record itself is untouched, so another handler formats it plainly.
    assert rec.msg == "Started server process [%d]"
    assert "levelprefix" not in rec.__dict__


class _FakeStream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.mark.parametrize("tty", [True, False])
@pytest.mark.parametrize("use_colors", [None, "invalid"])
def test_use_colors_defaults_to_stdout_isatty(monkeypatch: pytest.MonkeyPatch, tty: bool, use_colors: Any) -> None:
    monkeypatch.setattr(sys, "stdout", _FakeStream(tty))
    assert ColourizedFormatter(DEFAULT_FMT, use_colors=use_colors).use_colors is tty
    assert AccessFormatter(ACCESS_FMT, use_colors=use_colors).use_colors is tty


def test_brace_style() -> None:
    fmt = DefaultFormatter("{levelprefix} {name}: {message}", style="{", use_colors=False)
    assert fmt.format(record(logging.WARNING, "careful")) == "WARNING:  uvicorn.error: careful"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (101, "101 Switching Protocols"),
        (200, "200 OK"),
        (204, "204 No Content"),
        (307, "307 Temporary Redirect"),
        (404, "404 Not Found"),
        (500, "500 Internal Server Error"),
        (599, "599 "),  # unknown status: empty phrase, like Uvicorn
    ],
)
def test_access_plain(status: int, expected: str) -> None:
    out = AccessFormatter(ACCESS_FMT, use_colors=False).format(access(status))
    assert out == f'INFO:     127.0.0.1:5000 - "GET / HTTP/1.1" {expected}'


@pytest.mark.parametrize(("status", "code"), [(101, 97), (200, 32), (302, 33), (404, 31), (503, 91)])
def test_access_coloured(status: int, code: int) -> None:
    rec = access(status, "POST", "/a?b=c", "2")
    out = AccessFormatter(ACCESS_FMT, use_colors=True).format(rec)
    phrase = f"{status} {__import__('http').HTTPStatus(status).phrase}"
    assert out == (
        f'\x1b[32mINFO\x1b[0m:     127.0.0.1:5000 - "\x1b[1mPOST /a?b=c HTTP/2\x1b[0m" \x1b[{code}m{phrase}\x1b[0m'
    )


def test_access_message_field_is_the_plain_line() -> None:
    fmt = AccessFormatter("%(message)s", use_colors=True)
    assert fmt.format(access(200)) == '127.0.0.1:5000 - "GET / HTTP/1.1" 200'


def test_access_with_unexpected_args_does_not_crash() -> None:
    rec = record(logging.INFO, "custom %s", ("line",), name="uvicorn.access")
    assert AccessFormatter("%(levelprefix)s %(message)s", use_colors=False).format(rec) == "INFO:     custom line"


def test_dict_config_factory() -> None:
    # The formatter factory path of dictConfig ("()" plus extra keys), without reconfiguring
    # the process-wide logging that other tests rely on.
    configurator = logging.config.DictConfigurator({"version": 1})
    default = configurator.configure_formatter(
        {"()": "pounce.logging.DefaultFormatter", "fmt": DEFAULT_FMT, "use_colors": False}
    )
    access_fmt = configurator.configure_formatter(
        {"()": "pounce.logging.AccessFormatter", "fmt": ACCESS_FMT, "use_colors": True}
    )
    assert isinstance(default, DefaultFormatter) and default.use_colors is False
    assert isinstance(access_fmt, AccessFormatter) and access_fmt.use_colors is True
    assert default.format(record(logging.INFO, "Application startup complete.")) == (
        "INFO:     Application startup complete."
    )
    assert access_fmt.format(access(404)).endswith("\x1b[31m404 Not Found\x1b[0m")

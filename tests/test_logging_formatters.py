from __future__ import annotations

import configparser
import io
import logging
import logging.config
import sys
from pathlib import Path
from typing import Any

import pytest

import pounce.logging
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


# --- configs written for Uvicorn (see also test_log_config_without_uvicorn.py, in a venv without it) -------

UVICORN_STYLE = {
    "version": 1,
    "formatters": {
        "default": {"()": "uvicorn.logging.DefaultFormatter", "fmt": DEFAULT_FMT},
        "access": {"class": "uvicorn.logging.AccessFormatter", "fmt": ACCESS_FMT},
        "plain": {"format": "%(message)s"},
    },
    "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "default", "stream": sys.stderr}},
    "loggers": {"uvicorn": {"handlers": ["default"]}},
}

UVICORN_INI = """\
[formatters]
keys=default

[formatter_default]
class = uvicorn.logging.DefaultFormatter
format=%(levelprefix)s %(message)s
"""


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, dict[str, Any]]]:
    # What logging.config would be given, without reconfiguring this process's logging.
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(logging.config, "dictConfig", lambda config: calls.append((config, {})))
    monkeypatch.setattr(logging.config, "fileConfig", lambda fname, **kw: calls.append((fname, kw)))
    return calls


def without_uvicorn(monkeypatch: pytest.MonkeyPatch, importable: bool = False) -> None:
    monkeypatch.setattr(pounce.logging, "_uvicorn_importable", lambda: importable)


def test_uvicorn_class_names_resolve_to_pounce_without_uvicorn(
    monkeypatch: pytest.MonkeyPatch, captured: list[tuple[Any, dict[str, Any]]]
) -> None:
    without_uvicorn(monkeypatch)
    pounce.logging.dict_config(UVICORN_STYLE)
    [(config, _)] = captured
    assert config["formatters"]["default"]["()"] == "pounce.logging.DefaultFormatter"
    assert config["formatters"]["access"]["class"] == "pounce.logging.AccessFormatter"
    # Only the dicts on the way to a name are copies: the caller's config is unchanged, the rest is shared.
    assert UVICORN_STYLE["formatters"]["default"]["()"] == "uvicorn.logging.DefaultFormatter"  # type: ignore[index]
    assert config["handlers"] is UVICORN_STYLE["handlers"]
    assert config["formatters"]["plain"] is UVICORN_STYLE["formatters"]["plain"]  # type: ignore[index]
    configurator = logging.config.DictConfigurator({"version": 1})
    assert isinstance(configurator.configure_formatter(dict(config["formatters"]["default"])), DefaultFormatter)


def test_uvicorn_class_names_are_kept_where_uvicorn_imports(
    monkeypatch: pytest.MonkeyPatch, captured: list[tuple[Any, dict[str, Any]]]
) -> None:
    without_uvicorn(monkeypatch, importable=True)
    pounce.logging.dict_config(UVICORN_STYLE)
    assert captured == [(UVICORN_STYLE, {})]


def test_a_config_without_uvicorn_names_is_passed_on_as_it_is(
    monkeypatch: pytest.MonkeyPatch, captured: list[tuple[Any, dict[str, Any]]]
) -> None:
    def must_not_look(): raise AssertionError("looked for uvicorn")  # fmt: skip
    monkeypatch.setattr(pounce.logging, "_uvicorn_importable", must_not_look)
    config = {"version": 1, "formatters": {"x": {"()": "pounce.logging.DefaultFormatter"}}}
    pounce.logging.dict_config(config)
    assert captured[0][0] is config


def test_file_config_is_called_as_given_when_nothing_is_renamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, captured: list[tuple[Any, dict[str, Any]]]
) -> None:
    # As Uvicorn's own tests check: fileConfig(config_file, disable_existing_loggers=False), the same object.
    without_uvicorn(monkeypatch, importable=True)
    ini = tmp_path / "log.ini"
    ini.write_text(UVICORN_INI)
    stream = io.StringIO(UVICORN_INI)
    parser = configparser.ConfigParser()
    invalid = io.StringIO("not an ini")  # left for fileConfig to reject, in its words
    for source in (str(ini), "missing.ini", stream, parser, invalid):
        pounce.logging.file_config(source, disable_existing_loggers=False)
    assert [c[0] for c in captured] == [str(ini), "missing.ini", stream, parser, invalid]
    assert all(kw == {"disable_existing_loggers": False} for _, kw in captured)
    assert stream.tell() == 0  # rewound for fileConfig


@pytest.mark.parametrize("kind", ["path", "stream", "parser"])
def test_file_config_renames_uvicorn_classes_without_uvicorn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, captured: list[tuple[Any, dict[str, Any]]], kind: str
) -> None:
    without_uvicorn(monkeypatch)
    ini = tmp_path / "log.ini"
    ini.write_text(UVICORN_INI)
    given: Any = {"path": str(ini), "stream": io.StringIO(UVICORN_INI), "parser": configparser.ConfigParser()}[kind]
    if kind == "parser":
        given.read_string(UVICORN_INI)
    pounce.logging.file_config(given, disable_existing_loggers=False)
    [(parser, kw)] = captured
    assert isinstance(parser, configparser.RawConfigParser) and kw == {"disable_existing_loggers": False}
    assert parser.get("formatter_default", "class") == "pounce.logging.DefaultFormatter"
    assert parser.get("formatter_default", "format", raw=True) == "%(levelprefix)s %(message)s"


def test_file_config_errors_are_fileconfigs_own() -> None:
    # Whatever this Python's fileConfig raises for a missing file (FileNotFoundError since 3.11.4 and 3.12,
    # a KeyError before), before it changes any logging.
    with pytest.raises(Exception) as stdlib:
        logging.config.fileConfig("missing.ini")
    with pytest.raises(type(stdlib.value)) as ours:
        pounce.logging.file_config("missing.ini")
    assert str(ours.value) == str(stdlib.value)

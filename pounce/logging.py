"""Log formatters whose output is byte-identical to Uvicorn's for the same records.

The logger names (``uvicorn.error``, ``uvicorn.access``, ``uvicorn.asgi``) are kept on
purpose elsewhere, and these classes keep Uvicorn's attribute and method names so
logging configs and subclasses written for Uvicorn keep working. A config that names
Uvicorn's classes (``uvicorn.logging.DefaultFormatter``) is applied through
:func:`dict_config` / :func:`file_config`, which resolve those names to these classes
when ``uvicorn`` cannot be imported.
"""

from __future__ import annotations

import http
import importlib.util
import json
import logging
import logging.config
import sys
from configparser import ConfigParser, ParsingError, RawConfigParser
from copy import copy
from datetime import datetime, timezone
from typing import IO, Any, Callable, Literal

from pounce._ansi import style as ansi_style
from pounce.observability.access import RECORD_ATTRIBUTE, AccessEntry, AccessLogFormat

TRACE_LOG_LEVEL = 5

_Styler = Callable[[str], str]


def _fg(colour: str) -> _Styler:
    def styler(text: str) -> str:
        return ansi_style(str(text), fg=colour)

    return styler


def _plain(text: str) -> str:
    return str(text)


# Width the level name is padded to after the colon ("INFO:     ", "WARNING:  ").
_LEVEL_PAD = 8


class ColourizedFormatter(logging.Formatter):
    """Formatter that provides ``%(levelprefix)s`` and honours ``extra={"color_message": ...}``.

    ``levelprefix`` is the level name (coloured when colours are on) followed by a colon
    and padding; ``color_message`` replaces the plain message only when colours are on.
    """

    level_name_colors: dict[int, _Styler] = {
        TRACE_LOG_LEVEL: _fg("blue"),
        logging.DEBUG: _fg("cyan"),
        logging.INFO: _fg("green"),
        logging.WARNING: _fg("yellow"),
        logging.ERROR: _fg("red"),
        logging.CRITICAL: _fg("bright_red"),
    }

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Literal["%", "{", "$"] = "%",
        use_colors: bool | None = None,
    ) -> None:
        # Anything other than an explicit bool (None, or a bad value from a dict config)
        # means "colour when stdout is a terminal", which is what Uvicorn does.
        if use_colors is True or use_colors is False:
            self.use_colors = use_colors
        else:
            self.use_colors = sys.stdout.isatty()
        super().__init__(fmt=fmt, datefmt=datefmt, style=style)

    def color_level_name(self, level_name: str, level_no: int) -> str:
        return self.level_name_colors.get(level_no, _plain)(level_name)

    def should_use_colors(self) -> bool:
        return True

    def formatMessage(self, record: logging.LogRecord) -> str:
        # Work on a copy: other handlers may format the same record without colours.
        recordcopy = copy(record)
        levelname = recordcopy.levelname
        separator = " " * (_LEVEL_PAD - len(levelname))
        if self.use_colors:
            levelname = self.color_level_name(levelname, recordcopy.levelno)
            if "color_message" in recordcopy.__dict__:
                recordcopy.msg = recordcopy.__dict__["color_message"]
                recordcopy.__dict__["message"] = recordcopy.getMessage()
        recordcopy.__dict__["levelprefix"] = levelname + ":" + separator
        return super().formatMessage(recordcopy)


class DefaultFormatter(ColourizedFormatter):
    def should_use_colors(self) -> bool:
        return sys.stderr.isatty()


def _access_format(access_format: str | AccessLogFormat | None) -> AccessLogFormat | None:
    if access_format is None or isinstance(access_format, AccessLogFormat):
        return access_format
    return AccessLogFormat(access_format) if access_format else None


class AccessFormatter(ColourizedFormatter):
    """Adds ``client_addr``, ``request_line`` and ``status_code`` (e.g. ``200 OK``).

    Expects the record's args to be ``(client_addr, method, full_path, http_version,
    status_code)``, which is what the HTTP protocols log on ``uvicorn.access``.

    With ``access_format`` (``--access-log-format``; see ``pounce.observability.access`` for the
    fields), ``%(message)s`` is that line instead of Uvicorn's. Fields that only the event knows
    (bytes, duration, headers) are ``-`` on records that carry only Uvicorn's five arguments.
    """

    status_code_colours: dict[int, _Styler] = {
        1: _fg("bright_white"),
        2: _fg("green"),
        3: _fg("yellow"),
        4: _fg("red"),
        5: _fg("bright_red"),
    }

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Literal["%", "{", "$"] = "%",
        use_colors: bool | None = None,
        access_format: str | AccessLogFormat | None = None,
    ) -> None:
        super().__init__(fmt=fmt, datefmt=datefmt, style=style, use_colors=use_colors)
        self.access_format = _access_format(access_format)

    def get_status_code(self, status_code: int) -> str:
        try:
            status_phrase = http.HTTPStatus(status_code).phrase
        except ValueError:
            status_phrase = ""
        status_and_phrase = f"{status_code} {status_phrase}"
        if self.use_colors:
            return self.status_code_colours.get(status_code // 100, _plain)(status_and_phrase)
        return status_and_phrase

    def formatMessage(self, record: logging.LogRecord) -> str:
        recordcopy = copy(record)
        args = recordcopy.args
        if isinstance(args, tuple) and len(args) == 5:
            client_addr, method, full_path, http_version, status_code = args
            try:
                status_text = self.get_status_code(int(status_code))  # type: ignore[call-overload]
            except (TypeError, ValueError):
                # A hand-written record with a non-numeric status: show it as given
                # rather than failing the whole log call.
                status_text = str(status_code)
            request_line = f"{method} {full_path} HTTP/{http_version}"
            if self.use_colors:
                request_line = ansi_style(request_line, bold=True)
            recordcopy.__dict__.update(
                {"client_addr": client_addr, "request_line": request_line, "status_code": status_text}
            )
        if self.access_format is not None:
            entry = AccessEntry.from_record(recordcopy)
            if entry is not None:
                recordcopy.__dict__["message"] = self.access_format.render(entry)
        return super().formatMessage(recordcopy)


class JSONFormatter(logging.Formatter):
    """``--log-format json``: every record as one JSON object on one line.

    Keys: ``timestamp`` (ISO 8601, UTC, milliseconds), ``level``, ``logger``, ``message``; for access
    records the request fields (``client``, ``method``, ``path``, ``query``, ``status``, ``protocol``,
    ``http_version``, and ``bytes``, ``duration``, ``user_agent``, ``referer``, ``request_id``,
    ``worker_id`` where known); ``trace_id`` and ``span_id`` (hex) when an OpenTelemetry span is current
    (``--otel``) or the record carries them (``otelTraceID``/``otelSpanID``); ``exception`` and
    ``stack`` when the record has them. ``fmt`` and ``use_colors`` are accepted and ignored, so a
    logging config can swap this class in for Uvicorn's formatters.
    """

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Literal["%", "{", "$"] = "%",
        use_colors: bool | None = None,
        access_format: str | AccessLogFormat | None = None,
    ) -> None:
        super().__init__(datefmt=datefmt)
        self.access_format = _access_format(access_format)

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        data: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        if RECORD_ATTRIBUTE in record.__dict__ or record.name == "uvicorn.access":
            entry = AccessEntry.from_record(record)
            if entry is not None:
                if self.access_format is not None:
                    data["message"] = self.access_format.render(entry)
                data.update(entry.fields())
        trace_ids = _trace_ids(record)
        if trace_ids is not None:
            data["trace_id"], data["span_id"] = trace_ids
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exception"] = record.exc_text
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return json.dumps(data, default=str)


def _trace_ids(record: logging.LogRecord) -> tuple[str, str] | None:
    """The record's trace and span ids: set by OpenTelemetry's logging instrumentation, else the current span's."""
    trace_id = record.__dict__.get("otelTraceID")
    span_id = record.__dict__.get("otelSpanID")
    if trace_id and span_id and trace_id != "0":
        return str(trace_id), str(span_id)
    if "opentelemetry.trace" not in sys.modules:  # tracing is off: never import it for a log line
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


# The classes of ``uvicorn.logging`` by the dotted names logging configs use for them (Uvicorn's own
# LOGGING_CONFIG names the first two; it names no handler or filter classes of Uvicorn's), and the classes
# here that format the same records the same way.
UVICORN_CLASS_NAMES: dict[str, str] = {
    "uvicorn.logging.DefaultFormatter": "pounce.logging.DefaultFormatter",
    "uvicorn.logging.AccessFormatter": "pounce.logging.AccessFormatter",
    "uvicorn.logging.ColourizedFormatter": "pounce.logging.ColourizedFormatter",
}

# The keys through which logging.config imports a class by its dotted name.
_CLASS_KEYS = ("()", "class")


def _uvicorn_importable() -> bool:
    # Where `uvicorn` imports (real Uvicorn, or compat/ whose uvicorn.logging *is* this module), its names
    # resolve as written, and are left alone.
    try:
        return importlib.util.find_spec("uvicorn") is not None
    except (ImportError, ValueError):  # a finder that refuses it; a `uvicorn` module without a spec
        return "uvicorn" in sys.modules


def _renamed(value: Any) -> Any:
    """``value`` with Uvicorn's class names replaced, copying only the dicts and lists on the way to one."""
    if isinstance(value, dict):
        items = [
            (key, UVICORN_CLASS_NAMES.get(item, item) if key in _CLASS_KEYS and isinstance(item, str) else _renamed(item))
            for key, item in value.items()
        ]
        return dict(items) if any(new is not value[key] for key, new in items) else value
    if isinstance(value, list):
        renamed = [_renamed(item) for item in value]
        return renamed if any(new is not old for new, old in zip(renamed, value)) else value
    return value


def with_pounce_class_names(config: dict[str, Any]) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict whose ``uvicorn.logging`` classes resolve without Uvicorn.

    Without ``uvicorn`` importable, ``logging.config`` fails on such a name (``Cannot resolve
    'uvicorn.logging.DefaultFormatter'``); rewriting the names is what makes Uvicorn's configs work here
    without putting a ``uvicorn`` module into ``sys.modules``. ``config`` itself is never changed.
    """
    renamed: dict[str, Any] = _renamed(config)
    if renamed is config or _uvicorn_importable():
        return config
    return renamed


def dict_config(config: dict[str, Any]) -> None:
    """``logging.config.dictConfig`` that also takes a config written for Uvicorn (JSON and YAML files too)."""
    logging.config.dictConfig(with_pounce_class_names(config))


def _uvicorn_classes_in(parser: RawConfigParser) -> list[tuple[str, str]]:
    """(section, Pounce class name) for each formatter or handler section of a fileConfig that names Uvicorn's."""
    found = []
    for section in parser.sections():
        if section.startswith(("formatter_", "handler_")) and parser.has_option(section, "class"):
            name = parser.get(section, "class", raw=True).strip()
            if name in UVICORN_CLASS_NAMES:
                found.append((section, UVICORN_CLASS_NAMES[name]))
    return found


def _rename_uvicorn_classes(parser: RawConfigParser) -> bool:
    """Rewrite Uvicorn's class names in ``parser`` where ``uvicorn`` cannot be imported; True if it did."""
    renames = _uvicorn_classes_in(parser)
    if not renames or _uvicorn_importable():
        return False
    for section, name in renames:
        parser.set(section, "class", name)
    return True


def _ini_source(
    fname: str | RawConfigParser | IO[str], defaults: dict[str, str] | None, encoding: str | None
) -> str | RawConfigParser | IO[str]:
    """What fileConfig should read: ``fname`` itself, unless a Uvicorn class name in it had to be rewritten.

    So fileConfig is called as the caller meant, and a file it cannot read fails with its own error. A
    parser is rewritten in place (it is what fileConfig consumes); a stream that cannot seek can be read only
    once, so then fileConfig always gets the parser read from it here.
    """
    if isinstance(fname, RawConfigParser):
        _rename_uvicorn_classes(fname)
        return fname
    parser = ConfigParser(defaults)
    if isinstance(fname, str):
        try:
            parser.read(fname, encoding=encoding)
        except (ParsingError, OSError, UnicodeError):
            return fname
        return parser if _rename_uvicorn_classes(parser) else fname
    seekable = fname.seekable()
    start = fname.tell() if seekable else 0
    try:
        parser.read_file(fname)
    except ParsingError as exc:
        if not seekable:
            raise RuntimeError(f"{fname} is invalid: {exc}") from exc  # fileConfig's words
        fname.seek(start)
        return fname
    if _rename_uvicorn_classes(parser) or not seekable:
        return parser
    fname.seek(start)
    return fname


def file_config(
    fname: str | RawConfigParser | IO[str],
    defaults: dict[str, str] | None = None,
    disable_existing_loggers: bool = True,
    encoding: str | None = None,
) -> None:
    """``logging.config.fileConfig`` that also takes an ``.ini`` config written for Uvicorn."""
    options: dict[str, Any] = {"disable_existing_loggers": disable_existing_loggers}
    if defaults is not None:
        options["defaults"] = defaults
    if encoding is not None:
        options["encoding"] = encoding
    logging.config.fileConfig(_ini_source(fname, defaults, encoding), **options)

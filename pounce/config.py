"""Configuration: the Uvicorn-compatible ``Config`` and the frozen ``ServerConfig`` it resolves to.

``Config`` keeps Uvicorn's constructor and attributes so code written for Uvicorn works unchanged.
``Config.load()`` imports the app, resolves every string option to the class or value it names,
wraps the app in the middleware it needs and freezes the result into ``ServerConfig``. The running
server, the protocols and the workers read ``ServerConfig`` only, so nothing can change under them
while they run (and thread workers can share one without locks).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import inspect
import json
import logging
import logging.config
import os
import socket
import ssl
import sys
import warnings
from collections.abc import Awaitable, Callable, Sequence
from configparser import RawConfigParser
from pathlib import Path
from typing import IO, Any, Literal

from pounce._types import ASGIApplication
from pounce.importer import ImportFromStringError, import_from_string
from pounce.logging import TRACE_LOG_LEVEL, dict_config, file_config
from pounce.middleware.asgi2 import ASGI2Middleware
from pounce.middleware.message_logger import MessageLoggerMiddleware
from pounce.middleware.proxy_headers import ServerProxyHeaders
from pounce.middleware.wsgi import WSGIMiddleware
from pounce.observability.access import AccessLogFormat
from pounce.observability.bus import EventHandler, check_handler
from pounce.protocols.http3.options import HTTP3Options

HTTPProtocolType = Literal["auto", "fast", "h11", "httptools", "zttp"]
WSProtocolType = Literal["auto", "none", "wsproto", "websockets", "websockets-sansio"]
LifespanType = Literal["auto", "on", "off"]
LoopFactoryType = Literal["none", "auto", "asyncio", "uvloop", "zuvloop"]
InterfaceType = Literal["auto", "asgi3", "asgi2", "wsgi"]
WorkerModeType = Literal["auto", "thread", "process"]
LogFormatType = Literal["text", "json"]

LOG_LEVELS: dict[str, int] = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE_LOG_LEVEL,
}
HTTP_PROTOCOLS: dict[str, str] = {
    "auto": "pounce.protocols.http.auto:AutoHTTPProtocol",
    "fast": "pounce.protocols.http.fast_impl:FastHTTPProtocol",
    "h11": "pounce.protocols.http.h11_impl:H11Protocol",
}
WS_PROTOCOLS: dict[str, str | None] = {
    "auto": "pounce.protocols.websockets.auto:AutoWebSocketsProtocol",
    "none": None,
    "wsproto": "pounce.protocols.websockets.wsproto_impl:WSProtocol",
}
LIFESPAN: dict[str, str] = {
    "auto": "pounce.lifespan.on:LifespanOn",
    "on": "pounce.lifespan.on:LifespanOn",
    "off": "pounce.lifespan.off:LifespanOff",
}
LOOP_FACTORIES: dict[str, str | None] = {
    "none": None,
    "auto": "pounce.loops:auto_loop_factory",
    "asyncio": "pounce.loops:asyncio_loop_factory",
}
INTERFACES: list[InterfaceType] = ["auto", "asgi3", "asgi2", "wsgi"]
WORKER_MODES: list[WorkerModeType] = ["auto", "thread", "process"]
LOG_FORMATS: list[LogFormatType] = ["text", "json"]

# Names of Uvicorn implementations that Pounce replaces with its own: accepted so existing command
# lines keep working, mapped to our equivalent, and announced with one info line.
IMPLEMENTATION_ALIASES: dict[str, dict[str, str]] = {
    "http": {"httptools": "fast", "zttp": "fast"},
    "ws": {"websockets": "wsproto", "websockets-sansio": "wsproto"},
    "loop": {"uvloop": "asyncio", "zuvloop": "asyncio"},
}

SSL_PROTOCOL_VERSION: int = ssl.PROTOCOL_TLS_SERVER

# Request-head limits (--limit-request-line, --limit-request-field-size, --limit-request-fields: Gunicorn's
# names, bytes counted as Gunicorn counts them, without CRLF). Uvicorn's default parser (httptools) has no
# limits at all (its test suite serves a 64 KiB cookie) and its h11 one refuses heads over 16 KiB; proxies
# in front of servers cut well below these (nginx 8 KiB lines, cloud load balancers 16 KiB lines and 64 KiB
# heads). So the defaults refuse nothing a deployment sees in practice, and the whole head stays bounded
# (memory per connection).
DEFAULT_LIMIT_REQUEST_LINE = 128 * 1024
DEFAULT_LIMIT_REQUEST_FIELD_SIZE = 128 * 1024
DEFAULT_LIMIT_REQUEST_FIELDS = 100
# The whole request head (request line and fields): larger, with --h11-max-incomplete-event-size (h11's
# buffer, Uvicorn's option) or limits that need more room.
MAX_REQUEST_HEAD = 1024 * 1024
# HTTP/2's header list (SETTINGS_MAX_HEADER_LIST_SIZE), which a connection may hold once per stream.
H2_MAX_HEADER_LIST = 96 * 1024
# socket.listen() takes a C int; a larger --backlog ends in OverflowError.
MAX_BACKLOG = 2**31 - 1

STARTUP_FAILURE = 3

LOGGING_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "default": {
            "()": "pounce.logging.DefaultFormatter",
            "fmt": "%(levelprefix)s %(message)s",
            "use_colors": None,
        },
        "access": {
            "()": "pounce.logging.AccessFormatter",
            "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
        },
    },
    "handlers": {
        "default": {
            "formatter": "default",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
        },
        "access": {
            "formatter": "access",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
        },
    },
    # Uvicorn's logger names, on purpose: logging configs, filters and log pipelines written for
    # Uvicorn keep working when the server underneath is Pounce.
    "loggers": {
        "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}

logger = logging.getLogger("uvicorn.error")


class PounceDeprecationWarning(UserWarning):
    """Deprecations in Pounce's API. A UserWarning, not a DeprecationWarning, so users see it by default."""


class ConfigError(ValueError):
    """An option, or a combination of options, that cannot work. The CLI turns it into exit code 2."""


class OptionValueError(ConfigError):
    """One option's value cannot work; ``option`` is its name (``port``), or the variable's."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"Invalid value for {option}: {problem}")
        self.option = option
        self.problem = problem


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """Everything the running server reads, resolved and frozen by ``Config.load()``."""

    app: ASGIApplication
    http_protocol_class: type[asyncio.Protocol]
    ws_protocol_class: type[asyncio.Protocol] | None
    lifespan_class: type[Any]
    ssl: ssl.SSLContext | None
    host: str
    port: int
    uds: str | None
    fd: int | None
    root_path: str
    interface: str
    asgi_version: Literal["2.0", "3.0"]
    access_log: bool
    # Headers added to every response (``server`` and ``--header`` ones), lower-cased and encoded.
    default_headers: tuple[tuple[bytes, bytes], ...]
    date_header: bool
    limit_concurrency: int | None
    limit_max_requests: int | None
    limit_max_requests_jitter: int
    backlog: int
    timeout_keep_alive: float
    timeout_request_header: float
    timeout_graceful_shutdown: float | None
    timeout_notify: float
    timeout_worker_healthcheck: float
    h11_max_incomplete_event_size: int | None
    # HTTP/1.1 head limits, the same for both parsers (0 in the options: no limit but the head's).
    max_request_line_size: int
    max_field_size: int
    max_request_head: int
    # HTTP/2's header-list bound.
    max_header_size: int
    ws_max_size: int
    ws_max_queue: int
    ws_ping_interval: float | None
    ws_ping_timeout: float | None
    ws_per_message_deflate: bool
    # Resource bounds (see README "Resource model"); every protocol reads them from here.
    limit_request_body: int | None
    limit_request_fields: int
    timeout_request_body: float
    timeout_write: float
    h2_max_concurrent_streams: int
    h2_max_reset_rate: int
    h2_max_control_frame_rate: int
    workers: int
    worker_mode: str
    reset_contextvars: bool
    factory: bool
    # Observability (see pounce/observability/): handlers subscribed to every worker's events,
    # --access-log-format, --log-format, --metrics (host, port), --otel, --server-timing.
    event_handlers: tuple[EventHandler, ...] = ()
    access_log_format: AccessLogFormat | None = None
    log_format: str = "text"
    metrics_address: tuple[str, int] | None = None
    otel: bool = False
    server_timing: bool = False
    http3: HTTP3Options | None = None  # --http3 (None: off)


def create_ssl_context(
    certfile: str | os.PathLike[str],
    keyfile: str | os.PathLike[str] | None,
    password: str | None,
    ssl_version: int,
    cert_reqs: int,
    ca_certs: str | os.PathLike[str] | None,
    ciphers: str | None,
    alpn_protocols: list[str] | None = None,
) -> ssl.SSLContext:
    """Build the server's TLS context (see ``pounce.tls`` for the checks and truststore support)."""
    from pounce.tls import create_ssl_context as _create

    return _create(certfile, keyfile, password, ssl_version, cert_reqs, ca_certs, ciphers, alpn_protocols)


def is_dir(path: Path) -> bool:
    try:
        if not path.is_absolute():
            path = path.resolve()
        return path.is_dir()
    except OSError:
        return False


def resolve_reload_patterns(patterns_list: list[str], directories_list: list[str]) -> tuple[list[str], list[Path]]:
    """Split reload globs into patterns and the directories they name, dropping nested directories."""
    directories: set[Path] = {Path(d) for d in directories_list}
    patterns: list[str] = list(patterns_list)
    cwd = Path.cwd()
    for pattern in patterns_list:
        # ".*" would otherwise match every hidden directory, which nobody means.
        if pattern == ".*":
            continue
        if is_dir(Path(pattern)):
            directories.add(Path(pattern))
        else:
            directories.update(match for match in cwd.glob(pattern) if is_dir(match))
    resolved = {d.resolve() for d in directories}
    resolved = {d for d in resolved if is_dir(d)}
    # A directory inside another watched one would be watched twice.
    nested = {d for d in resolved if any(other in d.parents for other in resolved)}
    return list(set(patterns)), list(resolved - nested)


def _normalize_dirs(dirs: list[str] | str | None) -> list[str]:
    if dirs is None:
        return []
    if isinstance(dirs, str):
        return [dirs]
    return list(set(dirs))


def _resolve_alias(kind: str, value: Any) -> Any:
    if isinstance(value, str) and value in IMPLEMENTATION_ALIASES[kind]:
        ours = IMPLEMENTATION_ALIASES[kind][value]
        logger.info("--%s %s is a Uvicorn implementation; Pounce uses its own '%s' instead.", kind, value, ours)
        return ours
    return value


class Config:
    def __init__(
        self,
        app: ASGIApplication | Callable[..., Any] | str,
        host: str = "127.0.0.1",
        port: int = 8000,
        uds: str | None = None,
        fd: int | None = None,
        pid_file: str | os.PathLike[str] | None = None,
        loop: LoopFactoryType | str = "auto",
        http: type[asyncio.Protocol] | HTTPProtocolType | str = "auto",
        http2: bool = False,
        ws: type[asyncio.Protocol] | WSProtocolType | str = "auto",
        ws_max_size: int = 16 * 1024 * 1024,
        ws_max_queue: int = 32,
        ws_ping_interval: float | None = 20.0,
        ws_ping_timeout: float | None = 20.0,
        ws_per_message_deflate: bool = True,
        lifespan: LifespanType = "auto",
        env_file: str | os.PathLike[str] | None = None,
        log_config: dict[str, Any] | str | os.PathLike[str] | RawConfigParser | IO[Any] | None = LOGGING_CONFIG,
        log_level: str | int | None = None,
        access_log: bool = True,
        use_colors: bool | None = None,
        interface: InterfaceType = "auto",
        reload: bool = False,
        reload_dirs: list[str] | str | None = None,
        reload_delay: float = 0.25,
        reload_includes: list[str] | str | None = None,
        reload_excludes: list[str] | str | None = None,
        workers: int | None = None,
        proxy_headers: bool = True,
        server_header: bool = True,
        date_header: bool = True,
        forwarded_allow_ips: list[str] | str | None = None,
        root_path: str = "",
        limit_concurrency: int | None = None,
        limit_max_requests: int | None = None,
        limit_max_requests_jitter: int = 0,
        backlog: int = 2048,
        timeout_keep_alive: int = 5,
        timeout_notify: int = 30,
        timeout_graceful_shutdown: int | None = None,
        timeout_worker_healthcheck: int = 5,
        callback_notify: Callable[..., Awaitable[None]] | None = None,
        ssl_keyfile: str | os.PathLike[str] | None = None,
        ssl_certfile: str | os.PathLike[str] | None = None,
        ssl_reload_interval: float | None = None,
        ssl_keyfile_password: str | None = None,
        ssl_version: int = SSL_PROTOCOL_VERSION,
        ssl_cert_reqs: int = ssl.CERT_NONE,
        ssl_ca_certs: str | os.PathLike[str] | None = None,
        ssl_ciphers: str | None = None,
        ssl_context_factory: Callable[[Config, Callable[[], ssl.SSLContext]], ssl.SSLContext] | None = None,
        headers: list[tuple[str, str]] | None = None,
        factory: bool = False,
        h11_max_incomplete_event_size: int | None = None,
        reset_contextvars: bool = False,
        worker_mode: WorkerModeType | str = "auto",
        timeout_request_header: float = 10.0,
        timeout_request_body: float = 30.0,
        timeout_write: float = 60.0,
        limit_request_body: int | None = None,
        limit_request_fields: int = DEFAULT_LIMIT_REQUEST_FIELDS,
        limit_request_line: int = DEFAULT_LIMIT_REQUEST_LINE,
        limit_request_field_size: int = DEFAULT_LIMIT_REQUEST_FIELD_SIZE,
        h2_max_concurrent_streams: int = 100,
        h2_max_reset_rate: int = 100,
        h2_max_control_frame_rate: int = 500,
        event_handlers: Sequence[EventHandler | str] | None = None,
        access_log_format: str | None = None,
        log_format: LogFormatType | str = "text",
        metrics: str | None = None,
        otel: bool = False,
        server_timing: bool = False,
        http3: bool = False,
        http3_port: int | None = None,
        http3_backend: str = "auto",
        http3_0rtt: bool = False,
        http3_retry: bool = False,
    ):
        self.app = app
        self.host = host
        self.port = port
        self.uds = uds
        self.fd = fd
        # Containers and init scripts: pounce/container.py writes it once bound.
        self.pid_file = pid_file
        self.loop = loop
        self.http = http
        self.http2 = http2
        self.ws = ws
        self.ws_max_size = ws_max_size
        self.ws_max_queue = ws_max_queue
        self.ws_ping_interval = ws_ping_interval
        self.ws_ping_timeout = ws_ping_timeout
        self.ws_per_message_deflate = ws_per_message_deflate
        self.lifespan = lifespan
        self.log_config = log_config
        self.log_level = log_level
        self.access_log = access_log
        self.use_colors = use_colors
        self.interface = interface
        self.reload = reload
        self.reload_delay = reload_delay
        self.workers = workers or 1
        self.proxy_headers = proxy_headers
        self.server_header = server_header
        self.date_header = date_header
        self.root_path = root_path
        self.limit_concurrency = limit_concurrency
        self.limit_max_requests = limit_max_requests
        self.limit_max_requests_jitter = limit_max_requests_jitter
        self.backlog = backlog
        self.timeout_keep_alive = timeout_keep_alive
        self.timeout_notify = timeout_notify
        self.timeout_graceful_shutdown = timeout_graceful_shutdown
        self.timeout_worker_healthcheck = timeout_worker_healthcheck
        self.timeout_request_header = timeout_request_header
        self.timeout_request_body = timeout_request_body
        self.timeout_write = timeout_write
        self.limit_request_body = limit_request_body
        self.limit_request_fields = limit_request_fields
        self.limit_request_line = limit_request_line
        self.limit_request_field_size = limit_request_field_size
        self.h2_max_concurrent_streams = h2_max_concurrent_streams
        self.h2_max_reset_rate = h2_max_reset_rate
        self.h2_max_control_frame_rate = h2_max_control_frame_rate
        self.callback_notify = callback_notify
        self.ssl_keyfile = ssl_keyfile
        self.ssl_certfile = ssl_certfile
        # Certificate rotation (pounce/cert_reload.py): poll the files this often; SIGHUP reloads regardless.
        self.ssl_reload_interval = ssl_reload_interval
        self.ssl_keyfile_password = ssl_keyfile_password
        self.ssl_version = ssl_version
        self.ssl_cert_reqs = ssl_cert_reqs
        self.ssl_ca_certs = ssl_ca_certs
        self.ssl_ciphers = ssl_ciphers
        self.ssl_context_factory = ssl_context_factory
        self.headers: list[tuple[str, str]] = headers or []
        self.encoded_headers: list[tuple[bytes, bytes]] = []
        self.factory = factory
        self.h11_max_incomplete_event_size = h11_max_incomplete_event_size
        self.reset_contextvars = reset_contextvars
        self.worker_mode = worker_mode
        # Strings ("module:callable") are imported by load(), in each worker process.
        self.event_handlers: list[EventHandler | str] = list(event_handlers or [])
        self.access_log_format = access_log_format
        self.log_format = log_format
        self.metrics = metrics
        self.otel = otel
        self.server_timing = server_timing
        # --http3: HTTP/3 over QUIC on UDP, next to the TLS listener (pounce/protocols/http3/).
        self.http3 = http3
        self.http3_port = http3_port
        self.http3_backend = http3_backend
        self.http3_0rtt = http3_0rtt
        self.http3_retry = http3_retry
        self._check_values()
        self._check_observability()

        self.loaded = False
        self.configure_logging()

        self.reload_dirs: list[Path] = []
        self.reload_dirs_excludes: list[Path] = []
        self.reload_includes: list[str] = []
        self.reload_excludes: list[str] = []

        if (reload_dirs or reload_includes or reload_excludes) and not self.should_reload:
            logger.warning(
                "Current configuration will not reload as not all conditions are met, please refer to documentation."
            )

        if self.should_reload:
            reload_dirs = _normalize_dirs(reload_dirs)
            reload_includes = _normalize_dirs(reload_includes)
            reload_excludes = _normalize_dirs(reload_excludes)

            self.reload_includes, self.reload_dirs = resolve_reload_patterns(reload_includes, reload_dirs)
            self.reload_excludes, self.reload_dirs_excludes = resolve_reload_patterns(reload_excludes, [])

            for directory in list(self.reload_dirs):
                for excluded in self.reload_dirs_excludes:
                    if directory == excluded or excluded in directory.parents:
                        if directory in self.reload_dirs:
                            self.reload_dirs.remove(directory)

            for pattern in self.reload_excludes:
                if pattern in self.reload_includes:
                    self.reload_includes.remove(pattern)

            if not self.reload_dirs:
                if reload_dirs:
                    logger.warning(
                        "Provided reload directories %s did not contain valid "
                        + "directories, watching current working directory.",
                        reload_dirs,
                    )
                self.reload_dirs = [Path.cwd()]

            logger.info("Will watch for changes in these directories: %s", sorted(map(str, self.reload_dirs)))

        if env_file is not None:
            self._load_env_file(env_file)

        if workers is None and "WEB_CONCURRENCY" in os.environ:
            value = os.environ["WEB_CONCURRENCY"]
            try:
                self.workers = int(value)
            except ValueError:
                raise OptionValueError("WEB_CONCURRENCY", f"must be an integer, not {value!r}.") from None
        # As in Uvicorn, 0 or fewer workers (--workers 0, WEB_CONCURRENCY=0) is one server process; the
        # attribute keeps Uvicorn's value (WEB_CONCURRENCY=0 reads 0), what runs counts max(workers, 1).

        self.forwarded_allow_ips: list[str] | str
        if forwarded_allow_ips is None:
            self.forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
        else:
            self.forwarded_allow_ips = forwarded_allow_ips

        if self.reload and self.workers > 1:
            logger.warning('"workers" flag is ignored when reloading is enabled.')

    def _check_values(self) -> None:
        """Reject values that could only crash later, after the lifespan had started (exit code 2 on the
        command line). Values Uvicorn accepts keep their meaning and are not refused here."""
        if not 0 <= self.port <= 65535:
            raise OptionValueError("port", f"must be between 0 and 65535, not {self.port}.")
        if self.backlog > MAX_BACKLOG:
            raise OptionValueError("backlog", f"must be at most {MAX_BACKLOG}, not {self.backlog}.")
        if self.fd is not None and self.fd < 0:
            raise OptionValueError("fd", f"must be a file descriptor (0 or more), not {self.fd}.")
        at_least_zero = {
            # random.randint(0, jitter) fails for a negative one (Uvicorn: a traceback at startup).
            "limit_max_requests_jitter": self.limit_max_requests_jitter,
            # Uvicorn's h11 refuses every request with a negative one.
            "h11_max_incomplete_event_size": self.h11_max_incomplete_event_size or 0,
            # Gunicorn's rule for its limits: 0 is "no limit of its own", a negative value an error.
            "limit_request_line": self.limit_request_line,
            "limit_request_fields": self.limit_request_fields,
            "limit_request_field_size": self.limit_request_field_size,
        }
        for name, value in at_least_zero.items():
            if value < 0:
                raise OptionValueError(name, f"must be 0 or more, not {value}.")

    @property
    def max_request_head(self) -> int:
        """The bound on a whole HTTP/1.1 request head: MAX_REQUEST_HEAD, or what the options need."""
        return max(
            MAX_REQUEST_HEAD,
            self.h11_max_incomplete_event_size or 0,
            self.limit_request_line + self.limit_request_field_size,
        )

    def _check_observability(self) -> None:
        """Reject observability options that cannot work (ConfigError: exit code 2 on the command line)."""
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"log_format must be one of {', '.join(LOG_FORMATS)}, not {self.log_format!r}.")
        self.parsed_access_log_format: AccessLogFormat | None = None
        if self.access_log_format:
            try:
                self.parsed_access_log_format = AccessLogFormat(self.access_log_format)
            except ValueError as exc:
                raise ConfigError(f"Invalid --access-log-format: {exc}") from None
        self.metrics_address: tuple[str, int] | None = None
        if self.metrics:
            from pounce.observability import metrics

            try:
                self.metrics_address = metrics.parse_address(self.metrics)
            except ValueError as exc:
                raise ConfigError(f"Invalid --metrics: {exc}") from None
            if not metrics.available():
                raise ConfigError(metrics.INSTALL_HINT)
            host, port = self.metrics_address
            if port == self.port and self.uds is None and self.fd is None and _same_host(host, self.host):
                raise ConfigError(f"--metrics {self.metrics} is the app's own address; give it a port of its own.")
        if self.otel:
            from pounce.observability import tracing

            if not tracing.available():
                raise ConfigError(tracing.INSTALL_HINT)
        for handler in self.event_handlers:
            if not isinstance(handler, str):
                try:
                    check_handler(handler)
                except TypeError as exc:
                    raise ConfigError(str(exc)) from None

    def _load_event_handlers(self) -> tuple[EventHandler, ...]:
        handlers: list[EventHandler] = []
        for spec in self.event_handlers:
            try:
                handler = import_from_string(spec) if isinstance(spec, str) else spec
                handlers.append(check_handler(handler))
            except (ImportFromStringError, TypeError) as exc:
                raise ConfigError(f"Invalid event handler {spec!r}: {exc}") from None
        return tuple(handlers)

    @staticmethod
    def _load_env_file(env_file: str | os.PathLike[str]) -> None:
        logger.info("Loading environment from '%s'", env_file)
        try:
            from dotenv import load_dotenv
        except ImportError:
            _load_simple_env_file(env_file)
        else:
            load_dotenv(dotenv_path=env_file)

    @property
    def asgi_version(self) -> Literal["2.0", "3.0"]:
        mapping: dict[str, Literal["2.0", "3.0"]] = {"asgi2": "2.0", "asgi3": "3.0", "wsgi": "3.0"}
        return mapping[self.interface]

    @property
    def is_ssl(self) -> bool:
        return bool(self.ssl_keyfile or self.ssl_certfile or self.ssl_context_factory)

    @property
    def use_subprocess(self) -> bool:
        return bool(self.reload or self.workers > 1)

    @property
    def should_reload(self) -> bool:
        return isinstance(self.app, str) and self.reload

    def configure_logging(self) -> None:
        logging.addLevelName(TRACE_LOG_LEVEL, "TRACE")

        custom_format = self.log_format == "json" or bool(self.access_log_format)
        if custom_format and self.log_config is not LOGGING_CONFIG:
            logger.warning(
                "--log-format and --access-log-format shape Pounce's default logging configuration; with "
                "--log-config (or log_config=None) your configuration decides: use the formatters "
                "pounce.logging.JSONFormatter, or pounce.logging.AccessFormatter with 'access_format', in it."
            )

        if self.log_config is not None:
            if isinstance(self.log_config, os.PathLike):
                self.log_config = os.fspath(self.log_config)

            if isinstance(self.log_config, dict):
                if self.use_colors in (True, False):
                    self.log_config["formatters"]["default"]["use_colors"] = self.use_colors
                    self.log_config["formatters"]["access"]["use_colors"] = self.use_colors
                if self.log_config is LOGGING_CONFIG and custom_format:
                    logging.config.dictConfig(self._default_logging_config())
                else:
                    dict_config(self.log_config)
            elif isinstance(self.log_config, str) and self.log_config.endswith(".json"):
                with open(self.log_config) as file:
                    dict_config(json.load(file))
            elif isinstance(self.log_config, str) and self.log_config.endswith((".yaml", ".yml")):
                try:
                    import yaml
                except ImportError as exc:
                    raise ImportError("Install the PyYAML package to use `--log-config` with YAML files.") from exc
                with open(self.log_config) as file:
                    dict_config(yaml.safe_load(file))
            else:
                # See the note about fileConfig() in the logging.config documentation.
                file_config(self.log_config, disable_existing_loggers=False)

        if self.log_level is not None:
            if isinstance(self.log_level, str):
                log_level = LOG_LEVELS[self.log_level.lower()]
            else:
                log_level = self.log_level
            logging.getLogger("uvicorn.error").setLevel(log_level)
            logging.getLogger("uvicorn.access").setLevel(log_level)
            logging.getLogger("uvicorn.asgi").setLevel(log_level)
        if self.access_log is False:
            logging.getLogger("uvicorn.access").handlers = []
            logging.getLogger("uvicorn.access").propagate = False

    def _default_logging_config(self) -> dict[str, Any]:
        """LOGGING_CONFIG with --log-format json and --access-log-format applied (the loggers and handlers stay)."""
        config = copy.deepcopy(LOGGING_CONFIG)
        formatters = config["formatters"]
        if self.log_format == "json":
            formatters["default"] = {"()": "pounce.logging.JSONFormatter"}
            formatters["access"] = {"()": "pounce.logging.JSONFormatter", "access_format": self.access_log_format}
        elif self.access_log_format:
            formatters["access"] = {
                **formatters["access"],
                "fmt": "%(levelprefix)s %(message)s",
                "access_format": self.access_log_format,
            }
        return config

    def load_app(self) -> Any:
        """Import the app and return it. Exits with STARTUP_FAILURE on failure."""
        try:
            return import_from_string(self.app)
        except ImportFromStringError as exc:
            logger.error("Error loading ASGI app. %s" % exc)
            sys.exit(STARTUP_FAILURE)

    def _resolve_http(self) -> type[asyncio.Protocol]:
        http = _resolve_alias("http", self.http)
        protocol_class: type[asyncio.Protocol]
        if isinstance(http, str):
            protocol_class = import_from_string(HTTP_PROTOCOLS.get(http, http))
        else:
            protocol_class = http
        if not self.http2:
            return protocol_class
        # --http2: the chosen HTTP/1.1 protocol, plus HTTP/2 (ALPN over TLS, prior knowledge in cleartext).
        import importlib.util

        if importlib.util.find_spec("h2") is None:
            raise ConfigError("--http2 needs the h2 package: pip install 'pounce-asgi[h2]'")
        from pounce.protocols.http.negotiate import http2_variant

        variant = http2_variant(protocol_class)
        if variant is None:
            raise ConfigError(
                "--http2 works with --http auto, fast or h11; a custom HTTP protocol class must offer "
                "HTTP/2 itself (alpn_protocols with 'h2')."
            )
        return variant

    def _resolve_ws(self) -> type[asyncio.Protocol] | None:
        if self.ws == "websockets":
            # Uvicorn 0.54 deprecates this name (its legacy implementation); so does Pounce, in its words.
            warnings.warn(
                "The `websockets` implementation is deprecated (as in Uvicorn); Pounce serves `--ws websockets` "
                "with its wsproto engine. Use `--ws auto` to switch now.",
                PounceDeprecationWarning,
                stacklevel=2,
            )
        ws = _resolve_alias("ws", self.ws)
        if isinstance(ws, str):
            target = WS_PROTOCOLS.get(ws, ws)
            if target is None:
                return None
            cls: type[asyncio.Protocol] | None = import_from_string(target)
            return cls
        return ws  # type: ignore[no-any-return]

    def _create_ssl(self, alpn_protocols: list[str] | None) -> ssl.SSLContext | None:
        def default_factory() -> ssl.SSLContext:
            if not self.ssl_certfile:
                raise RuntimeError(
                    "`default_ssl_context_factory()` requires `ssl_certfile` to be set on `Config`. "
                    "Either pass `ssl_certfile` (and optionally `ssl_keyfile`) or build the `SSLContext` "
                    "directly inside `ssl_context_factory` without calling the default factory."
                )
            return create_ssl_context(
                keyfile=self.ssl_keyfile,
                certfile=self.ssl_certfile,
                password=self.ssl_keyfile_password,
                ssl_version=self.ssl_version,
                cert_reqs=self.ssl_cert_reqs,
                ca_certs=self.ssl_ca_certs,
                ciphers=self.ssl_ciphers,
                alpn_protocols=alpn_protocols,
            )

        if self.ssl_context_factory is not None:
            context = self.ssl_context_factory(self, default_factory)
            if not isinstance(context, ssl.SSLContext):
                raise TypeError(f"`ssl_context_factory` must return an `ssl.SSLContext`, got {type(context).__name__}")
            return context
        if self.is_ssl:
            return default_factory()
        return None

    def _load_ssl(self, alpn_protocols: list[str] | None) -> ssl.SSLContext | None:
        from pounce.tls import TLSConfigError

        try:
            return self._create_ssl(alpn_protocols)
        except TLSConfigError as exc:
            # A bad certificate, key or CA file stops the server at startup, never at the first request.
            logger.error("Invalid TLS configuration: %s", exc)
            sys.exit(STARTUP_FAILURE)

    def validate_ssl(self) -> None:
        """Build the TLS context once to report a bad certificate or key before any worker starts."""
        if self.is_ssl:
            self._load_ssl(None)

    def load(self) -> None:
        assert not self.loaded

        self.http_protocol_class = self._resolve_http()
        alpn_protocols: list[str] | None = getattr(self.http_protocol_class, "alpn_protocols", None)
        self.ssl: ssl.SSLContext | None = self._load_ssl(alpn_protocols)

        encoded_headers = [(key.lower().encode("latin1"), value.encode("latin1")) for key, value in self.headers]
        self.encoded_headers = (
            [(b"server", b"pounce")] + encoded_headers
            if b"server" not in dict(encoded_headers) and self.server_header
            else encoded_headers
        )

        self.ws_protocol_class = self._resolve_ws()
        self.lifespan_class = import_from_string(LIFESPAN[self.lifespan])

        self.loaded_app = self.load_app()

        try:
            self.loaded_app = self.loaded_app()
        except TypeError as exc:
            if self.factory:
                logger.error("Error loading ASGI app factory: %s", exc)
                sys.exit(STARTUP_FAILURE)
        else:
            if not self.factory:
                logger.warning(
                    "ASGI app factory detected. Using it, but please consider setting the --factory flag explicitly."
                )

        if self.interface == "auto":
            if inspect.isclass(self.loaded_app):
                use_asgi_3 = hasattr(self.loaded_app, "__await__")
            elif inspect.isfunction(self.loaded_app):
                use_asgi_3 = inspect.iscoroutinefunction(self.loaded_app)
            else:
                call = getattr(self.loaded_app, "__call__", None)
                use_asgi_3 = inspect.iscoroutinefunction(call)
            self.interface = "asgi3" if use_asgi_3 else "asgi2"

        if self.interface == "wsgi":
            self.loaded_app = WSGIMiddleware(self.loaded_app)
            self.ws_protocol_class = None
        elif self.interface == "asgi2":
            self.loaded_app = ASGI2Middleware(self.loaded_app)

        if logger.getEffectiveLevel() <= TRACE_LOG_LEVEL:
            self.loaded_app = MessageLoggerMiddleware(self.loaded_app)
        if self.proxy_headers:
            self.loaded_app = ServerProxyHeaders(self.loaded_app, trusted_hosts=self.forwarded_allow_ips)

        self.loaded_event_handlers = self._load_event_handlers()
        self.server_config = self.freeze()
        self.loaded = True

    def freeze(self) -> ServerConfig:
        """Snapshot the loaded configuration into the immutable form the runtime reads."""
        return ServerConfig(
            app=self.loaded_app,
            http_protocol_class=self.http_protocol_class,
            ws_protocol_class=self.ws_protocol_class,
            lifespan_class=self.lifespan_class,
            ssl=self.ssl,
            host=self.host,
            port=self.port,
            uds=self.uds,
            fd=self.fd,
            root_path=self.root_path,
            interface=self.interface,
            asgi_version=self.asgi_version,
            access_log=self.access_log,
            default_headers=tuple(self.encoded_headers),
            date_header=self.date_header,
            limit_concurrency=self.limit_concurrency,
            limit_max_requests=self.limit_max_requests,
            limit_max_requests_jitter=self.limit_max_requests_jitter,
            backlog=self.backlog,
            timeout_keep_alive=self.timeout_keep_alive,
            timeout_request_header=self.timeout_request_header,
            timeout_graceful_shutdown=self.timeout_graceful_shutdown,
            timeout_notify=self.timeout_notify,
            timeout_worker_healthcheck=self.timeout_worker_healthcheck,
            h11_max_incomplete_event_size=self.h11_max_incomplete_event_size,
            # 0: no limit of the option's own; the whole head is still bounded.
            max_request_line_size=self.limit_request_line or self.max_request_head,
            max_field_size=self.limit_request_field_size or self.max_request_head,
            max_request_head=self.max_request_head,
            max_header_size=max(self.h11_max_incomplete_event_size or 0, H2_MAX_HEADER_LIST),
            ws_max_size=self.ws_max_size,
            ws_max_queue=self.ws_max_queue,
            ws_ping_interval=self.ws_ping_interval,
            ws_ping_timeout=self.ws_ping_timeout,
            ws_per_message_deflate=self.ws_per_message_deflate,
            limit_request_body=self.limit_request_body,
            # 0: no count limit (the head's size still bounds the count).
            limit_request_fields=self.limit_request_fields or self.max_request_head,
            timeout_request_body=self.timeout_request_body,
            timeout_write=self.timeout_write,
            h2_max_concurrent_streams=self.h2_max_concurrent_streams,
            h2_max_reset_rate=self.h2_max_reset_rate,
            h2_max_control_frame_rate=self.h2_max_control_frame_rate,
            workers=max(self.workers, 1),
            worker_mode=str(self.worker_mode),
            reset_contextvars=self.reset_contextvars,
            factory=self.factory,
            event_handlers=self.loaded_event_handlers,
            access_log_format=self.parsed_access_log_format,
            log_format=str(self.log_format),
            metrics_address=self.metrics_address,
            otel=self.otel,
            server_timing=self.server_timing,
            http3=self._resolve_http3(),
        )

    def _resolve_http3(self) -> HTTP3Options | None:
        if not self.http3:
            return None
        from pounce.protocols.http3.options import http3_problem, resolve_http3

        problem = http3_problem(self.http3_backend, self.ssl_certfile, self.ssl_keyfile, self.http3_0rtt, self.http3_retry)
        if problem is not None:
            raise ConfigError(problem)
        assert self.ssl_certfile is not None and self.ssl_keyfile is not None
        return resolve_http3(
            self.http3_port,
            self.http3_0rtt,
            self.http3_retry,
            self.ssl_certfile,
            self.ssl_keyfile,
            self.ssl_keyfile_password,
            backend=self.http3_backend,
        )

    def setup_event_loop(self) -> None:
        raise AttributeError(
            "The `setup_event_loop` method was replaced by `get_loop_factory` in uvicorn 0.36.0 (Pounce follows that "
            "API); neither is meant to be called directly."
        )

    def get_loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop] | None:
        loop = _resolve_alias("loop", self.loop)
        if loop in LOOP_FACTORIES:
            target = LOOP_FACTORIES[loop]
            if target is None:
                return None
            factory: Callable[..., Callable[[], asyncio.AbstractEventLoop]] = import_from_string(target)
            return factory(use_subprocess=self.use_subprocess)
        try:
            custom: Callable[[], asyncio.AbstractEventLoop] = import_from_string(loop)
            return custom
        except ImportFromStringError as exc:
            logger.error("Error loading custom loop setup function. %s" % exc)
            sys.exit(STARTUP_FAILURE)

    def bind_socket(self) -> socket.socket:
        """Bind the listening socket in this (parent) process, for supervisors that share it."""
        logger_args: list[str | int]
        if self.uds is not None:
            path = self.uds
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(path)
                os.chmod(self.uds, 0o666)
            except OSError as exc:
                logger.error(exc)
                sys.exit(STARTUP_FAILURE)
            message = "Pounce running on unix socket %s (Press CTRL+C to quit)"
            color_message = "Pounce running on \033[1m%s\033[0m (Press CTRL+C to quit)"
            logger_args = [self.uds]
        elif self.fd is not None:
            sock = socket.fromfd(self.fd, socket.AF_UNIX, socket.SOCK_STREAM)
            message = "Pounce running on socket %s (Press CTRL+C to quit)"
            color_message = "Pounce running on \033[1m%s\033[0m (Press CTRL+C to quit)"
            logger_args = [sock.getsockname()]
        else:
            family = socket.AF_INET
            addr_format = "%s://%s:%d"
            if self.host and ":" in self.host:
                family = socket.AF_INET6
                addr_format = "%s://[%s]:%d"
            sock = socket.socket(family=family)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, self.port))
            except OSError as exc:
                logger.error(exc)
                sys.exit(STARTUP_FAILURE)
            message = f"Pounce running on {addr_format} (Press CTRL+C to quit)"
            color_message = "Pounce running on \033[1m" + addr_format + "\033[0m (Press CTRL+C to quit)"
            protocol_name = "https" if self.is_ssl else "http"
            logger_args = [protocol_name, self.host, sock.getsockname()[1]]
        logger.info(message, *logger_args, extra={"color_message": color_message})
        sock.set_inheritable(True)
        return sock


_WILDCARD_HOSTS = frozenset(("", "0.0.0.0", "::"))
_LOOPBACK_NAMES = frozenset(("localhost", "127.0.0.1"))


def _same_host(one: str | None, other: str | None) -> bool:
    """Whether two listen hosts can collide: equal, the same loopback name, or either one a wildcard."""
    a, b = (one or "").strip("[]"), (other or "").strip("[]")
    return a == b or a in _WILDCARD_HOSTS or b in _WILDCARD_HOSTS or {a, b} <= _LOOPBACK_NAMES


def _load_simple_env_file(env_file: str | os.PathLike[str]) -> None:
    """``KEY=value`` lines, for when python-dotenv is not installed; existing variables win, as in dotenv."""
    with open(env_file) as file:
        for raw in file:
            line = raw.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, _, value = line.removeprefix("export ").partition("=")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            os.environ.setdefault(key.strip(), value)

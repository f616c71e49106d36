"""The ``pounce`` command line and ``pounce.run()``: Uvicorn's flags and API, Pounce underneath.

Every option keeps Uvicorn 0.54's name, type, default and meaning. Options are read from the
command line, then ``POUNCE_<NAME>``, then ``UVICORN_<NAME>`` environment variables, so existing
deployments keep working when the command changes from ``uvicorn`` to ``pounce``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import ssl
import sys
from collections.abc import Callable, Sequence
from configparser import RawConfigParser
from typing import IO, Any, get_args

import click

import pounce
from pounce._types import ASGIApplication
from pounce.config import (
    INTERFACES,
    LIFESPAN,
    LOG_FORMATS,
    LOG_LEVELS,
    LOGGING_CONFIG,
    SSL_PROTOCOL_VERSION,
    DEFAULT_LIMIT_REQUEST_FIELD_SIZE,
    DEFAULT_LIMIT_REQUEST_FIELDS,
    DEFAULT_LIMIT_REQUEST_LINE,
    STARTUP_FAILURE,
    WORKER_MODES,
    Config,
    ConfigError,
    OptionValueError,
    HTTPProtocolType,
    InterfaceType,
    LifespanType,
    LogFormatType,
    LoopFactoryType,
    WorkerModeType,
    WSProtocolType,
)
from pounce.bench.entry import ServeOrBench
from pounce.container import PidFile
from pounce.importer import ImportFromStringError, import_from_string
from pounce.observability.bus import EventHandler, check_handler
from pounce.server import Server
from pounce.systemd import activated_sockets, service_manager

LEVEL_CHOICES = click.Choice(list(LOG_LEVELS.keys()))
LIFESPAN_CHOICES = click.Choice(list(LIFESPAN.keys()))
INTERFACE_CHOICES = click.Choice(INTERFACES)
WORKER_MODE_CHOICES = click.Choice(WORKER_MODES)

logger = logging.getLogger("uvicorn.error")


def _metavar_from_type(_type: Any) -> str:
    return f"[{'|'.join(key for key in get_args(_type) if key != 'none')}]"


def gil_state() -> str:
    """'free-threaded' when this interpreter runs without the GIL, else 'GIL'."""
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    return "free-threaded" if is_gil_enabled is not None and not is_gil_enabled() else "GIL"


def print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(
        f"Running pounce {pounce.__version__} with {platform.python_implementation()} "
        f"{platform.python_version()} ({gil_state()}) on {platform.system()}"
    )
    ctx.exit()


# ServeOrBench: `pounce bench ...` goes to pounce.bench.cli (and --help says so); anything else is served.
@click.command(cls=ServeOrBench)
@click.argument("app")
@click.option("--host", type=str, default="127.0.0.1", help="Bind socket to this host.", show_default=True)
@click.option(
    "--port",
    type=int,
    default=8000,
    help="Bind socket to this port. If 0, an available port will be picked.",
    show_default=True,
)
@click.option("--uds", type=str, default=None, help="Bind to a UNIX domain socket.")
@click.option("--fd", type=int, default=None, help="Bind to socket from this file descriptor.")
@click.option(
    "--pid-file",
    type=str,
    default=None,
    help="Write the server's process id to this file once it is bound; removed on exit.",
)
@click.option("--reload", is_flag=True, default=False, help="Enable auto-reload.")
@click.option(
    "--reload-dir",
    "reload_dirs",
    multiple=True,
    help="Set reload directories explicitly, instead of using the current working directory.",
    type=click.Path(exists=True),
)
@click.option(
    "--reload-include",
    "reload_includes",
    multiple=True,
    help="Set glob patterns to include while watching for files. Includes '*.py' by default; these defaults can "
    "be overridden with `--reload-exclude`.",
)
@click.option(
    "--reload-exclude",
    "reload_excludes",
    multiple=True,
    help="Set glob patterns to exclude while watching for files. Includes '.*, .py[cod], .sw.*, ~*' by default; "
    "these defaults can be overridden with `--reload-include`.",
)
@click.option(
    "--reload-delay",
    type=float,
    default=0.25,
    show_default=True,
    help="Delay between previous and next check if application needs to be. Defaults to 0.25s.",
)
@click.option(
    "--workers",
    default=None,
    type=int,
    help="Number of workers. Defaults to the $WEB_CONCURRENCY environment variable if available, or 1 "
    "(0 is 1, as in Uvicorn). Not valid with --reload.",
)
@click.option(
    "--worker-mode",
    type=WORKER_MODE_CHOICES,
    default="auto",
    show_default=True,
    help="Run workers as threads of one process (free-threaded Python) or as processes. "
    "'auto' picks threads when the GIL is disabled, processes otherwise.",
)
@click.option(
    "--loop",
    type=str,
    metavar=_metavar_from_type(LoopFactoryType),
    default="auto",
    help="Event loop factory implementation. 'uvloop' is accepted and runs asyncio.",
    show_default=True,
)
@click.option(
    "--http",
    type=str,
    metavar="[auto|fast|h11]",
    default="auto",
    help="HTTP protocol implementation. 'auto' and 'fast' use Pounce's own parser; 'httptools' is accepted "
    "as a name for it.",
    show_default=True,
)
@click.option(
    "--http2",
    is_flag=True,
    default=False,
    help="Enable HTTP/2 support (TLS: ALPN h2; cleartext: prior knowledge), next to HTTP/1.1. Needs pounce-asgi[h2].",
    show_default=True,
)
@click.option(
    "--http3",
    is_flag=True,
    default=False,
    help="Serve HTTP/3 over QUIC on UDP next to the TLS listener; TCP responses announce it (Alt-Svc). "
    "Needs --ssl-certfile, --ssl-keyfile and pounce-asgi[h3].",
)
@click.option("--http3-port", type=int, default=None, help="UDP port for HTTP/3.  [default: the TLS port]")
@click.option(
    "--http3-backend",
    type=click.Choice(["auto", "aioquic", "zoomies"]),
    default="auto",
    help="QUIC library behind HTTP/3; 'auto' is aioquic.",
    show_default=True,
)
@click.option(
    "--http3-0rtt",
    "http3_0rtt",
    is_flag=True,
    default=False,
    help="Accept 0-RTT early data on resumed HTTP/3 connections (replayable: only for idempotent apps).",
)
@click.option(
    "--http3-retry",
    is_flag=True,
    default=False,
    help="Validate client addresses with a QUIC Retry before the handshake (one more round trip).",
)
@click.option(
    "--ws",
    type=str,
    metavar="[auto|none|wsproto]",
    default="auto",
    help="WebSocket protocol implementation. 'websockets' is accepted and served by wsproto.",
    show_default=True,
)
@click.option(
    "--ws-max-size", type=int, default=16777216, help="WebSocket max size message in bytes", show_default=True
)
@click.option(
    "--ws-max-queue",
    type=int,
    default=32,
    help="The maximum length of the WebSocket message queue.",
    show_default=True,
)
@click.option(
    "--ws-ping-interval", type=float, default=20.0, help="WebSocket ping interval in seconds.", show_default=True
)
@click.option(
    "--ws-ping-timeout", type=float, default=20.0, help="WebSocket ping timeout in seconds.", show_default=True
)
@click.option(
    "--ws-per-message-deflate",
    type=bool,
    default=True,
    help="WebSocket per-message-deflate compression",
    show_default=True,
)
@click.option(
    "--lifespan", type=LIFESPAN_CHOICES, default="auto", help="Lifespan implementation.", show_default=True
)
@click.option(
    "--interface",
    type=INTERFACE_CHOICES,
    default="auto",
    help="Select ASGI3, ASGI2, or WSGI as the application interface.",
    show_default=True,
)
@click.option(
    "--env-file", type=click.Path(exists=True), default=None, help="Environment configuration file.", show_default=True
)
@click.option(
    "--log-config",
    type=click.Path(exists=True),
    default=None,
    help="Logging configuration file. Supported formats: .ini, .json, .yaml.",
    show_default=True,
)
@click.option(
    "--log-level", type=LEVEL_CHOICES, default=None, help="Log level. [default: info]", show_default=True
)
@click.option("--access-log/--no-access-log", is_flag=True, default=True, help="Enable/Disable access log.")
@click.option(
    "--access-log-format",
    type=str,
    default=None,
    help="Access log line with named fields, e.g. '{client} \"{request_line}\" {status} {bytes} {duration_ms}ms "
    "{header.x-request-id}'. Default: Uvicorn's line.",
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="text",
    show_default=True,
    help="'json' writes every error and access record as one JSON object per line.",
)
@click.option(
    "--event-handler",
    "event_handlers",
    multiple=True,
    metavar="MODULE:CALLABLE",
    help="Call this function with every server event (repeatable). See pounce.observability.events.",
)
@click.option(
    "--metrics",
    type=str,
    default=None,
    metavar="HOST:PORT",
    help="Serve Prometheus metrics at http://HOST:PORT/metrics, a listener of its own. Needs pounce-asgi[metrics].",
)
@click.option(
    "--otel",
    is_flag=True,
    default=False,
    help="OpenTelemetry: a server span per request; exporter from OTEL_TRACES_EXPORTER etc. Needs pounce-asgi[otel].",
)
@click.option(
    "--server-timing",
    is_flag=True,
    default=False,
    help="Add a Server-Timing header: time before the app was called, and the app's time to its first byte.",
)
@click.option("--use-colors/--no-use-colors", is_flag=True, default=None, help="Enable/Disable colorized logging.")
@click.option(
    "--proxy-headers/--no-proxy-headers",
    is_flag=True,
    default=True,
    help="Enable/Disable X-Forwarded-Proto, X-Forwarded-For to populate url scheme and remote address info.",
)
@click.option(
    "--server-header/--no-server-header", is_flag=True, default=True, help="Enable/Disable default Server header."
)
@click.option(
    "--date-header/--no-date-header", is_flag=True, default=True, help="Enable/Disable default Date header."
)
@click.option(
    "--forwarded-allow-ips",
    type=str,
    default=None,
    help="Comma separated list of IP Addresses, IP Networks, or literals (e.g. UNIX Socket path) to trust with "
    "proxy headers. Defaults to the $FORWARDED_ALLOW_IPS environment variable if available, or '127.0.0.1,::1'. "
    "The literal '*' means trust everything.",
)
@click.option(
    "--root-path",
    type=str,
    default="",
    help="Set the ASGI 'root_path' for applications submounted below a given URL path.",
)
@click.option(
    "--limit-concurrency",
    type=int,
    default=None,
    help="Maximum number of concurrent connections or tasks to allow, before issuing HTTP 503 responses.",
)
@click.option("--backlog", type=int, default=2048, help="Maximum number of connections to hold in backlog")
@click.option(
    "--limit-max-requests",
    type=int,
    default=None,
    help="Maximum number of requests to service before recycling the worker (or stopping a single server).",
)
@click.option(
    "--limit-max-requests-jitter",
    type=int,
    default=0,
    help="Maximum jitter to add to limit_max_requests. Staggers worker restarts to avoid all workers restarting "
    "simultaneously.",
    show_default=True,
)
@click.option(
    "--timeout-keep-alive",
    type=int,
    default=5,
    help="Close Keep-Alive connections if no new data is received within this timeout (in seconds).",
    show_default=True,
)
@click.option(
    "--timeout-request-header",
    type=float,
    default=10.0,
    help="Close connections whose request headers have not fully arrived within this many seconds.",
    show_default=True,
)
@click.option(
    "--timeout-request-body",
    type=float,
    default=30.0,
    help="Close connections whose request body makes no progress (64 KiB, or its end) within this many seconds.",
    show_default=True,
)
@click.option(
    "--timeout-write",
    type=float,
    default=60.0,
    help="Close connections whose client accepts no response bytes for this many seconds while output waits.",
    show_default=True,
)
@click.option(
    "--limit-request-body",
    type=int,
    default=None,
    help="Maximum size of a request body in bytes; larger bodies get a 413. Unlimited by default.",
)
@click.option(
    "--limit-request-line",
    type=int,
    default=DEFAULT_LIMIT_REQUEST_LINE,
    help="Maximum size of the request line (method, target, version) in bytes; longer gets a 414. "
    "0: no limit but the whole head's (1 MiB).",
    show_default=True,
)
@click.option(
    "--limit-request-fields",
    type=int,
    default=DEFAULT_LIMIT_REQUEST_FIELDS,
    help="Maximum number of header fields in a request; more get a 431. 0: no limit but the whole head's.",
    show_default=True,
)
@click.option(
    "--limit-request-field-size",
    type=int,
    default=DEFAULT_LIMIT_REQUEST_FIELD_SIZE,
    help="Maximum size of one header field line (name and value) in bytes; larger gets a 431. "
    "0: no limit but the whole head's.",
    show_default=True,
)
@click.option(
    "--h2-max-concurrent-streams",
    type=int,
    default=100,
    help="HTTP/2: streams (and app tasks) one connection may have running at once.",
    show_default=True,
)
@click.option(
    "--h2-max-reset-rate",
    type=int,
    default=100,
    help="HTTP/2: stream resets per second a client may cause before the connection gets GOAWAY "
    "ENHANCE_YOUR_CALM.",
    show_default=True,
)
@click.option(
    "--h2-max-control-frame-rate",
    type=int,
    default=500,
    help="HTTP/2: PING, SETTINGS, PRIORITY and empty frames per second a client may send before GOAWAY "
    "ENHANCE_YOUR_CALM.",
    show_default=True,
)
@click.option(
    "--timeout-graceful-shutdown",
    type=int,
    default=None,
    help="Maximum number of seconds to wait for graceful shutdown.",
)
@click.option(
    "--timeout-worker-healthcheck",
    type=int,
    default=5,
    help="Maximum number of seconds to wait for a worker to respond to a healthcheck.",
    show_default=True,
)
@click.option("--ssl-keyfile", type=str, default=None, help="SSL key file", show_default=True)
@click.option("--ssl-certfile", type=str, default=None, help="SSL certificate file", show_default=True)
@click.option(
    "--ssl-reload-interval",
    type=float,
    default=None,
    help="Check the certificate and key files this often (seconds) and load them again when they change "
    "(SIGHUP loads them again too).",
)
@click.option("--ssl-keyfile-password", type=str, default=None, help="SSL keyfile password", show_default=True)
@click.option(
    "--ssl-version",
    type=int,
    default=int(SSL_PROTOCOL_VERSION),
    help="SSL version to use (see stdlib ssl module's)",
    show_default=True,
)
@click.option(
    "--ssl-cert-reqs",
    type=int,
    default=int(ssl.CERT_NONE),
    help="Whether client certificate is required (see stdlib ssl module's)",
    show_default=True,
)
@click.option("--ssl-ca-certs", type=str, default=None, help="CA certificates file", show_default=True)
@click.option(
    "--ssl-ciphers",
    type=str,
    default=None,
    help="Ciphers to use (see stdlib ssl module's). Defaults to OpenSSL's safe defaults.",
    show_default=True,
)
@click.option(
    "--header",
    "headers",
    multiple=True,
    help="Specify custom default HTTP response headers as a Name:Value pair",
)
@click.option(
    "--version",
    is_flag=True,
    callback=print_version,
    expose_value=False,
    is_eager=True,
    help="Display the pounce version and exit.",
)
@click.option(
    "--app-dir",
    default="",
    show_default=True,
    help="Look for APP in the specified directory, by adding this to the PYTHONPATH. Defaults to the current "
    "working directory.",
)
@click.option(
    "--h11-max-incomplete-event-size",
    "h11_max_incomplete_event_size",
    type=int,
    default=None,
    help="For h11, the maximum number of bytes to buffer of an incomplete event.",
)
@click.option(
    "--reset-contextvars",
    is_flag=True,
    default=False,
    help="Run each ASGI request in a fresh contextvars.Context. Hides context set in the lifespan.",
    show_default=True,
)
@click.option(
    "--factory",
    is_flag=True,
    default=False,
    help="Treat APP as an application factory, i.e. a () -> <ASGI app> callable.",
    show_default=True,
)
def main(app: str, **options: Any) -> None:
    headers = []
    for header in options.pop("headers"):
        if ":" not in header or not header.partition(":")[0].strip():
            raise click.BadParameter(f"{header!r} is not a Name:Value pair.", param_hint="'--header'")
        headers.append(header.split(":", 1))
    _check_event_handlers(options["event_handlers"])
    options["event_handlers"] = list(options["event_handlers"]) or None
    _check_combinations(options)
    log_config = options.pop("log_config")
    try:
        run(
            app,
            log_config=LOGGING_CONFIG if log_config is None else log_config,
            reload_dirs=options.pop("reload_dirs") or None,
            reload_includes=options.pop("reload_includes") or None,
            reload_excludes=options.pop("reload_excludes") or None,
            headers=headers,  # [name, value] lists, as Uvicorn passes them
            **options,
        )
    except OptionValueError as exc:
        if exc.option.isupper():  # an environment variable (WEB_CONCURRENCY), not an option
            raise click.UsageError(str(exc)) from exc
        raise click.BadParameter(exc.problem, param_hint=f"'--{exc.option.replace('_', '-')}'") from exc
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc


def _check_event_handlers(specs: tuple[str, ...]) -> None:
    """Import every --event-handler once here, so a bad one is a usage error (exit 2), not a worker's failure.

    The strings go on to the workers, which import them again (each worker process has its own import).
    """
    for spec in specs:
        try:
            check_handler(import_from_string(spec))
        except (ImportFromStringError, ImportError, TypeError) as exc:
            raise click.BadParameter(str(exc), param_hint="'--event-handler'") from None


def _check_combinations(options: dict[str, Any]) -> None:
    """Reject option combinations that cannot work, as a usage error (exit code 2)."""
    if options["http2"]:
        import importlib.util

        if importlib.util.find_spec("h2") is None:
            raise click.UsageError("--http2 needs the h2 package: pip install 'pounce-asgi[h2]'")
    if options["http3"]:
        from pounce.protocols.http3.options import http3_problem

        problem = http3_problem(options["http3_backend"], options["ssl_certfile"], options["ssl_keyfile"])
        if problem is not None:
            raise click.UsageError(problem)
    if options["uds"] is not None and options["fd"] is not None:
        raise click.UsageError("--uds and --fd both choose the listening socket; give one of them.")
    if options["ssl_keyfile"] and not options["ssl_certfile"]:
        raise click.UsageError("--ssl-keyfile needs --ssl-certfile.")
    if options["fd"] is not None and options["fd"] >= 0:
        try:
            os.fstat(options["fd"])
        except OSError:
            raise click.BadParameter(f"{options['fd']} is not an open file descriptor.", param_hint="'--fd'") from None
    # Values that leave the server unable to serve. Uvicorn takes some of them and then hangs (a backlog
    # of 0: asyncio accepts nothing), exits at once (no request allowed) or answers only 503s; here they
    # are usage errors. (--workers 0 is one worker, as in Uvicorn; out-of-range values are Config's.)
    for name in (
        "limit_concurrency",
        "limit_max_requests",
        "backlog",
        "ws_max_size",
        "ws_max_queue",
        "limit_request_body",
        "h2_max_concurrent_streams",
        "h2_max_reset_rate",
        "h2_max_control_frame_rate",
    ):
        value = options[name]
        if value is not None and value < 1:
            raise click.BadParameter("must be at least 1.", param_hint=f"'--{name.replace('_', '-')}'")
    for name in ("timeout_request_header", "timeout_request_body", "timeout_write"):
        if options[name] <= 0:
            raise click.BadParameter("must be more than 0.", param_hint=f"'--{name.replace('_', '-')}'")


def _envvars(command: click.Command) -> None:
    """Read every option from POUNCE_<NAME>, then UVICORN_<NAME> (click takes the first one set)."""
    for param in command.params:
        if param.name and param.envvar is None and param.name != "version":
            param.envvar = [f"POUNCE_{param.name.upper()}", f"UVICORN_{param.name.upper()}"]


_envvars(main)


def run(
    app: ASGIApplication | Callable[..., Any] | str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    uds: str | None = None,
    fd: int | None = None,
    pid_file: str | os.PathLike[str] | None = None,
    loop: LoopFactoryType | str = "auto",
    http: type[asyncio.Protocol] | HTTPProtocolType | str = "auto",
    http2: bool = False,
    ws: type[asyncio.Protocol] | WSProtocolType | str = "auto",
    ws_max_size: int = 16777216,
    ws_max_queue: int = 32,
    ws_ping_interval: float | None = 20.0,
    ws_ping_timeout: float | None = 20.0,
    ws_per_message_deflate: bool = True,
    lifespan: LifespanType = "auto",
    interface: InterfaceType = "auto",
    reload: bool = False,
    reload_dirs: list[str] | str | None = None,
    reload_includes: list[str] | str | None = None,
    reload_excludes: list[str] | str | None = None,
    reload_delay: float = 0.25,
    workers: int | None = None,
    env_file: str | os.PathLike[str] | None = None,
    log_config: dict[str, Any] | str | os.PathLike[str] | RawConfigParser | IO[Any] | None = LOGGING_CONFIG,
    log_level: str | int | None = None,
    access_log: bool = True,
    proxy_headers: bool = True,
    server_header: bool = True,
    date_header: bool = True,
    forwarded_allow_ips: list[str] | str | None = None,
    root_path: str = "",
    limit_concurrency: int | None = None,
    backlog: int = 2048,
    limit_max_requests: int | None = None,
    limit_max_requests_jitter: int = 0,
    timeout_keep_alive: int = 5,
    timeout_graceful_shutdown: int | None = None,
    timeout_worker_healthcheck: int = 5,
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
    use_colors: bool | None = None,
    app_dir: str | None = None,
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
) -> None:
    if app_dir is not None:
        sys.path.insert(0, app_dir)

    config = Config(
        app,
        host=host,
        port=port,
        uds=uds,
        fd=fd,
        pid_file=pid_file,
        loop=loop,
        http=http,
        http2=http2,
        ws=ws,
        ws_max_size=ws_max_size,
        ws_max_queue=ws_max_queue,
        ws_ping_interval=ws_ping_interval,
        ws_ping_timeout=ws_ping_timeout,
        ws_per_message_deflate=ws_per_message_deflate,
        lifespan=lifespan,
        interface=interface,
        reload=reload,
        reload_dirs=reload_dirs,
        reload_includes=reload_includes,
        reload_excludes=reload_excludes,
        reload_delay=reload_delay,
        workers=workers,
        env_file=env_file,
        log_config=log_config,
        log_level=log_level,
        access_log=access_log,
        proxy_headers=proxy_headers,
        server_header=server_header,
        date_header=date_header,
        forwarded_allow_ips=forwarded_allow_ips,
        root_path=root_path,
        limit_concurrency=limit_concurrency,
        backlog=backlog,
        limit_max_requests=limit_max_requests,
        limit_max_requests_jitter=limit_max_requests_jitter,
        timeout_keep_alive=timeout_keep_alive,
        timeout_graceful_shutdown=timeout_graceful_shutdown,
        timeout_worker_healthcheck=timeout_worker_healthcheck,
        ssl_keyfile=ssl_keyfile,
        ssl_certfile=ssl_certfile,
        ssl_reload_interval=ssl_reload_interval,
        ssl_keyfile_password=ssl_keyfile_password,
        ssl_version=ssl_version,
        ssl_cert_reqs=ssl_cert_reqs,
        ssl_ca_certs=ssl_ca_certs,
        ssl_ciphers=ssl_ciphers,
        ssl_context_factory=ssl_context_factory,
        headers=headers,
        use_colors=use_colors,
        factory=factory,
        h11_max_incomplete_event_size=h11_max_incomplete_event_size,
        reset_contextvars=reset_contextvars,
        worker_mode=worker_mode,
        timeout_request_header=timeout_request_header,
        timeout_request_body=timeout_request_body,
        timeout_write=timeout_write,
        limit_request_body=limit_request_body,
        limit_request_fields=limit_request_fields,
        limit_request_line=limit_request_line,
        limit_request_field_size=limit_request_field_size,
        h2_max_concurrent_streams=h2_max_concurrent_streams,
        h2_max_reset_rate=h2_max_reset_rate,
        h2_max_control_frame_rate=h2_max_control_frame_rate,
        event_handlers=event_handlers,
        access_log_format=access_log_format,
        log_format=log_format,
        metrics=metrics,
        otel=otel,
        server_timing=server_timing,
        http3=http3,
        http3_port=http3_port,
        http3_backend=http3_backend,
        http3_0rtt=http3_0rtt,
        http3_retry=http3_retry,
    )

    # Threads share the app object; a reloader or worker processes must import it themselves.
    needs_import_string = config.reload or (config.workers > 1 and worker_mode == "process")
    if needs_import_string and not isinstance(app, str):
        logger.warning("You must pass the application as an import string to enable 'reload' or 'workers'.")
        sys.exit(STARTUP_FAILURE)
    supervised = config.should_reload or config.workers > 1 or worker_mode == "thread"
    if supervised:
        # Workers load the config themselves; check TLS here so a bad file stops us once, clearly.
        config.validate_ssl()
    else:
        config.load_app()

    server = Server(config=config)
    exit_code = 0
    pid_writer: PidFile | None = None
    try:
        if supervised:
            from pounce.supervisors import run_supervised

            exit_code = run_supervised(config)
        else:
            # Under systemd: serve the sockets it passed, tell it when we serve (pounce/systemd.py).
            activated = activated_sockets() or None
            server.service = service_manager()
            server.rotate_on_hup = config.is_ssl  # a SIGHUP loads the certificate again (pounce/cert_reload.py)
            if config.pid_file:
                pid_writer = PidFile(config.pid_file)
                server.on_started.append(pid_writer.write)
                server.on_stopped.append(pid_writer.remove)
            server.run(sockets=activated)
    except KeyboardInterrupt:
        pass
    finally:
        if pid_writer is not None:
            pid_writer.remove()
        if config.uds and os.path.exists(config.uds):
            os.remove(config.uds)

    if exit_code:
        sys.exit(exit_code)
    if not supervised and not server.started:
        sys.exit(STARTUP_FAILURE)


def __getattr__(name: str) -> Any:
    if name == "ServerState":
        import warnings

        # Under the name it was imported by: compat/ makes this very module uvicorn.main too.
        package = "uvicorn" if sys.modules.get("uvicorn.main") is sys.modules[__name__] else "pounce"
        warnings.warn(
            f"{package}.main.ServerState is deprecated, use {package}.server.ServerState instead.", DeprecationWarning
        )
        from pounce.server import ServerState

        return ServerState
    raise AttributeError(f"module {__name__} has no attribute {name}")


__all__ = ["main", "run"]

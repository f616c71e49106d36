"""The ``pounce`` command line: Uvicorn's options, environment variables, exit codes, signals."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from pounce.main import main

ROOT = Path(__file__).resolve().parent.parent

# Every option `uvicorn --help` lists in Uvicorn 0.54.
UVICORN_OPTIONS = """
--host --port --uds --fd --reload --reload-dir --reload-include --reload-exclude --reload-delay --workers --loop
--http --http2 --ws --ws-max-size --ws-max-queue --ws-ping-interval --ws-ping-timeout --ws-per-message-deflate
--lifespan --interface --env-file --log-config --log-level --access-log --no-access-log --use-colors
--no-use-colors --proxy-headers --no-proxy-headers --server-header --no-server-header --date-header
--no-date-header --forwarded-allow-ips --root-path --limit-concurrency --backlog --limit-max-requests
--limit-max-requests-jitter --timeout-keep-alive --timeout-graceful-shutdown --timeout-worker-healthcheck
--ssl-keyfile --ssl-certfile --ssl-keyfile-password --ssl-version --ssl-cert-reqs --ssl-ca-certs --ssl-ciphers
--header --version --app-dir --h11-max-incomplete-event-size --reset-contextvars --factory --help
""".split()


def test_every_uvicorn_option_is_accepted() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    listed = set(re.findall(r"--[a-z0-9-]+", result.output))
    missing = [option for option in UVICORN_OPTIONS if option not in listed]
    assert missing == []


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert re.match(r"Running pounce \S+ with CPython \S+ \((GIL|free-threaded)\) on \w+", result.output)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--uds", "/tmp/x.sock", "--fd", "3"], "--uds and --fd"),
        (["--header", "no-colon"], "Name:Value"),
        (["--ssl-keyfile", "key.pem"], "--ssl-keyfile needs --ssl-certfile"),
        (["--limit-concurrency", "0"], "at least 1"),
        (["--port", "70000"], "Invalid value for '--port': must be between 0 and 65535, not 70000."),
        (["--port", "-1"], "Invalid value for '--port': must be between 0 and 65535, not -1."),
        (["--backlog", "3000000000"], "Invalid value for '--backlog': must be at most 2147483647"),
        (["--backlog", "0"], "Invalid value for '--backlog': must be at least 1."),
        (["--fd", "-1"], "Invalid value for '--fd': must be a file descriptor (0 or more), not -1."),
        (["--fd", "9999"], "Invalid value for '--fd': 9999 is not an open file descriptor."),
        (["--limit-max-requests-jitter", "-1"], "Invalid value for '--limit-max-requests-jitter': must be 0 or more"),
        (["--h11-max-incomplete-event-size", "-1"], "Invalid value for '--h11-max-incomplete-event-size'"),
        (["--timeout-request-header", "0"], "Invalid value for '--timeout-request-header': must be more than 0."),
        (["--lifespan", "sometimes"], "Invalid value for '--lifespan'"),
        (["--worker-mode", "fibers"], "Invalid value for '--worker-mode'"),
        (["--port", "eighty"], "Invalid value for '--port'"),
    ],
)
def test_impossible_options_are_usage_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["tests.apps.basic:hello", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_web_concurrency_that_is_not_a_number_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["tests.apps.basic:hello"], env={"WEB_CONCURRENCY": "four"})
    assert result.exit_code == 2, result.output
    assert "Invalid value for WEB_CONCURRENCY: must be an integer, not 'four'." in result.output


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_an_impossible_port_stops_before_anything_starts(port: str) -> None:
    # Was: the lifespan started, then two OverflowError tracebacks, and the lifespan never shut down.
    with pounce_process("tests.apps.basic:hello", "--port", port) as proc:
        out = _rest_of_output(proc)
    assert proc.returncode == 2, out
    assert "Invalid value for '--port': must be between 0 and 65535" in out
    assert "Traceback" not in out and "Started server process" not in out and "lifespan" not in out


@pytest.mark.parametrize(
    ("args", "env"),
    [
        pytest.param(["--workers", "0"], {}, id="workers-0"),
        pytest.param(["--workers", "-1"], {}, id="workers-negative"),
        pytest.param([], {"WEB_CONCURRENCY": "0"}, id="web-concurrency-0"),
    ],
)
def test_zero_workers_is_one_server_process_as_in_uvicorn(args: list[str], env: dict[str, str]) -> None:
    # Uvicorn: Config(workers=0).workers is 1 ("workers or 1"), and WEB_CONCURRENCY=0 runs no supervisor.
    port = _free_port()
    with pounce_process("tests.apps.basic:hello", "--port", str(port), *args, env=env) as proc:
        lines = _wait_for_line(proc, "Pounce running on")
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
        proc.send_signal(signal.SIGINT)
        out = "".join(lines) + _rest_of_output(proc)
    assert proc.returncode == 0, out
    assert out.count("Started server process") == 1
    assert "worker" not in out.lower(), out  # no supervisor, no worker mode announced


def test_missing_app_argument_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, [])
    assert result.exit_code == 2
    assert "Missing argument 'APP'" in result.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def pounce_process(*args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pounce", *args],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 10.0) -> list[str]:
    """Read output lines until one contains ``needle``; fail after ``timeout`` seconds or at EOF."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    os.set_blocking(proc.stdout.fileno(), False)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            lines.append(line)
            if needle in line:
                return lines
        elif proc.poll() is not None:
            break
        else:
            time.sleep(0.02)
    raise AssertionError(f"{needle!r} not seen; output so far:\n{''.join(lines)}")


def _rest_of_output(proc: subprocess.Popen[str], timeout: float = 10.0) -> str:
    proc.wait(timeout)
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), True)
    return proc.stdout.read()


def test_serves_and_logs_like_uvicorn() -> None:
    port = _free_port()
    with pounce_process("tests.apps.basic:hello", "--port", str(port)) as proc:
        lines = _wait_for_line(proc, "Pounce running on")
        assert any("Started server process" in line for line in lines)
        assert any("Application startup complete." in line for line in lines)
        assert f"Pounce running on http://127.0.0.1:{port} (Press CTRL+C to quit)" in lines[-1]
        response = httpx.get(f"http://127.0.0.1:{port}/path?x=1")
        assert response.text == "Hello, world!"
        assert response.headers["server"] == "pounce"
        assert "date" in response.headers
        access = _wait_for_line(proc, '"GET /path?x=1 HTTP/1.1" 200')
        assert re.search(r'INFO:     127\.0\.0\.1:\d+ - "GET /path\?x=1 HTTP/1\.1" 200 OK', access[-1])
        proc.send_signal(signal.SIGINT)
        rest = _rest_of_output(proc)
    assert "Shutting down" in rest and "Finished server process" in rest
    assert proc.returncode == 0


@pytest.mark.parametrize("prefix", ["POUNCE", "UVICORN"])
def test_options_from_environment(prefix: str) -> None:
    port = _free_port()
    env = {f"{prefix}_PORT": str(port), f"{prefix}_APP": "tests.apps.basic:hello", f"{prefix}_HEADERS": "x-env:yes"}
    env.pop(f"{prefix}_APP")  # the app stays on the command line, as in most Procfiles
    with pounce_process("tests.apps.basic:hello", "--no-access-log", env=env) as proc:
        _wait_for_line(proc, f"127.0.0.1:{port}")
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
        proc.send_signal(signal.SIGTERM)
        _rest_of_output(proc)


def test_pounce_environment_wins_over_uvicorn() -> None:
    port, other = _free_port(), _free_port()
    env = {"POUNCE_PORT": str(port), "UVICORN_PORT": str(other)}
    with pounce_process("tests.apps.basic:hello", env=env) as proc:
        _wait_for_line(proc, f"127.0.0.1:{port}")
        proc.send_signal(signal.SIGTERM)
        _rest_of_output(proc)


def test_uvicorn_implementation_names_are_mapped_with_one_info_line() -> None:
    port = _free_port()
    with pounce_process(
        "tests.apps.basic:hello", "--port", str(port), "--http", "httptools", "--loop", "uvloop"
    ) as proc:
        lines = _wait_for_line(proc, "Pounce running on")
        text = "".join(lines)
        assert "--http httptools is a Uvicorn implementation; Pounce uses its own 'fast' instead." in text
        assert "--loop uvloop is a Uvicorn implementation; Pounce uses its own 'asyncio' instead." in text
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
        proc.send_signal(signal.SIGTERM)
        _rest_of_output(proc)


def test_import_error_exits_with_startup_failure() -> None:
    with pounce_process("tests.apps.basic:missing", "--port", str(_free_port())) as proc:
        out = _rest_of_output(proc)
    assert proc.returncode == 3
    assert 'Error loading ASGI app. Attribute "missing" not found in module "tests.apps.basic".' in out


def test_lifespan_startup_failure_exits_with_3() -> None:
    with pounce_process("tests.apps.basic:failing_startup", "--port", str(_free_port())) as proc:
        out = _rest_of_output(proc)
    assert proc.returncode == 3
    assert "database is down" in out


def test_port_in_use_exits_with_3() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pounce_process("tests.apps.basic:hello", "--port", str(port)) as proc:
            out = _rest_of_output(proc)
    assert proc.returncode == 3
    assert "address already in use" in out


def test_factory_flag() -> None:
    port = _free_port()
    with pounce_process("tests.apps.basic:factory", "--factory", "--port", str(port)) as proc:
        _wait_for_line(proc, "Pounce running on")
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "Hello, world!"
        proc.send_signal(signal.SIGTERM)
        _rest_of_output(proc)


def test_sigterm_lets_the_request_in_flight_finish() -> None:
    port = _free_port()
    with pounce_process("tests.apps.basic:slow", "--port", str(port)) as proc:
        _wait_for_line(proc, "Pounce running on")
        with httpx.Client(timeout=10) as client:
            import threading

            result: dict[str, httpx.Response] = {}
            thread = threading.Thread(
                target=lambda: result.setdefault("r", client.get(f"http://127.0.0.1:{port}/?s=1.0"))
            )
            thread.start()
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            thread.join(10)
        rest = _rest_of_output(proc)
    assert result["r"].status_code == 200 and result["r"].text == "finished"
    assert "Waiting for connections to close." in rest or "Shutting down" in rest
    # As Uvicorn does, the handled SIGTERM is re-raised after the graceful shutdown, so the exit status
    # still tells a supervisor the process ended on SIGTERM.
    assert proc.returncode == -signal.SIGTERM


def test_graceful_shutdown_timeout_cancels_slow_requests() -> None:
    port = _free_port()
    with pounce_process("tests.apps.basic:slow", "--port", str(port), "--timeout-graceful-shutdown", "1") as proc:
        _wait_for_line(proc, "Pounce running on")
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /?s=30 HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.3)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            rest = _rest_of_output(proc, timeout=15)
            assert time.monotonic() - started < 10
    assert "Cancel 1 running task(s), timeout graceful shutdown exceeded" in rest


def test_log_config_file_written_for_uvicorn(tmp_path: Path) -> None:
    log_file = tmp_path / "server.log"
    config = tmp_path / "logging.ini"
    config.write_text(
        f"""[loggers]
keys=root,uvicorn_error

[handlers]
keys=file

[formatters]
keys=plain

[logger_root]
level=WARNING
handlers=

[logger_uvicorn_error]
level=INFO
handlers=file
qualname=uvicorn.error
propagate=0

[handler_file]
class=FileHandler
formatter=plain
args=('{log_file}',)

[formatter_plain]
format=custom %(levelname)s %(message)s
"""
    )
    port = _free_port()
    with pounce_process("tests.apps.basic:hello", "--port", str(port), "--log-config", str(config)) as proc:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "Pounce running on" not in (
            log_file.read_text() if log_file.exists() else ""
        ):
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _rest_of_output(proc)
    assert f"custom INFO Pounce running on http://127.0.0.1:{port}" in log_file.read_text()

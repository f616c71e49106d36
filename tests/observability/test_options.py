"""Option plumbing: CLI -> run() -> Config -> ServerConfig, and the Server-Timing helper."""

from __future__ import annotations

import re
from typing import Any
from unittest import mock

import pytest
from click.testing import CliRunner

from pounce.config import Config, ConfigError
from pounce.main import main
from pounce.observability.access import AccessLogFormat
from pounce.observability.timing import server_timing_header, server_timing_value


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    pass


def invoke(*args: str) -> tuple[int, str, dict[str, Any]]:
    with mock.patch("pounce.main.run") as run:
        result = CliRunner().invoke(main, ["tests.observability.apps:app", *args])
    return result.exit_code, result.output, (run.call_args.kwargs if run.called else {})


def test_cli_options_reach_run() -> None:
    code, output, kwargs = invoke(
        "--access-log-format", "{method} {status}", "--log-format", "json", "--metrics", "127.0.0.1:9100",
        "--otel", "--server-timing",
    )
    assert code == 0, output
    assert kwargs["access_log_format"] == "{method} {status}"
    assert kwargs["log_format"] == "json"
    assert kwargs["metrics"] == "127.0.0.1:9100"
    assert kwargs["otel"] is True and kwargs["server_timing"] is True
    assert kwargs["event_handlers"] is None


def test_cli_defaults() -> None:
    code, output, kwargs = invoke()
    assert code == 0, output
    assert (kwargs["access_log_format"], kwargs["log_format"], kwargs["metrics"], kwargs["otel"], kwargs["server_timing"]) == (
        None, "text", None, False, False
    )


@pytest.mark.parametrize("args", [["--log-format", "xml"], ["--access-log-format", "{nope}"]])
def test_cli_bad_log_options_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(main, ["tests.observability.apps:app", *args])
    assert result.exit_code == 2, result.output


def test_missing_extras_are_usage_errors() -> None:
    with mock.patch("pounce.observability.tracing.available", return_value=False):
        result = CliRunner().invoke(main, ["tests.observability.apps:app", "--otel"])
        assert result.exit_code == 2 and "pounce-asgi[otel]" in result.output
    with mock.patch("pounce.observability.metrics.available", return_value=False):
        with pytest.raises(ConfigError, match=re.escape("pounce-asgi[metrics]")):
            Config(app, metrics="127.0.0.1:9100")


def test_server_config_carries_the_options() -> None:
    handler = lambda event: None  # noqa: E731
    config = Config(app, event_handlers=[handler], access_log_format="{status}", log_format="json",
                    metrics="127.0.0.1:9100", otel=True, server_timing=True)
    config.load()
    cfg = config.server_config
    assert cfg.event_handlers == (handler,)
    assert cfg.access_log_format == AccessLogFormat("{status}")
    assert cfg.log_format == "json"
    assert cfg.metrics_address == ("127.0.0.1", 9100)
    assert cfg.otel is True and cfg.server_timing is True
    Config(app)  # restore the default logging


def test_a_config_with_options_pickles_for_worker_processes() -> None:
    import pickle

    config = Config("tests.observability.apps:app", access_log_format="{status}", metrics="127.0.0.1:9100",
                    event_handlers=["tests.observability.apps:record_to_file"])
    copy = pickle.loads(pickle.dumps(config))
    assert copy.parsed_access_log_format == AccessLogFormat("{status}")
    assert copy.metrics_address == ("127.0.0.1", 9100)
    Config(app)


def test_server_timing_value() -> None:
    value = server_timing_value(10.0, 10.0015, 10.0265)
    assert value == b'queue;dur=1.500;desc="head parsed to app called", app;dur=25.000;desc="app called to first byte"'
    name, negative = server_timing_header(5.0, 4.0, 3.0)
    assert name == b"server-timing"
    assert negative.startswith(b"queue;dur=0.000;") and b"app;dur=0.000;" in negative
    # Parses as RFC-style list of metrics with parameters.
    metrics = [part.strip().split(";") for part in value.decode().split(",")]
    assert [m[0] for m in metrics] == ["queue", "app"]
    assert all(m[1].startswith("dur=") and m[2].startswith('desc="') for m in metrics)

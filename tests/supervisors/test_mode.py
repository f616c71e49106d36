"""How ``--worker-mode`` maps to threads or processes, and what the startup log says about it."""

from __future__ import annotations

import logging
import sys
import sysconfig

import pytest

from pounce.supervisors import mode
from pounce.supervisors.mode import choose_mode, free_threaded_build, gil_enabled, watch_gil


def test_gil_probe_matches_the_interpreter() -> None:
    probe = getattr(sys, "_is_gil_enabled", None)
    assert gil_enabled() is (True if probe is None else probe())
    assert free_threaded_build() is bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


# The two interpreters cannot both be this one: the GIL's state is forced for the mapping tests.
@pytest.fixture(params=[True, False], ids=["gil", "nogil"])
def gil(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setattr(mode, "gil_enabled", lambda: request.param)
    return bool(request.param)


def test_auto_picks_threads_only_without_the_gil(gil: bool) -> None:
    choice = choose_mode("auto", 8)
    assert choice.kind == ("process" if gil else "thread")
    assert choice.warning is None
    assert ("GIL" in choice.reason) and ("8" in choice.reason)


def test_process_is_always_process(gil: bool) -> None:
    choice = choose_mode("process", 2)
    assert choice == mode.ModeChoice("process", "Using 2 worker processes (--worker-mode process).")


def test_thread_under_the_gil_works_but_warns(gil: bool) -> None:
    choice = choose_mode("THREAD", 4)
    assert choice.kind == "thread"
    if gil:
        assert choice.warning is not None and "will not run Python code in parallel" in choice.warning
    else:
        assert choice.warning is None


def test_unknown_mode_is_an_error() -> None:
    with pytest.raises(ValueError, match="worker_mode must be one of auto, thread, process"):
        choose_mode("fork", 2)


def test_watch_gil_is_quiet_when_nothing_changes(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="uvicorn.error"):
        with watch_gil("the app"):
            import json  # noqa: F401 - any import that leaves the GIL as it was
    assert "re-enabled the GIL" not in caplog.text


def test_watch_gil_passes_other_warnings_through() -> None:
    import warnings

    with pytest.warns(RuntimeWarning, match="unrelated"):
        with watch_gil("the app"):
            warnings.warn("unrelated", RuntimeWarning, stacklevel=1)


def test_run_supervised_rejects_an_unknown_mode(caplog: pytest.LogCaptureFixture) -> None:
    from pounce.config import Config
    from pounce.supervisors import run_supervised

    config = Config(app="tests.supervisors.apps:app", workers=2)
    config.worker_mode = "fork"  # past the CLI's own check, as an embedding program could set it
    assert run_supervised(config) == 2
    assert "worker_mode must be one of auto, thread, process, not 'fork'" in caplog.text

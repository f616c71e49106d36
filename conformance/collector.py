"""A pytest plugin that records every test's outcome as JSON lines, and checks which ``uvicorn`` runs.

It is loaded into the conformance venv's pytest with ``-p pounce_conformance_collector`` (the runner copies
this file there under that name), so it imports nothing from the ``conformance`` package.

One line per test is appended as soon as the test finishes, so a run that is killed at its time limit still
leaves every outcome it reached.  With pytest-xdist the reports arrive in the controller process, which is
the only one that writes.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from typing import IO, Any

import pytest

OPTION_OUT = "--conformance-out"
OPTION_COMPAT = "--conformance-compat-dir"
MESSAGE_LIMIT = 400


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pounce-conformance")
    group.addoption(OPTION_OUT, default=None, help="append one JSON line per test outcome to this file")
    group.addoption(OPTION_COMPAT, default=None, help="uvicorn must be imported from under this directory")


def check_uvicorn_is_compat(compat_dir: str) -> str | None:
    """Return why the imported ``uvicorn`` is not Pounce's compat package, or None when it is."""
    try:
        dist = importlib.metadata.distribution("uvicorn")
    except importlib.metadata.PackageNotFoundError:
        pass
    else:
        return f"the real Uvicorn {dist.version} is installed in this environment"
    try:
        import uvicorn
    except ImportError as exc:
        return f"`import uvicorn` failed: {exc!r}"
    location = os.path.realpath(uvicorn.__file__ or "")
    root = os.path.realpath(compat_dir) + os.sep
    if not location.startswith(root):
        return f"uvicorn.__file__ is {location}, not inside {root}"
    return None


def _crash_message(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr: Any = report.longrepr
    if longrepr is None:
        return ""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, reason)
        return str(longrepr[2])
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        text = str(crash.message)
    else:
        lines = str(longrepr).strip().splitlines()
        text = lines[-1] if lines else ""
    return " ".join(text.split())[:MESSAGE_LIMIT]


class OutcomeRecorder:
    """Folds setup/call/teardown reports into one outcome per node id."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.pending: dict[str, dict[str, Any]] = {}

    def _write(self, nodeid: str, record: dict[str, Any]) -> None:
        self.stream.write(json.dumps({"nodeid": nodeid, **record}, sort_keys=True) + "\n")
        self.stream.flush()

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = self.pending.setdefault(report.nodeid, {"outcome": "passed", "message": "", "duration": 0.0})
        record["duration"] = round(record["duration"] + float(report.duration), 4)
        xfail = hasattr(report, "wasxfail")
        if report.when == "setup":
            if report.failed:
                record.update(outcome="error", message=_crash_message(report))
            elif report.skipped:
                record.update(outcome="xfailed" if xfail else "skipped", message=_crash_message(report))
        elif report.when == "call":
            if report.failed:
                record.update(outcome="failed", message=_crash_message(report))
            elif report.skipped:
                record.update(outcome="xfailed" if xfail else "skipped", message=_crash_message(report))
            elif xfail:
                record.update(outcome="xpassed")
        elif report.when == "teardown":
            if report.failed and record["outcome"] in ("passed", "xpassed", "skipped"):
                record.update(outcome="error", message="teardown: " + _crash_message(report))
            self._write(report.nodeid, self.pending.pop(report.nodeid))

    @pytest.hookimpl
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self._write(report.nodeid, {"outcome": "error", "message": _crash_message(report), "duration": 0.0})

    @pytest.hookimpl
    def pytest_sessionfinish(self) -> None:
        # A worker that crashed mid-test never sends a teardown report; keep what arrived.
        for nodeid, record in list(self.pending.items()):
            if record["outcome"] == "passed":
                record.update(outcome="error", message="no teardown report (worker crashed?)")
            self._write(nodeid, record)
        self.pending.clear()


def pytest_configure(config: pytest.Config) -> None:
    compat_dir = config.getoption(OPTION_COMPAT)
    if compat_dir:
        problem = check_uvicorn_is_compat(compat_dir)
        if problem is not None:
            pytest.exit(f"conformance: refusing to run: {problem}", returncode=4)
    out = config.getoption(OPTION_OUT)
    if out and not hasattr(config, "workerinput"):  # only the xdist controller (or a plain run) writes
        stream = open(out, "a", encoding="utf-8")  # noqa: SIM115 - closed in pytest_unconfigure
        config.stash[_STREAM_KEY] = stream
        config.pluginmanager.register(OutcomeRecorder(stream), "pounce-conformance-recorder")


def pytest_unconfigure(config: pytest.Config) -> None:
    stream = config.stash.get(_STREAM_KEY, None)
    if stream is not None:
        stream.close()


_STREAM_KEY = pytest.StashKey[IO[str]]()

"""``pounce bench`` end to end: every built-in workload with each installed load generator and with
the built-in one, --compare with a peer that is installed (a stand-in command) and one that is not,
and bad input. No timing assertions: the figures only have to exist and agree with each other."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pounce.bench.workloads import WORKLOADS

pytestmark = pytest.mark.timeout(180)

FAST = ["--duration", "1", "--rounds", "1", "--warmup", "0.2", "--connections", "8", "--quiet"]

DOC_KEYS = {"schema", "pounce_version", "started_at", "finished_at", "command", "machine", "python", "settings",
            "cpus", "load_generators", "workloads", "servers", "commands", "results", "ratios", "skipped",
            "warnings", "runs"}
MACHINE_KEYS = {"cpu_model", "cpu_count", "usable_cpus", "memory_bytes", "kernel", "platform", "load_average"}
PYTHON_KEYS = {"executable", "version", "implementation", "free_threaded_build", "gil_enabled", "build"}
RUN_KEYS = {"server", "workload", "round", "ok", "error", "generator", "connections", "requests", "seconds",
            "requests_per_sec", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "errors", "non_2xx", "bytes",
            "bytes_per_sec", "chunk_ms", "server_cpu_seconds", "server_cpu_pct", "server_other_cpu_pct",
            "load_cpu_seconds", "load_cpu_pct", "load_other_cpu_pct", "requests_per_cpu_sec",
            "load_requests_per_cpu_sec", "rss_idle_bytes",
            "rss_peak_bytes", "pss_peak_bytes", "processes", "paced_by", "stop_seconds", "stop_forced"}
RESULT_KEYS = {"server", "workload", "generator", "runs", "ok_runs", "requests_per_sec", "rps_spread_pct",
               "p50_ms", "p90_ms", "p99_ms", "p999_ms", "errors", "non_2xx", "requests_per_cpu_sec",
               "server_cpu_pct", "server_other_cpu_pct", "load_cpu_pct", "rss_peak_bytes", "pss_peak_bytes",
               "processes", "bytes_per_sec", "chunk_ms", "paced_by", "error"}


def bench(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pounce.bench", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def run_all(tmp: Path, load: str, workloads: list[str]) -> dict[str, Any]:
    done = bench("--workload", ",".join(workloads), "--load", load, *FAST, "--json", "out.json",
                 "--html", "out.html", cwd=tmp)
    assert done.returncode == 0, done.stdout + done.stderr
    doc: dict[str, Any] = json.loads((tmp / "out.json").read_text())
    doc["_html"] = (tmp / "out.html").read_text()
    doc["_stdout"] = done.stdout
    return doc


@pytest.fixture(scope="module")
def builtin_doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_all(tmp_path_factory.mktemp("bench-builtin"), "builtin", list(WORKLOADS))


@pytest.fixture(scope="module")
def installed_doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    wanted = [w.name for w in WORKLOADS.values()
              if {"http1": "wrk", "http2": "h2load"}.get(w.protocol) and shutil.which(
                  {"http1": "wrk", "http2": "h2load"}[w.protocol])]
    if not wanted:
        pytest.skip("neither wrk nor h2load is installed")
    return run_all(tmp_path_factory.mktemp("bench-installed"), "auto", wanted)


def check_doc(doc: dict[str, Any], generators: dict[str, str]) -> None:
    assert DOC_KEYS <= doc.keys()
    assert MACHINE_KEYS <= doc["machine"].keys()
    assert PYTHON_KEYS <= doc["python"].keys()
    assert doc["python"]["gil_enabled"] in (True, False)
    assert {"server", "load", "separate", "description"} <= doc["cpus"].keys()
    names = {w["name"] for w in doc["workloads"]}
    assert names == set(generators)
    for run in doc["runs"]:
        assert RUN_KEYS <= run.keys()
        assert run["ok"], run["error"]
        assert run["requests"] > 0 and run["requests_per_sec"] > 0
        assert run["generator"] == generators[run["workload"]]
        assert run["rss_peak_bytes"] > 0 and run["pss_peak_bytes"] > 0
        assert run["server_cpu_seconds"] > 0
        assert run["non_2xx"] == 0
        assert run["p50_ms"] <= run["p99_ms"] <= run["p999_ms"]
        assert run["paced_by"]
    for result in doc["results"]:
        assert RESULT_KEYS <= result.keys()
    stream = next(r for r in doc["results"] if r["workload"] == "stream")
    assert stream["chunk_ms"] > 0 and stream["bytes_per_sec"] > 0
    for name in names:
        assert name in doc["_stdout"]


def test_every_builtin_workload_with_the_builtin_generator(builtin_doc: dict[str, Any]) -> None:
    check_doc(builtin_doc, {name: "builtin" for name in WORKLOADS})


def test_every_builtin_workload_with_the_installed_generators(installed_doc: dict[str, Any]) -> None:
    expected = {w["name"]: {"http1": "wrk", "http2": "h2load"}[w["protocol"]] for w in installed_doc["workloads"]}
    check_doc(installed_doc, expected)


@pytest.mark.parametrize("fixture", ["builtin_doc", "installed_doc"])
def test_html_report_is_well_formed_and_charts_hold_the_json_numbers(fixture: str,
                                                                      request: pytest.FixtureRequest) -> None:
    from tests.bench_html import check_html

    doc = request.getfixturevalue(fixture)
    check_html(doc["_html"], doc)


def fake_uvicorn(bin_dir: Path) -> None:
    """A stand-in peer: Uvicorn's command line is Pounce's, so Pounce can play an installed uvicorn."""
    bin_dir.mkdir()
    script = bin_dir / "uvicorn"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} -m pounce \"$@\"\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def test_compare_runs_an_installed_peer_and_reports_a_missing_one(tmp_path: Path) -> None:
    fake_uvicorn(tmp_path / "bin")
    # PATH without any real peer: the stand-in uvicorn, this interpreter, the system tools (taskset, wrk).
    path = os.pathsep.join([str(tmp_path / "bin"), str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    env = {**os.environ, "PATH": path}
    done = bench("hello", "--compare", "uvicorn,granian", *FAST, "--json", "out.json", "--html", "out.html",
                 cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads((tmp_path / "out.json").read_text())
    servers = {s["name"]: s for s in doc["servers"]}
    assert servers["uvicorn"]["available"] and servers["uvicorn"]["command"] == [str(tmp_path / "bin" / "uvicorn")]
    assert not servers["granian"]["available"] and "not installed" in servers["granian"]["reason"]
    assert {r["server"] for r in doc["runs"]} == {"pounce", "uvicorn"}
    ratio = doc["ratios"]["hello"]["uvicorn"]
    assert set(ratio) == {"requests_per_sec", "requests_per_cpu_sec", "p99_ms", "pss_peak_bytes"}
    assert ratio["requests_per_sec"] > 0
    assert "granian" in done.stdout and "not installed" in done.stdout
    from tests.bench_html import check_html

    check_html((tmp_path / "out.html").read_text(), doc)


@pytest.mark.parametrize(("args", "message"), [
    (["nope"], "unknown workload nope"),
    (["--workload", "hello,bogus"], "unknown workload bogus"),
    (["--compare", "uvicorn,nginx"], "unknown peer nginx"),
    (["no_such_module:app"], "does not import"),
    (["hello", "--load", "h2load"], "h2load cannot drive http1"),
])
def test_bad_input_is_a_usage_error(tmp_path: Path, args: list[str], message: str) -> None:
    done = bench(*args, *FAST, cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr


def test_a_path_that_answers_non_2xx_stops_the_run_and_shows_the_response(tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text(
        "async def app(scope, receive, send):\n"
        "    if scope['type'] == 'http':\n"
        "        await send({'type': 'http.response.start', 'status': 404,\n"
        "                    'headers': [(b'content-type', b'text/plain')]})\n"
        "        await send({'type': 'http.response.body', 'body': b'no such page: ' + scope['path'].encode()})\n"
    )
    done = bench("myapp:app", "--path", "/missing", *FAST, cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "HTTP status 404" in done.stderr and "no such page: /missing" in done.stderr


def test_an_app_is_benchmarked_at_its_path_with_method_and_body(tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text(
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    body = b''\n"
        "    while True:\n"
        "        m = await receive()\n"
        "        body += m.get('body', b'')\n"
        "        if not m.get('more_body'):\n"
        "            break\n"
        "    ok = scope['method'] == 'PUT' and scope['path'] == '/items' and body == b'payload'\n"
        "    await send({'type': 'http.response.start', 'status': 200 if ok else 400, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b''})\n"
    )
    (tmp_path / "body.txt").write_bytes(b"payload")
    done = bench("myapp:app", "--path", "/items", "--method", "PUT", "--body", "@body.txt", "--load", "builtin",
                 *FAST, "--json", "out.json", cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads((tmp_path / "out.json").read_text())
    (run,) = doc["runs"]
    assert run["ok"] and run["non_2xx"] == 0 and run["requests"] > 0
    assert doc["settings"]["app"] == "myapp:app" and doc["settings"]["body_bytes"] == 7


def test_pounce_help_mentions_bench_and_dispatches_to_it() -> None:
    from click.testing import CliRunner

    from pounce.main import main

    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0 and "pounce bench" in result.output
    result = CliRunner().invoke(main, ["bench", "--help"])
    assert result.exit_code == 0 and "--compare" in result.output and "--html" in result.output
    result = CliRunner().invoke(main, ["bench", "nope"])
    assert result.exit_code == 2

"""``python -m conformance``: run a Uvicorn release's own test suite against Pounce through ``compat/``."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conformance import environment as envmod
from conformance import expectations as expmod
from conformance import report as reportmod

DEFAULT_VERSION = "0.54.0"
EXPECTATIONS_DIR = Path(__file__).resolve().parent / "expectations"

# Subsets: extra pytest arguments.  "ci" leaves out the slowest files (file-watching reload supervisors and
# the multiprocess supervisor, which spawn processes and sleep), which together take most of the wall time.
SUBSETS: dict[str, list[str]] = {
    "full": [],
    "ci": [
        "--ignore=tests/supervisors/test_reload.py",
        "--ignore=tests/supervisors/test_multiprocess.py",
    ],
}
EXPECTATIONS_HEADER = """\
# Every Uvicorn {version} test that does not pass against Pounce (through compat/), with why.
# `python -m conformance` fails when a listed test passes or an unlisted one does not, so the pass count
# can only go up. Keys: pytest node ids, or patterns where `*` matches anything (nothing else is special).
# outcome: "fail" (failed/errored) or "skip". category: internal (a Uvicorn internal with no Pounce
# counterpart), difference (deliberate), bug (a Pounce bug; the reason names what it needs), environment.
# Regenerate with `python -m conformance --write-expectations`: reasons of entries that still hold are kept,
# new non-passing tests come out as "untriaged" and must be given a reason by hand.
"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m conformance",
        description="Run Uvicorn's own test suite against Pounce through the compat/ shim and compare the "
        "outcome with conformance/expectations/uvicorn-<version>.toml.",
    )
    parser.add_argument("--uvicorn-version", default=DEFAULT_VERSION, help="Uvicorn release (default %(default)s)")
    parser.add_argument("--subset", choices=sorted(SUBSETS), default="full", help="which tests (default full)")
    parser.add_argument("--workdir", type=Path, default=Path(".conformance"), help="venv, downloads, reports")
    parser.add_argument("--jobs", type=int, default=2, help="pytest-xdist workers (default 2; 1 = no xdist)")
    parser.add_argument("--timeout", type=int, default=30, help="per-test time limit in seconds (default 30)")
    parser.add_argument("--max-minutes", type=float, default=40.0, help="limit for the whole pytest run")
    parser.add_argument("--fresh", action="store_true", help="rebuild the venv from scratch")
    parser.add_argument("--expectations", type=Path, default=None, help="expectations file to compare with")
    parser.add_argument(
        "--write-expectations", action="store_true",
        help="rewrite the expectations file from this run, keeping reasons that still hold",
    )
    parser.add_argument(
        "--results", type=Path, default=None,
        help="skip running: re-evaluate an earlier run's outcomes.jsonl (or results.json)",
    )
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments, after `--` (a partial run)")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.timeout < 1 or args.max_minutes <= 0:
        parser.error("--jobs, --timeout and --max-minutes must be positive")
    return args


def pytest_command(
    python: Path, ini: dict[str, Any], out: Path, jobs: int, timeout: int, extra: Sequence[str]
) -> list[str]:
    """The pytest invocation, with Uvicorn's own configuration overridden only where it must be.

    - ``addopts``: Uvicorn's ``-n 8`` becomes ``-n <jobs>`` (this machine has 2 cores); its reporting and
      strictness flags are kept.
    - ``filterwarnings = error`` is kept.  Each of Uvicorn's ignore-filters that quotes a "Uvicorn ..."
      message is repeated with "Pounce" in its place (Pounce's messages say Pounce), appended so it takes
      precedence.
    - ``tests/benchmarks`` is ignored: codspeed benchmarks, not part of the counted suite.
    - ``--timeout``: ours (pytest-timeout), so a hung test fails instead of stalling the run.
    """
    addopts = shlex.split(str(ini.get("addopts", "")))
    kept: list[str] = []
    skip_next = False
    for opt in addopts:
        if skip_next:
            skip_next = False
        elif opt in ("-n", "--numprocesses"):
            skip_next = True
        elif not (opt.startswith("--numprocesses=") or re.fullmatch(r"-n(\d+|auto|logical)", opt)):
            kept.append(opt)
    cmd = [str(python), "-m", "pytest", "-p", envmod.PLUGIN_NAME, "-p", "no:cacheprovider",
           "-o", "addopts=" + shlex.join(kept)]
    cmd += ["-n", str(jobs)] if jobs > 1 else ["-p", "no:xdist"]
    filters = [str(f).strip() for f in ini.get("filterwarnings", []) or []]
    translated = [f.replace("Uvicorn", "Pounce") for f in filters if "Uvicorn" in f]
    if translated:
        # Through the ini override, not -W: pytest regex-escapes -W messages, which would break ".*".
        cmd += ["-o", "filterwarnings=" + "\n".join(filters + translated)]
    # A module that fails to import (a missing uvicorn name) costs its own tests, not the whole run.
    cmd += ["--ignore=tests/benchmarks", f"--timeout={timeout}", "-q", "--continue-on-collection-errors"]
    cmd += [f"--conformance-out={out}", f"--conformance-compat-dir={envmod.COMPAT_DIR}"]
    cmd += list(extra)
    cmd.append("tests")
    return cmd


def run_pytest(cmd: list[str], cwd: Path, plugin_dir: Path, log: Path, max_seconds: float) -> int:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = str(plugin_dir)
    print("+ " + shlex.join(cmd), file=sys.stderr, flush=True)
    with log.open("w", encoding="utf-8") as fh:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,  # one process group: a time-out ends pytest and its xdist workers
        )
        assert proc.stdout is not None
        deadline = time.monotonic() + max_seconds
        try:
            for line in proc.stdout:
                fh.write(line)
                sys.stderr.write(line)
                if time.monotonic() > deadline:
                    raise subprocess.TimeoutExpired(cmd, max_seconds)
            return proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            print(f"conformance: pytest ran past {max_seconds:.0f}s and was stopped", file=sys.stderr)
            return 124


def load_outcomes(path: Path) -> dict[str, reportmod.TestResult]:
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        return {
            nodeid: reportmod.TestResult(nodeid, row["outcome"], row.get("message", ""), row.get("duration", 0.0))
            for nodeid, row in data["tests"].items()
        }
    return reportmod.read_jsonl(path)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    version: str = args.uvicorn_version
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    # The workdir holds a venv and downloads: keep it out of git wherever it is put.
    (workdir / ".gitignore").write_text("*\n", encoding="utf-8")
    expectations_path: Path = args.expectations or EXPECTATIONS_DIR / f"uvicorn-{version}.toml"
    full_run = args.subset == "full" and not args.pytest_args
    meta: dict[str, Any] = {
        "uvicorn_version": version,
        "python": sys.version.split()[0] + " " + platform.python_implementation(),
        "platform": platform.platform(),
        "subset": args.subset + (" + " + shlex.join(args.pytest_args) if args.pytest_args else ""),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        expectations = expmod.load(expectations_path)
    except expmod.ExpectationsError as exc:
        print(f"conformance: {exc}", file=sys.stderr)
        return 2

    if args.results is not None:
        if not args.results.exists():
            print(f"conformance: {args.results} does not exist", file=sys.stderr)
            return 2
        results = load_outcomes(args.results)
        pytest_rc = 0
    else:
        log = workdir / "setup.log"
        log.write_text("", encoding="utf-8")
        try:
            sdist = envmod.download_sdist(version, workdir / "downloads", log)
            suite = envmod.extract_tests(sdist, version, workdir / f"uvicorn-{version}")
            pyproject = (suite / "pyproject.toml").read_text(encoding="utf-8")
            env = envmod.build_venv(workdir / "venv", envmod.test_requirements(pyproject), log, fresh=args.fresh)
            plugin_dir = envmod.install_plugin(workdir / "plugin")
        except (envmod.SetupError, OSError, subprocess.TimeoutExpired, ValueError) as exc:
            print(f"conformance: setup failed: {exc}", file=sys.stderr)
            return 2
        out = workdir / "outcomes.jsonl"
        out.write_text("", encoding="utf-8")
        ini = envmod.pytest_config(pyproject)
        cmd = pytest_command(env.python, ini, out, args.jobs, args.timeout, SUBSETS[args.subset] + args.pytest_args)
        meta["sdist_sha256"] = envmod.sha256(sdist)
        meta["pytest_args"] = cmd[1:]
        meta["packages"] = envmod.pip_freeze(env)
        started = time.monotonic()
        pytest_rc = run_pytest(cmd, suite, plugin_dir, workdir / "pytest.log", args.max_minutes * 60)
        meta["wall_s"] = round(time.monotonic() - started, 1)
        meta["pytest_exit_code"] = pytest_rc
        results = reportmod.read_jsonl(out)
        if pytest_rc == 4 and not results:
            print("conformance: pytest refused to run (see above)", file=sys.stderr)
            return 2
        # A few of Uvicorn's tests give a client a fixed 0.1 s to connect; on a loaded 2-core machine one
        # of them now and then fails for that alone. An unexpected failure is run once more, alone; one
        # that passes then counts as passed and is named in the report's metadata as flaky.
        suspects = [
            nodeid for nodeid, r in results.items()
            if expmod.kind_of(r.outcome) == "fail" and expectations.match(nodeid) is None
        ]
        if suspects and len(suspects) <= 20 and pytest_rc != 124:
            retry_out = workdir / "outcomes-retry.jsonl"
            retry_cmd = pytest_command(env.python, ini, retry_out, 1, args.timeout, [])[:-1] + suspects
            run_pytest(retry_cmd, suite, plugin_dir, workdir / "pytest-retry.log", 600)
            retried = reportmod.read_jsonl(retry_out) if retry_out.exists() else {}
            flaky = [nodeid for nodeid in suspects if nodeid in retried and expmod.kind_of(retried[nodeid].outcome) == "pass"]
            for nodeid in flaky:
                results[nodeid] = retried[nodeid]
            meta["flaky_passed_on_retry"] = flaky
    meta["pounce_version"] = next(
        (p.split("==", 1)[1] for p in meta.get("packages", []) if p.lower().startswith("pounce==")), "editable"
    )

    outcomes = {nodeid: r.outcome for nodeid, r in results.items()}
    if args.write_expectations:
        entries = expmod.rewrite(outcomes, expectations)
        expectations_path.parent.mkdir(parents=True, exist_ok=True)
        expectations_path.write_text(
            expmod.render(entries, EXPECTATIONS_HEADER.format(version=version)), encoding="utf-8"
        )
        expectations = expmod.Expectations(entries)
        print(f"wrote {expectations_path} ({len(entries)} entries)", file=sys.stderr)

    mismatches = expmod.compare(outcomes, expectations, full_run=full_run)
    if pytest_rc == 124:
        mismatches.append(expmod.Mismatch("<run>", "pytest was stopped at --max-minutes; outcomes are partial"))
    if not results:
        mismatches.append(expmod.Mismatch("<run>", "no test outcome was recorded"))
    data = reportmod.results_json(results, expectations, mismatches, meta)
    (workdir / "results.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    (workdir / "report.md").write_text(
        reportmod.markdown(version, results, expectations, mismatches, meta), encoding="utf-8"
    )
    overall, per_file = reportmod.count(results)
    print()
    for name, c in per_file.items():
        print(f"{name}: {c.passed} passed, {c.failed} failed, {c.skipped} skipped")
    for m in mismatches[:50]:
        print("MISMATCH " + m.line())
    if len(mismatches) > 50:
        print(f"... and {len(mismatches) - 50} more mismatches (see report.md)")
    print(f"report: {workdir / 'report.md'}; outcomes: {workdir / 'results.json'}")
    print(
        ("expectations: OK" if not mismatches else f"expectations: {len(mismatches)} mismatches")
        + f" ({expectations_path.name})"
    )
    print(reportmod.final_line(version, overall))
    return 1 if mismatches else 0

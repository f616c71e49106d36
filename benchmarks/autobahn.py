"""Autobahn|Testsuite's fuzzing client against Pounce: RFC 6455 / RFC 7692 conformance, case by case.

The fuzzing client (``wstest -m fuzzingclient``) connects to a WebSocket echo server and runs 517
cases: framing (1-4), fragmentation (5), UTF-8 (6), the closing handshake (7), large messages
(9), auto-fragmentation (10) and permessage-deflate (12, 13). It rates each case OK, NON-STRICT
(accepted, but not as early or as exactly as the RFC asks), INFORMATIONAL, UNIMPLEMENTED or
FAILED, and writes the ratings to ``index.json``. This script:

1. installs ``autobahntestsuite`` (it runs on Python 2.7 only) into ``.venv-autobahn/`` at the
   repository root (gitignored, via ``.venv*/``) with ``pip install --target``, from PyPI, with
   the Python 2.7 it finds (``--python2``, else ``python2.7`` on PATH, else pyenv's
   ``~/.pyenv/versions/2.7.*``); the install is reused afterwards;
2. starts ``python -m pounce benchmarks.autobahn:echo_app`` on a socket it binds to 127.0.0.1
   port 0 (passed with ``--fd``, so there is no race for a free port);
3. writes a fuzzing-client spec for that server and runs the cases (``--cases``, default all);
4. prints per-behavior counts (the case's behavior and its closing behavior) and every case not
   rated OK, and exits 1 unless every case passed: OK or INFORMATIONAL (Autobahn's informational
   cases have no right answer), and UNIMPLEMENTED nowhere.

Not part of the test run: it needs Python 2.7 and time. On a 2-core machine cases 1-10 take about
5 minutes (9.x moves messages of up to 16 MiB), and 12-13 (permessage-deflate: 1000 messages a
case, compressed by the Python 2 client) about 20 more. Every wait is bounded: the install (``--install-timeout``),
the server's start, and the whole fuzzing run (``--timeout``); a server that hangs or crashes makes
the script fail with the tail of its log, never hang.

    python3 benchmarks/autobahn.py                  # all 517 cases (about 25 minutes)
    python3 benchmarks/autobahn.py --exclude '12.*,13.*'   # all but compression (about 5 minutes)
    python3 benchmarks/autobahn.py --cases '3.*,4.*,5.15,6.4.*'
    python3 benchmarks/autobahn.py --keep reports/  # keep the HTML/JSON reports

Last full run (2-core machine, Python 3.11, 1204 s): 517 cases, OK 514, INFORMATIONAL 3 (7.1.6,
7.13.1, 7.13.2: Autobahn rates those informational whatever the server does), nothing NON-STRICT,
FAILED or UNIMPLEMENTED; 12-13 (permessage-deflate) all OK. Before the strict frame reader, cases
1-10 had 14 NON-STRICT: 3.2-3.4, 4.1.3-4.1.5, 4.2.3-4.2.5, 5.15 (frames after a bad one were
acted on, or the message before it lost) and 6.4.1-6.4.4 (invalid UTF-8 caught only at the end).

The server runs with ``--ws-max-size 16777216`` (the default, and exactly the largest message the
9.x cases send) and ``--ws-ping-interval 0`` (the suite's cases do not expect our pings).
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pounce.bench.apps import ws_echo

ROOT = Path(__file__).resolve().parent.parent
ENV_DIR = ROOT / ".venv-autobahn"
SUITE = "autobahntestsuite==25.10.1"
PASSING = ("OK", "INFORMATIONAL")


# Every WebSocket message echoed as it came (text as text, bytes as bytes); plain HTTP gets 200.
echo_app = ws_echo


def log(text: str) -> None:
    print(text, flush=True)


# --------------------------------------------------------------------------- the suite's install


def find_python2(explicit: str | None) -> str:
    candidates = [explicit] if explicit else []
    candidates += [shutil.which("python2.7") or "", shutil.which("python2") or ""]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/2.7.*/bin/python")), reverse=True)
    for candidate in candidates:
        if not candidate or not os.access(candidate, os.X_OK):
            continue
        # A pyenv shim exists on PATH whether or not it can run: ask the interpreter itself.
        check = [candidate, "-c", "import sys; sys.exit(sys.version_info[:2] != (2, 7))"]
        try:
            if subprocess.run(check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30).returncode == 0:
                return candidate
        except (OSError, subprocess.TimeoutExpired):
            continue
    raise SystemExit("autobahn: no Python 2.7 found (give one with --python2)")


def _suite_command(python2: str, *args: str) -> list[str]:
    # --target installs do not run .pth files (zope.interface is a namespace package that needs
    # one), so the directory is added with site.addsitedir rather than PYTHONPATH.
    bootstrap = (
        "import site, sys; site.addsitedir(sys.argv[1]); sys.argv = ['wstest'] + sys.argv[2:]; "
        "from autobahntestsuite.wstest import run; sys.exit(run())"
    )
    return [python2, "-c", bootstrap, str(ENV_DIR), *args]


def ensure_suite(python2: str, timeout: float) -> None:
    if (ENV_DIR / "autobahntestsuite" / "wstest.py").exists():
        return
    log(f"autobahn: installing {SUITE} into {ENV_DIR.relative_to(ROOT)}/ with {python2}")
    tmp = ENV_DIR.with_name(ENV_DIR.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    command = [python2, "-m", "pip", "install", "--disable-pip-version-check", "--no-warn-script-location",
               "--target", str(tmp), SUITE]
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"autobahn: installing {SUITE} took more than {timeout:.0f} s") from None
    if done.returncode != 0:
        sys.stdout.write(done.stdout.decode(errors="replace")[-4000:])
        raise SystemExit(f"autobahn: pip could not install {SUITE}")
    shutil.rmtree(ENV_DIR, ignore_errors=True)
    tmp.rename(ENV_DIR)  # only a complete install is ever taken for one


# --------------------------------------------------------------------------- the server


class Server:
    def __init__(self, args: argparse.Namespace, log_path: Path) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port: int = self.sock.getsockname()[1]
        self.log_path = log_path
        command = [
            args.python, "-m", "pounce", "benchmarks.autobahn:echo_app", "--fd", str(self.sock.fileno()),
            "--lifespan", "off", "--no-access-log", "--log-level", "warning",
            "--ws-max-size", str(16 * 1024 * 1024), "--ws-ping-interval", "0", *args.server_arg,
        ]
        with open(log_path, "wb") as out:
            self.proc = subprocess.Popen(command, pass_fds=[self.sock.fileno()], stdout=out,
                                         stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        self.sock.close()  # the server has its own copy

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                    probe.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if probe.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise SystemExit(f"autobahn: pounce did not start\n{self.tail()}")

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


# --------------------------------------------------------------------------- the run


def run_suite(python2: str, port: int, cases: list[str], exclude: list[str], workdir: Path,
              timeout: float) -> dict[str, Any]:
    outdir = workdir / "reports"
    spec = {
        "outdir": str(outdir),
        "servers": [{"agent": "pounce", "url": f"ws://127.0.0.1:{port}"}],
        "cases": cases,
        "exclude-cases": exclude,
        "exclude-agent-cases": {},
    }
    spec_path = workdir / "fuzzingclient.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    log_path = workdir / "wstest.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(_suite_command(python2, "-m", "fuzzingclient", "-s", str(spec_path)),
                                stdout=out, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
        raise SystemExit(f"autobahn: the fuzzing client ran past {timeout:.0f} s\n"
                         + log_path.read_text(errors="replace")[-3000:]) from None
    index = outdir / "index.json"
    if proc.returncode != 0 or not index.exists():
        raise SystemExit(f"autobahn: the fuzzing client failed (exit {proc.returncode})\n"
                         + log_path.read_text(errors="replace")[-3000:])
    results: dict[str, Any] = json.loads(index.read_text())["pounce"]
    return results


def case_key(case: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case.split("."))


def report(results: dict[str, Any]) -> bool:
    behaviors = collections.Counter(r["behavior"] for r in results.values())
    closes = collections.Counter(r["behaviorClose"] for r in results.values())
    log(f"autobahn: {len(results)} cases")
    log("  behavior:       " + ", ".join(f"{name} {count}" for name, count in sorted(behaviors.items())))
    log("  behaviorClose:  " + ", ".join(f"{name} {count}" for name, count in sorted(closes.items())))
    by_group: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for case, result in results.items():
        by_group[case.split(".")[0]][result["behavior"]] += 1
    for group in sorted(by_group, key=int):
        log(f"  {group:>3}: " + ", ".join(f"{name} {count}" for name, count in sorted(by_group[group].items())))
    ok = True
    for case in sorted(results, key=case_key):
        result = results[case]
        if result["behavior"] != "OK" or result["behaviorClose"] != "OK":
            log(f"  {case:<9} {result['behavior']:<14} close {result['behaviorClose']:<14} "
                f"remote code {result.get('remoteCloseCode')}")
        if result["behavior"] not in PASSING or result["behaviorClose"] not in PASSING:
            ok = False
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="*", help="comma-separated case patterns (default: all)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter that runs pounce")
    parser.add_argument("--python2", default=None, help="the Python 2.7 that runs the test suite")
    parser.add_argument("--exclude", default="", help="comma-separated case patterns to leave out")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds for the whole fuzzing run")
    parser.add_argument("--install-timeout", type=float, default=900.0)
    parser.add_argument("--keep", type=Path, default=None, help="copy the reports to this folder")
    parser.add_argument("--json", type=Path, default=None, help="write the ratings to this file")
    parser.add_argument("--server-arg", action="append", default=[], help="an extra pounce option (repeatable)")
    args = parser.parse_args(argv)

    python2 = find_python2(args.python2)
    ensure_suite(python2, args.install_timeout)
    cases = [case.strip() for case in args.cases.split(",") if case.strip()]
    exclude = [case.strip() for case in args.exclude.split(",") if case.strip()]
    with tempfile.TemporaryDirectory(prefix="pounce-autobahn-") as tmp:
        workdir = Path(tmp)
        server = Server(args, workdir / "pounce.log")
        try:
            server.wait_ready(20)
            started = time.monotonic()
            results = run_suite(python2, server.port, cases, exclude, workdir, args.timeout)
            elapsed = time.monotonic() - started
            crashed = server.proc.poll() is not None
        finally:
            server.stop()
        if args.keep is not None:
            shutil.copytree(workdir / "reports", args.keep, dirs_exist_ok=True)
        if args.json is not None:
            args.json.write_text(json.dumps(results, indent=2, sort_keys=True))
        log(f"autobahn: fuzzing run took {elapsed:.0f} s")
        ok = report(results)
        if crashed:
            log(f"autobahn: pounce exited during the run\n{server.tail()}")
            ok = False
    log("autobahn: " + ("every case passed" if ok else "FAILED: some cases are not OK"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

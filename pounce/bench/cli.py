"""``pounce bench [APP] [options]``: the command line of the benchmark.

With no APP it runs the built-in workloads (or those named with ``--workload``, or as APP when it
has no colon: ``pounce bench hello,json``); with an APP ("module:attr") it benchmarks that app at
``--path`` with ``--method`` and ``--body``. Bad input exits with code 2; a run in which some server
failed exits with 1.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from pounce.bench import apps
from pounce.bench.load import GENERATORS, choose_generator
from pounce.bench.machine import BenchError, CpuPlan, UsageError, machine_info
from pounce.bench.peers import Contender, find_peer, parse_peers, pounce_contender
from pounce.bench.progress import Progress
from pounce.bench.report import ratios, summarise, text_report, warnings, write_json
from pounce.bench.runner import Settings, run_all
from pounce.bench.servers import BadResponse, ServerSpec
from pounce.bench.workloads import APPS_MODULE, WORKLOADS, Workload, app_workload, parse_workloads, with_http


@click.command(name="bench", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("app", required=False)
@click.option("-w", "--workload", "workload_names", default=None,
              help=f"Built-in workloads, comma-separated: {', '.join(WORKLOADS)} (default: all).")
@click.option("--path", default="/", show_default=True, help="With APP: the path to request.")
@click.option("--method", default="GET", show_default=True, help="With APP: the request method.")
@click.option("--body", default="", help="With APP: the request body, or @FILE to read it from a file.")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Workers for every server.")
@click.option("--worker-mode", type=click.Choice(["auto", "thread", "process"]), default=None,
              help="Pounce's --worker-mode (peers have processes only).")
@click.option("--duration", type=click.FloatRange(min=1.0), default=5.0, show_default=True,
              help="Seconds of each measured run.")
@click.option("--warmup", type=click.FloatRange(min=0.0), default=1.0, show_default=True,
              help="Seconds of unmeasured load before each run; a non-2xx answer there stops the run.")
@click.option("--connections", type=click.IntRange(1, 10000), default=50, show_default=True,
              help="Requests in flight (HTTP/2 and WebSocket carry several on each connection).")
@click.option("--rounds", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Rounds; the report gives medians. Servers interleave, in a rotating order.")
@click.option("--http", type=click.Choice(["1.1", "2"]), default="1.1", show_default=True,
              help="HTTP version of the HTTP workloads (the h2 workload is always HTTP/2).")
@click.option("--compare", default=None, metavar="PEERS",
              help="Also run these peers, comma-separated: uvicorn,granian,hypercorn. Each runs from its own "
                   "installed command; a missing one is reported and skipped.")
@click.option("--peer-python", default=None, metavar="PYTHON",
              help="The interpreter of the peers' venv (default: look the commands up on PATH).")
@click.option("--load", "generator", type=click.Choice(GENERATORS), default="auto", show_default=True,
              help="Load generator: wrk (HTTP/1.1) and h2load (HTTP/2) when installed, else the built-in one.")
@click.option("--load-threads", type=click.IntRange(0, 256), default=0,
              help="Load generator threads or processes (default: one per load CPU).")
@click.option("--cpus-server", default=None, metavar="LIST", help="CPUs for the server, taskset syntax (0-3,6).")
@click.option("--cpus-load", default=None, metavar="LIST", help="CPUs for the load generator, taskset syntax.")
@click.option("--startup-timeout", type=click.FloatRange(min=1.0), default=60.0, show_default=True,
              help="Seconds to wait for a server to answer.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write every raw figure, the settings and the machine's description here.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None,
              help="Write a self-contained HTML report (inline SVG charts) here.")
@click.option("-q", "--quiet", is_flag=True, help="No progress display.")
@click.pass_context
def bench(ctx: click.Context, app: str | None, workload_names: str | None, path: str, method: str, body: str,
          workers: int, worker_mode: str | None, duration: float, warmup: float, connections: int, rounds: int,
          http: str, compare: str | None, peer_python: str | None, generator: str, load_threads: int,
          cpus_server: str | None, cpus_load: str | None, startup_timeout: float, json_path: str | None,
          html_path: str | None, quiet: bool) -> None:
    """Measure Pounce (and peers) on built-in workloads, or on APP.

    Server and load generator run on separate CPUs where the machine has them; the report says which
    load generator ran and whether it, not the server, set the pace.
    """
    try:
        code = _bench(dict(ctx.params))
    except BadResponse as exc:
        click.echo(f"Error: {exc}; the run stops here. The response:\n\n{exc.response.show()}", err=True)
        ctx.exit(2)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    except BenchError as exc:
        click.echo(f"Error: {exc}", err=True)
        ctx.exit(1)
    ctx.exit(code)


def _workloads(p: dict[str, Any]) -> tuple[list[Workload], str | None]:
    app, names = p["app"], p["workload_names"]
    if app and ":" not in app:  # "pounce bench hello,json": workload names
        if names:
            raise UsageError("give workloads as APP or with --workload, not both")
        names, app = app, None
    if app:
        if names:
            raise UsageError("--workload picks built-in workloads; with APP, use --path/--method/--body")
        check_app_imports(app)
        return [app_workload(app, method=p["method"], path=p["path"], body=read_body(p["body"]), http=p["http"])], app
    return with_http(parse_workloads(names) if names else list(WORKLOADS.values()), p["http"]), None


def read_body(text: str) -> bytes:
    if text.startswith("@"):
        try:
            return Path(text[1:]).read_bytes()
        except OSError as exc:
            raise UsageError(f"--body {text}: {exc}") from None
    return text.encode()


def check_app_imports(app: str) -> None:
    """Import APP in a throwaway interpreter: a clear usage error now, not a server that fails to start."""
    script = ("import sys; sys.path.insert(0, '.'); from pounce.importer import import_from_string; "
              "import_from_string(sys.argv[1])")
    try:
        done = subprocess.run([sys.executable, "-c", script, app], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise UsageError(f"importing APP {app!r} took more than 60 s") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise UsageError(f"APP {app!r} does not import: {lines[-1] if lines else f'exit code {done.returncode}'}")


def tool_version(name: str) -> str:
    found = shutil.which(name)
    if not found:
        return "not installed"
    try:
        done = subprocess.run([found, "--version" if name == "h2load" else "-v"], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def _bench(p: dict[str, Any]) -> int:
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    workloads, app = _workloads(p)
    generators = {w.name: choose_generator(p["generator"], w.protocol) for w in workloads}
    peers = parse_peers(p["compare"]) if p["compare"] else []
    settings = Settings(duration=p["duration"], warmup=p["warmup"], rounds=p["rounds"],
                        connections=p["connections"], threads=p["load_threads"], generator=p["generator"],
                        startup_timeout=p["startup_timeout"])
    cpus = CpuPlan.choose(p["cpus_server"], p["cpus_load"], server_cpus=p["workers"])
    contenders: list[Contender] = [pounce_contender(p["workers"], p["worker_mode"])]
    servers: list[dict[str, Any]] = []
    for name in peers:
        found = find_peer(name, p["peer_python"], p["workers"])
        if isinstance(found, str):
            servers.append({"name": name, "available": False, "reason": found})
        else:
            contenders.append(found)
    servers = [{"name": c.name, "available": True, "reason": "", "command": list(c.command), "version": c.version,
                "python": c.python.as_json() if c.python else None, "description": c.describe()}
               for c in contenders] + servers
    for server in servers:
        if not server["available"]:
            click.echo(f"[bench] {server['name']} is not run: {server['reason']}", err=True)

    with tempfile.TemporaryDirectory(prefix="pounce-bench-") as tmp:
        # Every server imports the same copy of the apps, without importing Pounce.
        shutil.copyfile(apps.__file__, Path(tmp) / f"{APPS_MODULE}.py")
        env = (("PYTHONPATH", os.pathsep.join([tmp, os.getcwd(), ""])),)
        commands: dict[str, dict[str, list[str]]] = {}

        def spec_for(contender: Contender, workload: Workload) -> ServerSpec | str:
            spec = contender.spec(workload, env, os.getcwd())
            if not isinstance(spec, str):
                commands.setdefault(contender.name, {})[workload.name] = list(spec.argv)
            return spec

        per_run = settings.warmup + settings.duration + 1.5  # start and stop included, roughly
        runnable = sum(1 for c in contenders for w in workloads if not isinstance(c.spec(w, env, None), str))
        progress = Progress(runnable * settings.rounds, per_run, enabled=not p["quiet"])
        try:
            runs, skips = run_all(contenders, workloads, spec_for, cpus, settings, progress, strict="pounce")
        finally:
            progress.close()

    results = summarise(runs)
    order = {c.name: i for i, c in enumerate(contenders)}
    results.sort(key=lambda r: ([w.name for w in workloads].index(r.workload), order.get(r.server, 99)))
    from pounce.bench.machine import python_info

    doc: dict[str, Any] = {
        "schema": "pounce-bench/1",
        "pounce_version": contenders[0].version,
        "started_at": started,
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": ["pounce", "bench", *sys.argv[2:]] if sys.argv[1:2] == ["bench"] else sys.argv,
        "machine": machine_info(),
        "python": (contenders[0].python or python_info(sys.executable)).as_json(),
        "settings": {"app": app, "path": p["path"], "method": p["method"], "body_bytes": len(read_body(p["body"])),
                     "duration": settings.duration, "warmup": settings.warmup, "rounds": settings.rounds,
                     "connections": settings.connections, "workers": p["workers"], "worker_mode": p["worker_mode"],
                     "http": p["http"], "load": settings.generator, "load_threads": settings.threads},
        "cpus": {"server": list(cpus.server), "load": list(cpus.load), "separate": cpus.separate,
                 "description": cpus.describe()},
        "load_generators": {name: tool_version(name) for name in ("wrk", "h2load")} | {"builtin": "pounce.bench"},
        "workloads": [{"name": w.name, "description": w.description, "protocol": w.protocol, "method": w.method,
                       "path": w.path, "body_bytes": len(w.body), "app": w.app, "generator": generators[w.name],
                       "connections": w.connections(settings.connections),
                       "in_flight_per_connection": w.in_flight_per_connection, "chunks": w.chunks}
                      for w in workloads],
        "servers": servers,
        "commands": commands,
        "results": results,
        "ratios": ratios(results),
        "skipped": skips,
        "warnings": warnings(results, cpus.separate, skips),
        "runs": runs,
    }
    click.echo(text_report(doc, results))
    if p["json_path"]:
        write_json(p["json_path"], doc)
        click.echo(f"[bench] wrote {p['json_path']}", err=True)
    if p["html_path"]:
        from pounce.bench.html import render

        Path(p["html_path"]).write_text(render(doc, results))
        click.echo(f"[bench] wrote {p['html_path']}", err=True)
    return 1 if any(not r.ok for r in results) else 0

"""WebSocket echo: Pounce (wsproto) vs ``uvicorn --ws wsproto`` and ``uvicorn --ws websockets``.

Issue 5: messages per second through an echo app, small (32-byte text) and 64 KiB (binary)
messages, one worker each.  Targets: Pounce >= 1.5x Uvicorn's wsproto path (issue 5, both sizes);
at 64 KiB >= 1.5x ``uvicorn --ws wsproto`` and >= 1.0x ``uvicorn --ws websockets`` (issue 14,
target 5; websockets unmasks in C, Pounce in pure Python: see pounce/protocols/websockets/masking.py).

Each server runs alone, pinned to one CPU, with the same echo app (``echo_app`` below).  The
client is our own asyncio client pinned to the other CPU(s): several connections, each keeping a
window of messages in flight, every echo checked (a run of identical echoes with one comparison,
so the client stays far cheaper than any server).  Both Uvicorn peers run on the asyncio loop,
like Pounce; ``--uvloop`` adds them on uvloop as well (``uvicorn --ws ...`` picks uvloop by
default when it is installed).  The client offers no permessage-deflate, so no server compresses.

Two figures per server and size, medians over the rounds: wall-clock msg/s, and messages per
second of server CPU time (user + system of the server's process tree).  The second one is what
to compare on a shared or noisy machine: other load can slow a server down, but cannot make it
spend more CPU per message.

    python3 benchmarks/ws_bench.py             # 3 rounds x 5 s per size
    python3 benchmarks/ws_bench.py --quick     # 1 round x 2 s per size
    python3 benchmarks/ws_bench.py --uvloop --json out.json
    python3 benchmarks/ws_bench.py --sizes 64KiB --rounds 5   # one size only
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as a script: make "benchmarks" importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _harness as h  # noqa: E402
from pounce.bench.apps import WS_HTTP_BODY, ws_echo  # noqa: E402
from pounce.bench.procs import TICKS, tree_cpu_ticks  # noqa: E402
from pounce.bench.wsclient import echo_load  # noqa: E402

ECHO_APP = "benchmarks.ws_bench:echo_app"
SMALL = b"x" * 32
LARGE = bytes(range(256)) * 256  # 64 KiB, not one repeated byte
SIZES = {"small": (SMALL, 0x1), "64KiB": (LARGE, 0x2)}  # payload, opcode (text / binary)
# Messages in flight per connection: enough to keep a server busy, few enough for 64 KiB.
WINDOWS = {"small": 32, "64KiB": 4}

POUNCE = "pounce"
UVICORN_WSPROTO = "uvicorn-wsproto"
UVICORN_WEBSOCKETS = "uvicorn-websockets"
UVICORN_WSPROTO_UVLOOP = "uvicorn-wsproto-uvloop"
UVICORN_WEBSOCKETS_UVLOOP = "uvicorn-websockets-uvloop"
ALL_SERVERS = (POUNCE, UVICORN_WSPROTO, UVICORN_WEBSOCKETS, UVICORN_WSPROTO_UVLOOP, UVICORN_WEBSOCKETS_UVLOOP)
# (issue, size or None for every size, peer, minimum ratio of Pounce to that peer)
TARGETS = (
    ("5", None, UVICORN_WSPROTO, 1.5),
    ("14 (target 5)", "64KiB", UVICORN_WSPROTO, 1.5),
    ("14 (target 5)", "64KiB", UVICORN_WEBSOCKETS, 1.0),
)

# The app and the client are pounce.bench's (the ws-echo workload's): one engine.
echo_app = ws_echo
HTTP_BODY = WS_HTTP_BODY


# --------------------------------------------------------------------------- servers and runs

def server_cpu_seconds(root: int) -> float:
    """User + system CPU time used so far by the server's whole process tree."""
    return tree_cpu_ticks(root) / TICKS


def pounce_spec(python: str) -> h.ServerSpec:
    argv = (python, "-m", "pounce", ECHO_APP, "--host", h.HOST, "--port", "{port}", "--no-access-log",
            "--log-level", "warning", "--loop", "asyncio", "--ws", "wsproto", "--lifespan", "off")
    return h.checkout_spec(POUNCE, argv)


def uvicorn_spec(peer_python: str, name: str, ws: str, loop: str) -> h.ServerSpec:
    argv = (peer_python, "-m", "uvicorn", ECHO_APP, "--host", h.HOST, "--port", "{port}", "--no-access-log",
            "--log-level", "warning", "--loop", loop, "--ws", ws, "--http", "h11", "--lifespan", "off")
    return h.checkout_spec(name, argv)


def build_specs(names: Sequence[str], pounce_python: str, peer_python: str | None) -> list[h.ServerSpec]:
    specs = []
    for name in names:
        if name == POUNCE:
            specs.append(pounce_spec(pounce_python))
        else:
            assert peer_python is not None
            ws = "wsproto" if "wsproto" in name else "websockets"
            specs.append(uvicorn_spec(peer_python, name, ws, "uvloop" if name.endswith("uvloop") else "asyncio"))
    return specs


@dataclasses.dataclass(frozen=True)
class Run:
    server: str
    size: str
    round: int
    ok: bool
    messages_per_sec: float = 0.0
    client_cpu: float = 0.0  # the client's CPU share; near 1.0 means the client, not the server, limited
    server_cpu: float = 0.0  # the server's CPU share during the run; well under 1.0 means it waited
    messages_per_cpu_sec: float = 0.0
    error: str = ""


def measure(spec: h.ServerSpec, cpus: h.CpuPlan, args: argparse.Namespace, round_no: int,
            log_dir: Path) -> list[Run]:
    try:
        server = h.start_server(spec, cpus.server, log_dir=log_dir, expected_body=HTTP_BODY,
                                startup_timeout=args.startup_timeout)
    except h.BenchError as exc:
        return [Run(spec.name, size, round_no, ok=False, error=str(exc)) for size in args.sizes]
    runs = []
    try:
        for size in args.sizes:
            payload, opcode = SIZES[size]
            try:
                if args.warmup > 0:
                    asyncio.run(echo_load(server.port, payload, opcode, connections=args.connections,
                                          window=WINDOWS[size], duration=args.warmup))
                cpu_before = server_cpu_seconds(server.proc.pid)
                rate, client_cpu = asyncio.run(echo_load(server.port, payload, opcode, connections=args.connections,
                                                         window=WINDOWS[size], duration=args.duration))
                server_cpu = server_cpu_seconds(server.proc.pid) - cpu_before
                if server.proc.poll() is not None:
                    raise h.BenchError(f"server exited with code {server.proc.returncode}:\n{server.log_tail()}")
                # Messages per second of server CPU: what the server costs per message, which other
                # load on the machine cannot inflate (wall-clock msg/s on a busy box can be).
                per_cpu = rate * args.duration / server_cpu if server_cpu > 0 else 0.0
                runs.append(Run(spec.name, size, round_no, ok=rate > 0, messages_per_sec=rate, client_cpu=client_cpu,
                                server_cpu=server_cpu / args.duration, messages_per_cpu_sec=per_cpu,
                                error="" if rate > 0 else "no messages echoed"))
            except (h.BenchError, OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
                runs.append(Run(spec.name, size, round_no, ok=False,
                                error=f"{type(exc).__name__}: {exc}\n{server.log_tail()}"))
    finally:
        h.stop_server(server, term_timeout=args.stop_timeout)
    return runs


def run_all(specs: Sequence[h.ServerSpec], cpus: h.CpuPlan, args: argparse.Namespace) -> list[Run]:
    results: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="pounce-ws-bench-") as tmp:
        for r in range(args.rounds):
            shift = r % len(specs)
            for spec in [*specs[shift:], *specs[:shift]]:
                h.log(f"[bench] round {r + 1}/{args.rounds}: {spec.name}")
                for run in measure(spec, cpus, args, r + 1, Path(tmp)):
                    if run.ok:
                        h.log(f"[bench]     {run.size}: {run.messages_per_sec:,.0f} msg/s, "
                              f"{run.messages_per_cpu_sec:,.0f} msg per server CPU-second "
                              f"({1e6 / run.messages_per_cpu_sec if run.messages_per_cpu_sec else 0:,.1f} us/msg) "
                              f"(server CPU {run.server_cpu:.0%}, client CPU {run.client_cpu:.0%})")
                    else:
                        h.log(f"[bench]     {run.size}: FAILED {run.error.splitlines()[0] if run.error else ''}")
                    results.append(run)
    return results


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    h.add_server_arguments(parser, ALL_SERVERS, rounds=3, duration=5.0, warmup=1.0)
    parser.add_argument("--connections", type=int, default=4, help="WebSocket connections (default 4)")
    parser.add_argument("--quick", action="store_true", help="1 round x 2 s per size, 0.5 s warm-up")
    parser.add_argument("--sizes", default=",".join(SIZES), help=f"comma-separated subset of: {','.join(SIZES)}")
    parser.add_argument("--uvloop", action="store_true", help="also run both Uvicorn peers on uvloop")
    args = parser.parse_args(argv)
    args.sizes = [size.strip() for size in args.sizes.split(",") if size.strip()]
    if not args.sizes or any(size not in SIZES for size in args.sizes):
        parser.error(f"--sizes takes a comma-separated subset of: {','.join(SIZES)}")
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 2.0, 0.5
    if args.rounds < 1 or args.duration <= 0 or args.warmup < 0 or not 1 <= args.connections <= 256:
        parser.error("--rounds >= 1, --duration > 0, --warmup >= 0 and 1 <= --connections <= 256 are required")
    return args, parser


def main(argv: Sequence[str] | None = None) -> int:
    args, parser = parse_args(argv)
    if args.only:
        names = h.parse_only(parser, args.only, ALL_SERVERS)
    else:
        names = [POUNCE, UVICORN_WSPROTO, UVICORN_WEBSOCKETS]
        names += [UVICORN_WSPROTO_UVLOOP, UVICORN_WEBSOCKETS_UVLOOP] if args.uvloop else []
    try:
        cpus = h.CpuPlan.from_args(args.cpus_server, args.cpus_load, server_share="one")
        # The client runs in this process: keep it off the server's CPU.
        os.sched_setaffinity(0, cpus.load)
        return run(names, args, cpus)
    except h.BenchError as exc:
        h.log(f"[bench] error: {exc}")
        return 1


def run(names: Sequence[str], args: argparse.Namespace, cpus: h.CpuPlan) -> int:
    pounce_python = h.ensure_pounce_python(args.python)
    # --ws wsproto needs wsproto: installed only into a venv the harness made (never a shared interpreter).
    if Path(pounce_python).is_relative_to(h.BENCH_VENV) and h.python_info(pounce_python, ("wsproto",)).missing:
        h._pip_install(pounce_python, ("wsproto",), 600.0)
    needs_peers = any(n != POUNCE for n in names)
    peer_python = h.ensure_bench_venv(args.peer_python) if needs_peers else None
    if peer_python and h.python_info(peer_python, ("wsproto", "websockets")).missing:
        h._pip_install(peer_python, ("wsproto", "websockets"), 600.0)
    pounce_versions = h.package_versions(pounce_python, ("wsproto", "h11"))
    peer_versions = h.package_versions(peer_python, ("uvicorn", "wsproto", "websockets", "uvloop")) \
        if peer_python else {}
    machine = h.machine_info()
    print(f"Machine: {machine['cpu_count']} cores, {machine['cpu_model']}, Linux {machine['kernel']}")
    print(f"Pounce Python: {h.python_info(pounce_python).describe()} ({_versions(pounce_versions)})")
    if peer_python:
        print(f"Peers Python:  {h.python_info(peer_python).describe()} ({_versions(peer_versions)})")
    print(f"Load: {args.connections} connections, window {WINDOWS['small']} (small) / {WINDOWS['64KiB']} (64 KiB) "
          f"messages in flight each, {args.duration:g} s (+{args.warmup:g} s warm-up) per size, "
          f"{args.rounds} round(s); server on CPU {h.format_cpu_list(cpus.server)}, "
          f"client on CPU {h.format_cpu_list(cpus.load)}\n", flush=True)

    specs = build_specs(names, pounce_python, peer_python)
    results = run_all(specs, cpus, args)

    # Two figures per server and size: wall-clock msg/s, and msg per server CPU-second (robust
    # when other work shares the machine). Medians over the rounds.
    metrics = {"msg/s": "messages_per_sec", "msg/CPU-s": "messages_per_cpu_sec"}
    medians: dict[tuple[str, str, str], float] = {}
    failures: list[Run] = []
    for name in names:
        for size in args.sizes:
            good = [r for r in results if r.server == name and r.size == size and r.ok]
            for metric, attr in metrics.items():
                values = [getattr(r, attr) for r in good]
                medians[(name, size, metric)] = statistics.median(values) if values else 0.0
            failures += [r for r in results if r.server == name and r.size == size and not r.ok][:1]

    columns = [(size, metric) for size in args.sizes for metric in metrics]
    print()
    rows = [[name, *(f"{medians[(name, size, metric)]:,.0f}" if medians[(name, size, metric)] else "FAILED"
                     for size, metric in columns)] for name in names]
    print(h.format_table(["server (1 worker)", *(f"{size} {metric}" for size, metric in columns)], rows))

    ratios: dict[str, dict[str, float | None]] = {}
    peers = [n for n in names if n != POUNCE]
    if POUNCE in names and peers:
        print()
        ratio_rows = []
        for size, metric in columns:
            key = f"{size} {metric}"
            ratios[key] = {p: h.ratio(medians[(POUNCE, size, metric)], medians[(p, size, metric)]) for p in peers}
            ratio_rows.append([f"pounce {key}", *(h.fmt_ratio(ratios[key][p]) for p in peers)])
        print(h.format_table(["ratio", *(f"/ {p}" for p in peers)], ratio_rows))
        for issue, only, peer, minimum in TARGETS:
            chosen = [(size, metric) for size, metric in columns if only in (None, size)]
            if peer in peers and chosen:
                print(f"\nIssue {issue} target: {POUNCE} / {peer} >= {minimum:.1f}x")
                for size, metric in chosen:
                    value = ratios[f"{size} {metric}"][peer]
                    print(f"  {size} {metric}: {h.fmt_ratio(value)} -> {h.verdict(value, minimum)}")

    for run in failures:
        print(f"\n{run.server} {run.size} FAILED: {run.error}")

    if args.json_path:
        h.write_json(args.json_path, {
            "benchmark": "ws_bench",
            "machine": machine,
            "versions": {"pounce": pounce_versions, "peers": peer_versions},
            "commands": {s.name: list(s.argv) for s in specs},
            "settings": {"connections": args.connections, "sizes": args.sizes, "windows": WINDOWS,
                         "duration": args.duration, "warmup": args.warmup, "rounds": args.rounds},
            "medians": {f"{name} {size} {metric}": value for (name, size, metric), value in medians.items()},
            "ratios": ratios,
            "runs": results,
        })
    return 1 if failures else 0


def _versions(versions: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in versions.items())


if __name__ == "__main__":
    sys.exit(main())

"""Worker scaling: Pounce thread mode vs process mode vs Uvicorn and Granian.

Issue 3: workers 1, 2, 4, 8; Pounce ``--worker-mode thread`` and ``--worker-mode process``;
peers ``uvicorn --http httptools --loop uvloop`` and granian with the same worker counts.
Reports req/s, p99 and total RSS (every process of the server, summed).  Targets, on a
16-core machine with a free-threaded build: 8 thread workers >= 5x one thread worker,
>= 0.8x uvicorn httptools+uvloop with 8 processes, total RSS <= 25% of uvicorn's.

By default the server gets the first half of the usable CPUs and wrk the other half
(on a 2-core box: CPU 0 and CPU 1, so the figures there show overhead, not scaling).

    python3 benchmarks/scaling.py --quick
    python3 benchmarks/scaling.py --python "$(../shared/tools/free-threaded-python)" \\
        --cpus-server 0-7 --cpus-load 8-15 --wrk-threads 8 --connections 256
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

if __package__ in (None, ""):  # run as a script: make "benchmarks" importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _harness as h  # noqa: E402
from benchmarks.apps import EXPECTED_BODIES  # noqa: E402

THREAD = "pounce-thread"
PROCESS = "pounce-process"
UVICORN = "uvicorn-httptools-uvloop"
GRANIAN = "granian"
ALL_SERVERS = (THREAD, PROCESS, UVICORN, GRANIAN)


def build_spec(name: str, workers: int, app: str, pounce_python: str, peer_python: str | None) -> h.ServerSpec:
    if name == THREAD:
        return h.pounce_spec(pounce_python, app, name=name, workers=workers, worker_mode="thread")
    if name == PROCESS:
        return h.pounce_spec(pounce_python, app, name=name, workers=workers, worker_mode="process")
    assert peer_python is not None
    if name == UVICORN:
        return h.uvicorn_spec(peer_python, app, name=name, http="httptools", loop="uvloop", workers=workers)
    return h.granian_spec(peer_python, app, name=name, workers=workers)


def parse_workers(text: str) -> list[int]:
    try:
        counts = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of integers, got {text!r}") from None
    if not counts or counts[0] < 1 or counts[-1] > 256:
        raise argparse.ArgumentTypeError("worker counts must be between 1 and 256")
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    h.add_common_arguments(parser, default_rounds=1, default_duration=10.0)
    parser.add_argument("--workers", type=parse_workers, default=[1, 2, 4, 8],
                        help="comma-separated worker counts (default 1,2,4,8)")
    parser.add_argument("--only", default=None,
                        help=f"comma-separated subset of servers: {','.join(ALL_SERVERS)}")
    args = parser.parse_args(argv)
    names = list(ALL_SERVERS)
    if args.only:
        names = h.parse_only(parser, args.only, ALL_SERVERS)
    try:
        cpus = h.CpuPlan.from_args(args.cpus_server, args.cpus_load, server_share="half")
    except h.BenchError as exc:
        parser.error(str(exc))
    settings, rounds = h.settings_from_args(parser, args, cpus)
    try:
        return run(names, args.workers, args, cpus, settings, rounds)
    except h.BenchError as exc:
        h.log(f"[bench] error: {exc}")
        return 1


def run(names: Sequence[str], worker_counts: Sequence[int], args: argparse.Namespace, cpus: h.CpuPlan,
        settings: h.LoadSettings, rounds: int) -> int:
    machine = h.machine_info()
    pounce_python = h.ensure_pounce_python(args.python)
    pounce_info = h.python_info(pounce_python, ("h11", "click"))
    needs_peers = any(n in (UVICORN, GRANIAN) for n in names)
    peer_python = h.ensure_bench_venv(args.peer_python) if needs_peers else None
    peer_info = h.python_info(peer_python) if peer_python else None
    peer_versions = h.package_versions(peer_python, ("uvicorn", "httptools", "uvloop", "granian")) \
        if peer_python else {}

    for line in h.header_lines(machine, pounce_info, peer_info, peer_versions, cpus, settings, rounds):
        print(line)
    print(f"Workers: {', '.join(map(str, worker_counts))}", flush=True)

    specs = [build_spec(n, w, settings.app, pounce_python, peer_python) for w in worker_counts for n in names]
    results = h.run_interleaved(specs, cpus, settings, rounds=rounds, expected_body=EXPECTED_BODIES[settings.app])
    summaries = {(s.server, s.workers): s for s in h.summarise(results)}

    print()
    rows = []
    for n in names:
        base = summaries[(n, worker_counts[0])]
        for w in worker_counts:
            s = summaries[(n, w)]
            if not s.ok:
                rows.append([n, str(w), "FAILED", "-", "-", "-", "-", "-", "-", "-", "-"])
                continue
            scale = h.ratio(s.median_rps, base.median_rps)
            rows.append([n, str(w), f"{s.median_rps:,.0f}", f"{s.median_p99_ms:.2f}", h.mib(s.median_rss_bytes),
                         h.fmt_ratio(scale), str(s.errors), h.pct(s.median_server_cpu_pct),
                         h.pct(s.max_wrk_cpu_pct), s.noise, h.count(s.median_requests_per_cpu_sec)])
    print(h.format_table(["server", "workers", "req/s", "p99 ms", "RSS MiB", f"vs {worker_counts[0]}w", "errors",
                          "srv CPU %", "wrk CPU %", "noise %", "req/CPU-s"], rows))
    print("RSS: peak under load, summed over every process of the server; srv CPU: the server's use of its "
          "CPUs' capacity; wrk CPU: wrk's use of its CPUs; noise: most CPU other processes took on the server's/wrk's "
          "CPUs; req/CPU-s: requests per CPU-second "
          "the server used")

    targets = compute_targets(summaries, worker_counts)
    if targets:
        caveat = []
        if not pounce_info.free_threaded_build:
            caveat.append("Pounce ran on a GIL build (thread workers share one GIL)")
        if len(cpus.server) < max(worker_counts):
            caveat.append(f"the server had {len(cpus.server)} CPU(s) for up to {max(worker_counts)} workers")
        print("\nIssue 3 targets" + (f" (for reference only: {'; '.join(caveat)})" if caveat else "") + ":")
        for t in targets:
            op = "<=" if t["at_most"] else ">="
            print(f"  {t['name']} {op} {t['target']:g}x: {h.fmt_ratio(t['ratio'])} -> {t['verdict']}")

    for warning in h.noise_warnings(summaries.values()):
        print("\n" + warning)

    failures = [s for s in summaries.values() if not s.ok]
    for s in failures:
        print(f"\n{s.server} x{s.workers} FAILED: {s.error}")

    if args.json_path:
        payload: dict[str, Any] = {
            "benchmark": "scaling",
            "machine": machine,
            "pounce_python": pounce_info.as_json(),
            "peer_python": peer_info.as_json() if peer_info else None,
            "peer_versions": peer_versions,
            "cpus": {"server": list(cpus.server), "load": list(cpus.load)},
            "settings": settings,
            "commands": {f"{s.name} x{s.workers}": list(s.argv) for s in specs},
            "rounds": rounds,
            "workers": list(worker_counts),
            "summary": list(summaries.values()),
            "targets": targets,
            "runs": results,
        }
        h.write_json(args.json_path, payload)
    return 1 if failures else 0


def compute_targets(summaries: dict[tuple[str, int], h.Summary], worker_counts: Sequence[int]) -> list[dict[str, Any]]:
    """Issue 3's three targets at the largest worker count measured (8 by default)."""
    top, low = max(worker_counts), min(worker_counts)
    thread_top = summaries.get((THREAD, top))
    thread_low = summaries.get((THREAD, low))
    uv_top = summaries.get((UVICORN, top))
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, target: float, at_most: bool = False) -> None:
        out.append({"name": name, "ratio": value, "target": target, "at_most": at_most,
                    "verdict": h.verdict(value, target, at_most=at_most)})

    if thread_top and thread_low and top != low:
        add(f"{THREAD} {top}w / {THREAD} {low}w req/s", h.ratio(thread_top.median_rps, thread_low.median_rps), 5.0)
    if thread_top and uv_top:
        add(f"{THREAD} {top}w / {UVICORN} {top}w req/s", h.ratio(thread_top.median_rps, uv_top.median_rps), 0.8)
        add(f"{THREAD} {top}w / {UVICORN} {top}w RSS",
            h.ratio(thread_top.median_rss_bytes, uv_top.median_rss_bytes), 0.25, at_most=True)
    return out


if __name__ == "__main__":
    sys.exit(main())

"""Pounce vs Uvicorn (and optionally Hypercorn, Granian), one worker each, side by side.

Issue 2: same app, one worker, ``--no-access-log``, keep-alive, 50 connections, ``wrk`` on the
other core.  Target on a GIL build with the default asyncio loop, hello-world plaintext:
Pounce >= 3x ``uvicorn --http h11`` and >= 1.2x ``uvicorn --http httptools --loop uvloop``.

Servers run one at a time, interleaved within each round (the order rotates every round),
and the report gives each server's median req/s and p99 over the rounds.

    python3 benchmarks/http_bench.py                 # 3 rounds x 10 s
    python3 benchmarks/http_bench.py --quick         # 1 round x 3 s
    python3 benchmarks/http_bench.py --granian --hypercorn --json out.json
    python3 benchmarks/http_bench.py --only pounce,granian,ceiling    # issue 14: >= 1.2x granian, >= 0.85x ceiling
    python3 benchmarks/http_bench.py --python "$(../shared/tools/free-threaded-python)"

Overheads of Pounce against itself (issue 9's "zero cost when unused" ratios):

    python3 benchmarks/http_bench.py --only pounce --baseline 6a07b32          # this tree / an older commit
    python3 benchmarks/http_bench.py --only pounce --variant metrics='--metrics 127.0.0.1:0'

``--baseline REF`` runs Pounce as of git REF (a worktree under .bench-baseline/) next to this tree;
``--variant NAME=ARGS`` (repeatable) runs this tree's Pounce with extra command-line ARGS. Both are
reported as ratios to plain ``pounce``, measured in the same rounds.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

if __package__ in (None, ""):  # run as a script: make "benchmarks" importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _harness as h  # noqa: E402
from benchmarks.apps import EXPECTED_BODIES  # noqa: E402

POUNCE = "pounce"
POUNCE_H11 = "pounce-h11"
UVICORN_H11 = "uvicorn-h11"
UVICORN_FAST = "uvicorn-httptools-uvloop"
HYPERCORN = "hypercorn"
GRANIAN = "granian"
# benchmarks/ceiling_server.py: a canned answer per head found, no validation (issue 14's reference).
CEILING = "ceiling"
ALL_SERVERS = (POUNCE, POUNCE_H11, UVICORN_H11, UVICORN_FAST, HYPERCORN, GRANIAN, CEILING)
# (issue, pounce variant, peer, minimum ratio); defined for a GIL build + asyncio + hello.
TARGETS = (
    (2, POUNCE, UVICORN_H11, 3.0),
    (2, POUNCE, UVICORN_FAST, 1.2),
    (14, POUNCE, GRANIAN, 1.2),
    (14, POUNCE, CEILING, 0.85),
)


def build_specs(names: Sequence[str], app: str, pounce_python: str, peer_python: str | None) -> list[h.ServerSpec]:
    specs = []
    for name in names:
        if name == POUNCE:
            specs.append(h.pounce_spec(pounce_python, app, name=POUNCE))  # default (fast) parser
        elif name == POUNCE_H11:
            specs.append(h.pounce_spec(pounce_python, app, name=POUNCE_H11, http="h11"))
        elif name == CEILING:
            # Pounce's interpreter: the ratio is then about the server's design, not the Python it runs on.
            specs.append(h.ceiling_spec(pounce_python, EXPECTED_BODIES[app]))
        else:
            assert peer_python is not None
            if name == UVICORN_H11:
                specs.append(h.uvicorn_spec(peer_python, app, name=name, http="h11", loop="asyncio"))
            elif name == UVICORN_FAST:
                specs.append(h.uvicorn_spec(peer_python, app, name=name, http="httptools", loop="uvloop"))
            elif name == HYPERCORN:
                specs.append(h.hypercorn_spec(peer_python, app))
            elif name == GRANIAN:
                specs.append(h.granian_spec(peer_python, app))
    return specs


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    h.add_common_arguments(parser, default_rounds=3, default_duration=10.0)
    parser.add_argument("--hypercorn", action="store_true", help="also run hypercorn (asyncio worker)")
    parser.add_argument("--granian", action="store_true", help="also run granian (ASGI, 1 worker)")
    parser.add_argument("--ceiling", action="store_true",
                        help="also run benchmarks/ceiling_server.py, the pure-Python reference (hello app only)")
    parser.add_argument("--baseline", default=None, metavar="REF",
                        help="also run Pounce as of this git commit or tag, as 'pounce-baseline'")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=ARGS",
                        help="also run this tree's Pounce with extra arguments, as 'pounce-NAME' (repeatable)")
    parser.add_argument("--only", default=None,
                        help=f"comma-separated subset of servers to run: {','.join(ALL_SERVERS)}")
    return parser.parse_args(argv), parser


def main(argv: Sequence[str] | None = None) -> int:
    args, parser = parse_args(argv)
    if args.only:
        names = h.parse_only(parser, args.only, ALL_SERVERS)
    else:
        names = [POUNCE, POUNCE_H11, UVICORN_H11, UVICORN_FAST]
        names += [HYPERCORN] if args.hypercorn else []
        names += [GRANIAN] if args.granian else []
        names += [CEILING] if args.ceiling else []
    if CEILING in names and args.app != "hello":
        parser.error("the ceiling server answers the hello body only: --ceiling needs --app hello")
    try:
        cpus = h.CpuPlan.from_args(args.cpus_server, args.cpus_load, server_share="one")
    except h.BenchError as exc:
        parser.error(str(exc))
    settings, rounds = h.settings_from_args(parser, args, cpus)
    try:
        return run(names, args, cpus, settings, rounds)
    except h.BenchError as exc:
        h.log(f"[bench] error: {exc}")
        return 1


def run(names: Sequence[str], args: argparse.Namespace, cpus: h.CpuPlan, settings: h.LoadSettings,
        rounds: int) -> int:
    machine = h.machine_info()
    pounce_python = h.ensure_pounce_python(args.python)
    pounce_info = h.python_info(pounce_python, ("h11", "click"))
    needs_peers = any(n not in (POUNCE, POUNCE_H11, CEILING) for n in names)
    peer_python = h.ensure_bench_venv(args.peer_python) if needs_peers else None
    peer_info = h.python_info(peer_python) if peer_python else None
    peer_versions = h.package_versions(peer_python, ("uvicorn", "httptools", "uvloop", "hypercorn", "granian")) \
        if peer_python else {}

    header = list(h.header_lines(machine, pounce_info, peer_info, peer_versions, cpus, settings, rounds))
    for line in header:
        print(line)
    print(flush=True)

    specs = build_specs(names, settings.app, pounce_python, peer_python)
    own = own_variants(args, settings.app, pounce_python)
    specs += own
    names = [*names, *(spec.name for spec in own)]
    results = h.run_interleaved(specs, cpus, settings, rounds=rounds, expected_body=EXPECTED_BODIES[settings.app])
    summaries = {s.server: s for s in h.summarise(results)}

    print()
    rows = []
    for name in names:
        s = summaries[name]
        if s.ok:
            rows.append([name, f"{s.median_rps:,.0f}", h.pct(s.rps_spread_pct), f"{s.median_p99_ms:.2f}",
                         h.mib(s.median_rss_bytes), str(s.errors), h.pct(s.median_server_cpu_pct),
                         h.pct(s.max_wrk_cpu_pct), s.noise, h.count(s.median_requests_per_cpu_sec), f"{s.ok_runs}/{s.runs}"])
        else:
            rows.append([name, "FAILED", "-", "-", "-", "-", "-", "-", "-", "-", f"0/{s.runs}"])
    print(h.format_table(["server (1 worker)", "req/s (median)", "spread %", "p99 ms", "RSS MiB", "errors",
                          "srv CPU %", "wrk CPU %", "noise %", "req/CPU-s", "runs"], rows))
    print("spread: (max-min)/median req/s over the rounds; srv CPU: the server's use of its CPUs; "
          "wrk CPU: wrk's use of its CPUs; noise: most CPU other processes took on the server's/wrk's CPUs; "
          "req/CPU-s: requests per CPU-second the server used")

    ratios: dict[str, dict[str, float | None]] = {}
    cpu_ratios: dict[str, dict[str, float | None]] = {}
    own_names = [spec.name for spec in own]
    if own_names and POUNCE in summaries:
        print()
        rows = []
        for name in own_names:
            ratios[name] = {POUNCE: h.ratio(summaries[name].median_rps, summaries[POUNCE].median_rps)}
            cpu_ratios[name] = {POUNCE: h.ratio(summaries[name].median_requests_per_cpu_sec,
                                                summaries[POUNCE].median_requests_per_cpu_sec)}
            rows.append([name, h.fmt_ratio(ratios[name][POUNCE]), h.fmt_ratio(cpu_ratios[name][POUNCE])])
        print(h.format_table(["pounce variant", "req/s / pounce", "req/CPU-s / pounce"], rows))
    peers = [n for n in names if n not in (POUNCE, POUNCE_H11) and n not in own_names]
    mine = [n for n in names if n in (POUNCE, POUNCE_H11)]
    if mine and peers:
        print()
        ratio_rows = []
        for p in mine:
            ratios[p] = {peer: h.ratio(summaries[p].median_rps, summaries[peer].median_rps) for peer in peers}
            cpu_ratios[p] = {peer: h.ratio(summaries[p].median_requests_per_cpu_sec,
                                           summaries[peer].median_requests_per_cpu_sec) for peer in peers}
            ratio_rows.append([f"{p} req/s", *(h.fmt_ratio(ratios[p][peer]) for peer in peers)])
            ratio_rows.append([f"{p} req/CPU-s", *(h.fmt_ratio(cpu_ratios[p][peer]) for peer in peers)])
        print(h.format_table(["ratio", *(f"/ {peer}" for peer in peers)], ratio_rows))

    targets: list[dict[str, Any]] = []
    note = ""
    if pounce_info.free_threaded_build or settings.app != "hello":
        note = " (targets are defined for a GIL build and the hello app; shown for reference)"
    for issue, mine_name, peer, minimum in TARGETS:
        if mine_name in ratios and peer in ratios[mine_name]:
            value = ratios[mine_name][peer]
            per_cpu = cpu_ratios[mine_name][peer]
            targets.append({"issue": issue, "pounce": mine_name, "peer": peer, "target": minimum, "ratio": value,
                            "verdict": h.verdict(value, minimum), "ratio_per_cpu_second": per_cpu})
    if targets:
        print(f"\nTargets{note}:")
        for t in targets:
            print(f"  issue {t['issue']}: {t['pounce']} >= {t['target']:.2f}x {t['peer']}: {h.fmt_ratio(t['ratio'])}"
                  f" -> {t['verdict']}  (per server CPU-second: {h.fmt_ratio(t['ratio_per_cpu_second'])})")

    for warning in h.noise_warnings(summaries.values()):
        print("\n" + warning)

    failures = [s for s in summaries.values() if not s.ok]
    for s in failures:
        print(f"\n{s.server} FAILED: {s.error}")

    if args.json_path:
        payload: dict[str, Any] = {
            "benchmark": "http_bench",
            "machine": machine,
            "pounce_python": pounce_info.as_json(),
            "peer_python": peer_info.as_json() if peer_info else None,
            "peer_versions": peer_versions,
            "cpus": {"server": list(cpus.server), "load": list(cpus.load)},
            "settings": settings,
            "commands": {s.name: list(s.argv) for s in specs},
            "rounds": rounds,
            "summary": [summaries[n] for n in names],
            "ratios": ratios,
            "ratios_per_cpu_second": cpu_ratios,
            "targets": targets,
            "runs": results,
        }
        h.write_json(args.json_path, payload)
    return 1 if failures else 0


def own_variants(args: argparse.Namespace, app: str, python: str) -> list[h.ServerSpec]:
    """Pounce at ``--baseline`` and with each ``--variant``'s extra arguments."""
    specs = []
    if args.baseline:
        tree = h.REPO_ROOT / ".bench-baseline" / args.baseline.replace("/", "_")
        if not tree.exists():
            try:
                subprocess.run(["git", "-C", str(h.REPO_ROOT), "worktree", "add", "--detach", str(tree), args.baseline],
                               check=True, capture_output=True, text=True)
            except subprocess.CalledProcessError as exc:
                raise h.BenchError(f"cannot check out {args.baseline}: {exc.stderr.strip()}") from exc
        base = h.pounce_spec(python, app, name="pounce-baseline")
        # Its own tree, as the working directory too: "python -m" puts the working directory first on
        # sys.path, so from this checkout it would import this tree's pounce, not that commit's.
        specs.append(dataclasses.replace(base, env=(("PYTHONPATH", str(tree)),), cwd=str(tree)))
    for variant in args.variant:
        name, sep, extra = variant.partition("=")
        if not sep or not name:
            raise h.BenchError(f"--variant wants NAME=ARGS, not {variant!r}")
        spec = h.pounce_spec(python, app, name=f"pounce-{name}")
        specs.append(dataclasses.replace(spec, argv=(*spec.argv, *shlex.split(extra))))
    return specs


if __name__ == "__main__":
    sys.exit(main())

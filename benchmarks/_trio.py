"""What ``sse_bench.py`` and ``connections_bench.py`` share: the three servers they compare (Pounce on
asyncio, ``uvicorn --http httptools --loop uvloop``, Granian; one worker each), their common options,
the header they print, and the interleaved order of their runs.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Iterator, Sequence

from benchmarks import _harness as h

POUNCE = "pounce"
UVICORN = "uvicorn-httptools-uvloop"
GRANIAN = "granian"
ALL_SERVERS = (POUNCE, UVICORN, GRANIAN)
PEER_PACKAGES = ("uvicorn", "httptools", "uvloop", "granian")


def server_spec(name: str, app: str, pounce_python: str, peer_python: str | None, *,
                pounce_args: Sequence[str] = (), uvicorn_args: Sequence[str] = (),
                granian_args: Sequence[str] = ()) -> h.ServerSpec:
    """``name`` serving ``app`` ("module:attr" from this checkout) on 127.0.0.1, quiet, one worker."""
    if name == POUNCE:
        argv = (pounce_python, "-m", "pounce", app, "--host", h.HOST, "--port", "{port}", "--no-access-log",
                "--log-level", "warning", "--loop", "asyncio", *pounce_args)
    elif peer_python is None:
        raise h.BenchError(f"{name} needs the peers' interpreter")
    elif name == UVICORN:
        argv = (peer_python, "-m", "uvicorn", app, "--host", h.HOST, "--port", "{port}", "--no-access-log",
                "--log-level", "warning", "--http", "httptools", "--loop", "uvloop", *uvicorn_args)
    else:
        argv = (peer_python, "-m", "granian", "--interface", "asgi", "--host", h.HOST, "--port", "{port}",
                "--workers", "1", "--log-level", "warning", "--http", "1", *granian_args, app)
    return h.checkout_spec(name, argv)


def names_and_cpus(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[list[str], h.CpuPlan]:
    """The servers asked for, and the CPU plan; this process (the client) moves to the load CPUs."""
    names = h.parse_only(parser, args.only, ALL_SERVERS) if args.only else list(ALL_SERVERS)
    cpus = h.CpuPlan.from_args(args.cpus_server, args.cpus_load, server_share="one")
    os.sched_setaffinity(0, cpus.load)
    return names, cpus


def prepare(names: Sequence[str], args: argparse.Namespace) -> tuple[str, str | None, dict[str, Any]]:
    """The interpreters (peers' venv made if needed), with the machine and versions printed; returns
    (pounce_python, peer_python, facts for the JSON)."""
    pounce_python = h.ensure_pounce_python(args.python)
    peer_python = h.ensure_bench_venv(args.peer_python) if any(n != POUNCE for n in names) else None
    machine = h.machine_info()
    print(f"Machine: {machine['cpu_count']} cores, {machine['cpu_model']}, Linux {machine['kernel']}")
    print(f"Pounce Python: {h.python_info(pounce_python).describe()}")
    versions = h.package_versions(peer_python, PEER_PACKAGES) if peer_python else {}
    if peer_python:
        print(f"Peers Python:  {h.python_info(peer_python).describe()} "
              f"({', '.join(f'{k} {v}' for k, v in versions.items())})")
    return pounce_python, peer_python, {"machine": machine, "peer_versions": versions}


def interleaved(specs: Sequence[h.ServerSpec], rounds: int) -> Iterator[tuple[int, h.ServerSpec]]:
    """(round, server) in the order they run: every server once a round, the order rotating."""
    for r in range(rounds):
        shift = r % len(specs)
        for spec in [*specs[shift:], *specs[:shift]]:
            h.log(f"[bench] round {r + 1}/{rounds}: {spec.name}")
            yield r + 1, spec


def finish(args: argparse.Namespace, benchmark: str, facts: dict[str, Any], specs: Sequence[h.ServerSpec],
           settings: dict[str, Any], payload: dict[str, Any], failures: Sequence[tuple[str, str]]) -> int:
    """Print each failed run (label, error), write the JSON if asked; the exit status."""
    for label, error in failures:
        print(f"\n{label} FAILED: {error}")
    if args.json_path:
        h.write_json(args.json_path, {"benchmark": benchmark, **facts,
                                      "commands": {s.name: list(s.argv) for s in specs},
                                      "settings": settings, **payload})
    return 1 if failures else 0

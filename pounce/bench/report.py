"""From raw runs to what a reader needs: medians per server and workload, ratios against each peer,
warnings about what bent the figures, a terminal table, and the JSON document with everything."""

from __future__ import annotations

import collections
import dataclasses
import json
import statistics
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from pounce.bench.runner import NAN, Run, Skip

SCHEMA = "pounce-bench/1"


@dataclasses.dataclass(frozen=True)
class Result:
    """One server on one workload: medians over the rounds (peaks for memory, worst for noise)."""

    server: str
    workload: str
    generator: str
    runs: int
    ok_runs: int
    requests_per_sec: float
    rps_spread_pct: float  # (max - min) / median over the rounds
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    errors: int
    non_2xx: int
    requests_per_cpu_sec: float
    server_cpu_pct: float
    server_other_cpu_pct: float  # worst seen
    load_cpu_pct: float  # worst seen
    rss_peak_bytes: int
    pss_peak_bytes: int
    processes: int
    bytes_per_sec: float
    chunk_ms: float
    paced_by: str
    error: str

    @property
    def ok(self) -> bool:
        return self.ok_runs > 0


def _median(values: Iterable[float]) -> float:
    vals = [v for v in values if v == v]
    return statistics.median(vals) if vals else NAN


def _max(values: Iterable[float]) -> float:
    return max((v for v in values if v == v), default=NAN)


def _spread(values: Sequence[float]) -> float:
    if len(values) < 2 or statistics.median(values) <= 0:
        return NAN
    return 100.0 * (max(values) - min(values)) / statistics.median(values)


def summarise(runs: Sequence[Run]) -> list[Result]:
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.workload, run.server), []).append(run)
    out = []
    for (workload, server), group in groups.items():
        good = [r for r in group if r.ok]
        paced = collections.Counter(r.paced_by for r in good).most_common(1)
        out.append(Result(
            server=server, workload=workload, generator=next((r.generator for r in group if r.generator), ""),
            runs=len(group), ok_runs=len(good),
            requests_per_sec=_median(r.requests_per_sec for r in good) if good else 0.0,
            rps_spread_pct=_spread([r.requests_per_sec for r in good]),
            p50_ms=_median(r.p50_ms for r in good), p90_ms=_median(r.p90_ms for r in good),
            p99_ms=_median(r.p99_ms for r in good), p999_ms=_median(r.p999_ms for r in good),
            errors=sum(r.errors for r in good), non_2xx=sum(r.non_2xx for r in good),
            requests_per_cpu_sec=_median(r.requests_per_cpu_sec for r in good),
            server_cpu_pct=_median(r.server_cpu_pct for r in good),
            server_other_cpu_pct=_max(r.server_other_cpu_pct for r in good),
            load_cpu_pct=_max(r.load_cpu_pct for r in good),
            rss_peak_bytes=max((r.rss_peak_bytes for r in good), default=0),
            pss_peak_bytes=max((r.pss_peak_bytes for r in good), default=0),
            processes=max((r.processes for r in good), default=0),
            bytes_per_sec=_median(r.bytes_per_sec for r in good),
            chunk_ms=_median(r.chunk_ms for r in good),
            paced_by=paced[0][0] if paced else "",
            error=next((r.error for r in group if not r.ok), ""),
        ))
    return out


def ratio(a: float, b: float) -> float | None:
    # NaN fails both comparisons, so a missing figure gives None too.
    return a / b if a > 0 and b > 0 else None


RATIO_FIGURES = ("requests_per_sec", "requests_per_cpu_sec", "p99_ms", "pss_peak_bytes")


def ratios(results: Sequence[Result], primary: str = "pounce") -> dict[str, dict[str, dict[str, float | None]]]:
    """workload -> peer -> figure -> primary / peer (above 1 is better for req/s, worse for p99 and memory)."""
    by_key = {(r.workload, r.server): r for r in results if r.ok}
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for (workload, server), peer in by_key.items():
        mine = by_key.get((workload, primary))
        if server == primary or mine is None:
            continue
        out.setdefault(workload, {})[server] = {
            f: ratio(float(getattr(mine, f)), float(getattr(peer, f))) for f in RATIO_FIGURES}
    return out


def warnings(results: Sequence[Result], cpus_separate: bool, skips: Sequence[Skip]) -> list[str]:
    out = []
    if not cpus_separate:
        out.append("Server and load generator shared CPUs (too few to separate): the generator's work "
                   "is counted against the server's pace.")
    noisy = _max(r.server_other_cpu_pct for r in results)
    if noisy > 10:
        out.append(f"Other processes used up to {noisy:.0f}% of the server's CPUs during some runs: req/s is "
                   f"noisy there; req/CPU-s much less so.")
    bound = [f"{r.server} {r.workload} ({r.generator} {r.load_cpu_pct:.0f}%)" for r in results
             if r.load_cpu_pct >= 90]
    if bound:
        out.append("The load generator used >= 90% of its CPUs, so it, not the server, may have set the pace: "
                   + ", ".join(bound) + ". Give it more CPUs (--cpus-load) or install wrk/h2load.")
    for r in results:
        if r.ok and (r.errors or r.non_2xx):
            out.append(f"{r.server} {r.workload}: {r.errors} socket errors/timeouts and {r.non_2xx} non-2xx "
                       f"responses while measured.")
    out += [f"{s.server} skipped on {s.workload}: {s.reason}" for s in skips if s.workload != "*"]
    return out


# --------------------------------------------------------------------------- text

def _num(value: float, digits: int = 0) -> str:
    return "-" if value != value else f"{value:,.{digits}f}"


def _mib(value: float) -> str:
    return f"{value / 2**20:.1f}" if value else "-"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], names: int = 1) -> str:
    """Plain-text table: the first ``names`` columns left-aligned, the numbers after them right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        # Names left-aligned, numbers right-aligned.
        return "  ".join(c.ljust(w) if i < names else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


RESULT_HEADERS = ("workload", "server", "req/s", "spread %", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "errors",
                  "non-2xx", "req/CPU-s", "srv CPU %", "load CPU %", "RSS MiB", "PSS MiB", "MiB/s", "paced by")


def result_rows(results: Sequence[Result]) -> list[list[str]]:
    rows = []
    for r in results:
        if not r.ok:
            rows.append([r.workload, r.server, "FAILED", *["-"] * (len(RESULT_HEADERS) - 3)])
            continue
        rows.append([r.workload, r.server, _num(r.requests_per_sec), _num(r.rps_spread_pct), _num(r.p50_ms, 2),
                     _num(r.p90_ms, 2), _num(r.p99_ms, 2), _num(r.p999_ms, 2), str(r.errors), str(r.non_2xx),
                     _num(r.requests_per_cpu_sec), _num(r.server_cpu_pct), _num(r.load_cpu_pct),
                     _mib(r.rss_peak_bytes), _mib(r.pss_peak_bytes), _num(r.bytes_per_sec / 2**20, 1),
                     r.paced_by])
    return rows


def _fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def text_report(doc: Mapping[str, Any], results: Sequence[Result]) -> str:
    lines = list(header_lines(doc))
    lines += ["", format_table(RESULT_HEADERS, result_rows(results), 2)]
    lines.append("req/s, latencies, req/CPU-s: medians over the rounds; RSS/PSS: peak of the server's whole "
                 "process tree; srv/load CPU: share of their CPUs used by the server / load generator; "
                 "paced by: who used the CPU")
    streams = [r for r in results if r.ok and r.chunk_ms == r.chunk_ms]
    for r in streams:
        lines.append(f"{r.server} {r.workload}: {r.chunk_ms * 1000:,.1f} us per chunk (median response time / "
                     f"chunks), {r.bytes_per_sec / 2**20:,.1f} MiB/s")
    table = doc.get("ratios") or {}
    if table:
        rows = [[w, peer, *(_fmt_ratio(v.get(f)) for f in RATIO_FIGURES)]
                for w, peers in table.items() for peer, v in peers.items()]
        lines += ["", format_table(("workload", "pounce / peer", "req/s", "req/CPU-s", "p99", "PSS"), rows, 2),
                  "req/s and req/CPU-s above 1x: Pounce is faster; p99 and PSS below 1x: Pounce is lower"]
    for server in doc.get("servers", []):
        if not server.get("available", True):
            lines.append(f"{server['name']}: not run: {server['reason']}")
    for text in doc.get("warnings", []):
        lines.append("Warning: " + text)
    for r in results:
        if not r.ok:
            lines.append(f"\n{r.server} {r.workload} FAILED: {r.error}")
    return "\n".join(lines)


def header_lines(doc: Mapping[str, Any]) -> Iterable[str]:
    m = doc["machine"]
    yield (f"Machine: {m['cpu_model']}, {m['cpu_count']} cores ({len(m['usable_cpus'])} usable), "
           f"{m['memory_bytes'] / 2**30:.1f} GiB, Linux {m['kernel']}")
    py = doc["python"]
    yield (f"Python: {py['implementation']} {py['version']} ({py['build']} build, GIL "
           f"{'enabled' if py['gil_enabled'] else 'disabled'})")
    s = doc["settings"]
    yield (f"Load: {s['connections']} in flight, {s['duration']:g} s (+{s['warmup']:g} s warm-up) x "
           f"{s['rounds']} round(s), {s['workers']} worker(s); {doc['cpus']['description']}")
    for server in doc["servers"]:
        if server.get("available", True):
            yield f"Server: {server['description']}"


# --------------------------------------------------------------------------- JSON

def to_jsonable(value: Any) -> Any:
    """Dataclasses to dicts and NaN to null (JSON has no NaN), recursively."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def write_json(path: str | Path, doc: Mapping[str, Any]) -> None:
    Path(path).write_text(json.dumps(to_jsonable(doc), indent=2, allow_nan=False) + "\n")

"""The self-contained HTML report: inline CSS and SVG charts, no scripts, no fonts, nothing fetched.

It is also well-formed XML (every element closed, attributes quoted, only XML's own entities), so
it can be checked, or read back, with any XML parser. Each bar carries its figure in
``data-server``/``data-workload``/``data-metric``/``data-value``, the same numbers as the JSON.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any, Mapping, Sequence

from pounce.bench.report import RATIO_FIGURES, Result, to_jsonable

COLOURS = {"pounce": "#e8590c", "uvicorn": "#1c7ed6", "granian": "#2f9e44", "hypercorn": "#7048e8"}
LATENCIES = (("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99"), ("p999_ms", "p99.9"))
SHADES = (1.0, 0.75, 0.5, 0.3)  # bar opacity per percentile

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #212529; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #dee2e6; padding-bottom: 0.2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.8em 0; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #e9ecef; text-align: right; }
th:first-child, td:first-child, td.name { text-align: left; }
th { background: #f1f3f5; }
.meta { color: #495057; font-size: 0.9em; line-height: 1.5; }
.warn { background: #fff3bf; border-left: 4px solid #f59f00; padding: 0.4em 0.8em; margin: 0.4em 0; }
.charts { display: flex; flex-wrap: wrap; gap: 1.5em; }
svg text { font-size: 12px; fill: #212529; }
svg .axis { stroke: #adb5bd; }
pre { background: #f8f9fa; padding: 1em; overflow: auto; font-size: 0.75em; max-height: 30em; }
"""


def _colour(server: str) -> str:
    return COLOURS.get(server, "#868e96")


def _fmt(value: float, digits: int = 0) -> str:
    return "-" if value != value else f"{value:,.{digits}f}"


def _bar(x: float, y: float, w: float, h: float, r: Result, metric: str, value: float, colour: str,
         opacity: float = 1.0) -> str:
    return (f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0.5):.1f}" height="{h:.1f}" fill="{colour}" '
            f'fill-opacity="{opacity}" data-server="{escape(r.server)}" data-workload="{escape(r.workload)}" '
            f'data-metric="{metric}" data-value="{value!r}"><title>{escape(r.server)} {metric}: '
            f'{_fmt(value, 2)}</title></rect>')


def rps_chart(results: Sequence[Result]) -> str:
    """Horizontal bars: median req/s per server."""
    rows = [r for r in results if r.ok]
    label_w, bar_w, row_h = 90, 300, 28
    top = max((r.requests_per_sec for r in rows), default=1.0) or 1.0
    height = row_h * len(rows) + 34
    parts = [f'<svg width="{label_w + bar_w + 90}" height="{height}" role="img" class="chart-rps">',
             f'<text x="0" y="14" font-weight="bold">Requests per second (median)</text>']
    for i, r in enumerate(rows):
        y = 24 + i * row_h
        w = bar_w * r.requests_per_sec / top
        parts.append(f'<text x="0" y="{y + 17}">{escape(r.server)}</text>')
        parts.append(_bar(label_w, y, w, row_h - 8, r, "requests_per_sec", r.requests_per_sec, _colour(r.server)))
        parts.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 15}">{_fmt(r.requests_per_sec)}</text>')
    parts.append(f'<line class="axis" x1="{label_w}" y1="20" x2="{label_w}" y2="{height - 4}"/>')
    parts.append("</svg>")
    return "".join(parts)


def latency_chart(results: Sequence[Result]) -> str:
    """Grouped horizontal bars: p50, p90, p99 and p99.9 per server, in milliseconds."""
    rows = [r for r in results if r.ok]
    label_w, bar_w, bar_h, gap = 90, 300, 12, 12
    top = max((getattr(r, m) for r in rows for m, _ in LATENCIES if getattr(r, m) == getattr(r, m)),
              default=1.0) or 1.0
    group_h = bar_h * len(LATENCIES) + gap
    height = 40 + group_h * len(rows)
    parts = [f'<svg width="{label_w + bar_w + 110}" height="{height}" role="img" class="chart-latency">',
             '<text x="0" y="14" font-weight="bold">Latency percentiles (ms, median over rounds)</text>']
    for i, r in enumerate(rows):
        y0 = 26 + i * group_h
        parts.append(f'<text x="0" y="{y0 + 2 * bar_h + 4}">{escape(r.server)}</text>')
        for j, (metric, label) in enumerate(LATENCIES):
            value = float(getattr(r, metric))
            if value != value:
                continue
            y = y0 + j * bar_h
            w = bar_w * value / top
            parts.append(_bar(label_w, y, w, bar_h - 1, r, metric, value, _colour(r.server), SHADES[j]))
            parts.append(f'<text x="{label_w + w + 5:.1f}" y="{y + bar_h - 2}" font-size="10">'
                         f'{label} {_fmt(value, 2)}</text>')
    parts.append(f'<line class="axis" x1="{label_w}" y1="22" x2="{label_w}" y2="{height - 8}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figures(results: Sequence[Result]) -> str:
    rows = []
    for r in results:
        if not r.ok:
            rows.append([r.server, "FAILED: " + (r.error.splitlines()[0] if r.error else ""), *[""] * 9])
            continue
        rows.append([r.server, _fmt(r.requests_per_sec), _fmt(r.requests_per_cpu_sec), f"{r.errors} / {r.non_2xx}",
                     _fmt(r.server_cpu_pct), f"{r.generator} {_fmt(r.load_cpu_pct)}", _fmt(r.server_other_cpu_pct),
                     _fmt(r.rss_peak_bytes / 2**20, 1), _fmt(r.pss_peak_bytes / 2**20, 1),
                     _fmt(r.bytes_per_sec / 2**20, 1), r.paced_by])
    return _table(["server", "req/s", "req/CPU-s", "errors / non-2xx", "server CPU %", "load generator CPU %",
                   "noise %", "RSS MiB", "PSS MiB", "MiB/s", "paced by"], rows)


def render(doc: Mapping[str, Any], results: Sequence[Result]) -> str:
    m, py, s, cpus = doc["machine"], doc["python"], doc["settings"], doc["cpus"]
    out = ['<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"/>',
           f"<title>pounce bench {escape(doc.get('started_at', ''))}</title>",
           f"<style>{CSS}</style></head><body>",
           "<h1>pounce bench</h1>",
           '<div class="meta">',
           f"<div>{escape(m['cpu_model'])}: {m['cpu_count']} cores ({len(m['usable_cpus'])} usable), "
           f"{m['memory_bytes'] / 2**30:.1f} GiB, Linux {escape(m['kernel'])}</div>",
           f"<div>{escape(py['implementation'])} {escape(py['version'])}, {escape(py['build'])} build, GIL "
           f"{'enabled' if py['gil_enabled'] else 'disabled'}</div>",
           f"<div>{s['connections']} requests in flight, {s['duration']:g} s measured after {s['warmup']:g} s "
           f"warm-up, {s['rounds']} round(s), {s['workers']} worker(s); {escape(cpus['description'])}</div>",
           f"<div>Started {escape(doc.get('started_at', ''))}; <code>{escape(' '.join(doc.get('command', [])))}"
           "</code></div>"]
    for server in doc["servers"]:
        text = server["description"] if server.get("available", True) else f"{server['name']}: {server['reason']}"
        out.append(f"<div>{escape(text)}</div>")
    out.append("</div>")
    for text in doc.get("warnings", []):
        out.append(f'<div class="warn">{escape(text)}</div>')
    for workload in doc["workloads"]:
        rows = [r for r in results if r.workload == workload["name"]]
        if not rows:
            continue
        out.append(f'<h2 id="w-{escape(workload["name"])}">{escape(workload["name"])}: '
                   f'{escape(workload["description"])}</h2>')
        out.append(f'<div class="charts">{rps_chart(rows)}{latency_chart(rows)}</div>')
        out.append(_figures(rows))
        for r in rows:
            if r.ok and r.chunk_ms == r.chunk_ms:
                out.append(f"<p>{escape(r.server)}: {r.chunk_ms * 1000:,.1f} &#181;s per chunk (median response "
                           f"time / chunks), {r.bytes_per_sec / 2**20:,.1f} MiB/s</p>")
    ratio_rows = [[w, p, *("n/a" if v.get(f) is None else f"{v[f]:.2f}x" for f in RATIO_FIGURES)]
                  for w, peers in (doc.get("ratios") or {}).items() for p, v in peers.items()]
    if ratio_rows:
        out.append("<h2>Pounce against each peer</h2>")
        out.append(_table(["workload", "peer", "req/s", "req/CPU-s", "p99 latency", "PSS"], ratio_rows))
        out.append("<p>Ratios are Pounce / peer: above 1x is better for req/s and req/CPU-s, below 1x is better "
                   "for latency and memory.</p>")
    raw = json.dumps(to_jsonable(doc), indent=1, allow_nan=False)
    out.append(f"<h2>Every figure (JSON)</h2><details><summary>show</summary><pre>{escape(raw)}</pre></details>")
    out.append("</body></html>\n")
    return "\n".join(out)

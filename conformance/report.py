"""Turns recorded outcomes into ``results.json``, ``report.md`` and the final summary line."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance.expectations import (
    CATEGORIES,
    Expectations,
    Mismatch,
    as_json,
    kind_of,
    summary_by_category,
)


@dataclass(frozen=True)
class TestResult:
    nodeid: str
    outcome: str
    message: str
    duration: float

    @property
    def file(self) -> str:
        return self.nodeid.split("::", 1)[0]


def read_jsonl(path: Path) -> dict[str, TestResult]:
    """Read the collector's JSON lines; a later line for the same node id wins."""
    results: dict[str, TestResult] = {}
    if not path.exists():
        return results
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        results[row["nodeid"]] = TestResult(
            row["nodeid"], row["outcome"], row.get("message", ""), float(row.get("duration", 0.0))
        )
    return results


@dataclass(frozen=True)
class Counts:
    passed: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.skipped

    def add(self, outcome: str) -> Counts:
        kind = kind_of(outcome)
        return Counts(
            self.passed + (kind == "pass"), self.failed + (kind == "fail"), self.skipped + (kind == "skip")
        )


def count(results: Mapping[str, TestResult]) -> tuple[Counts, dict[str, Counts]]:
    overall = Counts()
    per_file: dict[str, Counts] = {}
    for result in results.values():
        overall = overall.add(result.outcome)
        per_file[result.file] = per_file.get(result.file, Counts()).add(result.outcome)
    return overall, dict(sorted(per_file.items()))


def final_line(version: str, counts: Counts) -> str:
    return f"uvicorn {version} conformance: {counts.passed} passed, {counts.failed} failed, {counts.skipped} skipped"


def results_json(
    results: Mapping[str, TestResult],
    expectations: Expectations,
    mismatches: Sequence[Mismatch],
    meta: Mapping[str, Any],
) -> dict[str, Any]:
    overall, per_file = count(results)
    return {
        **meta,
        "summary": {"passed": overall.passed, "failed": overall.failed, "skipped": overall.skipped,
                    "total": overall.total},
        "files": {f: {"passed": c.passed, "failed": c.failed, "skipped": c.skipped} for f, c in per_file.items()},
        "non_passing_by_category": summary_by_category({n: r.outcome for n, r in results.items()}, expectations),
        "mismatches": [m.line() for m in mismatches],
        "tests": {
            nodeid: {
                "outcome": r.outcome,
                "message": r.message,
                "duration": r.duration,
                "expected": as_json(expectations.match(nodeid)),
            }
            for nodeid, r in sorted(results.items())
        },
    }


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "n/a"


def markdown(
    version: str,
    results: Mapping[str, TestResult],
    expectations: Expectations,
    mismatches: Sequence[Mismatch],
    meta: Mapping[str, Any],
) -> str:
    overall, per_file = count(results)
    out = [f"# Uvicorn {version} test suite against Pounce {meta.get('pounce_version', '?')}", ""]
    for key in ("python", "platform", "subset", "sdist_sha256", "pytest_args", "started", "wall_s"):
        if key in meta:
            value = " ".join(meta[key]) if isinstance(meta[key], list) else meta[key]
            out.append(f"- {key}: `{value}`")
    out += [
        "",
        f"**{overall.passed} passed, {overall.failed} failed, {overall.skipped} skipped** of {overall.total} "
        f"({_pct(overall.passed, overall.total)} pass)",
        "",
        "Expectations: " + ("all match." if not mismatches else f"**{len(mismatches)} mismatches** (see below)."),
        "",
        "## By file",
        "",
        "| file | passed | failed | skipped | total | pass |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, c in per_file.items():
        out.append(f"| {name} | {c.passed} | {c.failed} | {c.skipped} | {c.total} | {_pct(c.passed, c.total)} |")
    by_category = summary_by_category({n: r.outcome for n, r in results.items()}, expectations)
    out += ["", "## Non-passing tests by category", "", "| category | tests | meaning |", "| --- | ---: | --- |"]
    for category, n in sorted(by_category.items(), key=lambda kv: -kv[1]):
        out.append(f"| {category} | {n} | {CATEGORIES.get(category, 'not in the expectations file')} |")
    groups: dict[tuple[str, str], list[str]] = {}
    for nodeid, r in sorted(results.items()):
        if kind_of(r.outcome) == "pass":
            continue
        entry = expectations.match(nodeid)
        group = (entry.category, entry.reason) if entry else ("unlisted", r.message or r.outcome)
        groups.setdefault(group, []).append(nodeid)
    out += ["", "## Non-passing tests by reason", ""]
    for (category, reason), ids in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        out.append(f"### [{category}] {reason} ({len(ids)})")
        out.append("")
        out.extend(f"- `{nodeid}`" for nodeid in ids)
        out.append("")
    if mismatches:
        out += ["## Expectation mismatches", ""]
        for m in mismatches:
            message = results[m.nodeid].message if m.nodeid in results else ""
            out.append(f"- `{m.nodeid}`: {m.problem}" + (f" — {message}" if message else ""))
        out.append("")
    return "\n".join(out)

"""The expectations file: every Uvicorn test that does not pass against Pounce, each with why.

Format (TOML), one line per entry under ``[tests]``::

    "tests/test_cli.py::test_cli_print_version" = { outcome = "fail", category = "difference", reason = "..." }

The key is a pytest node id, or a pattern in which ``*`` matches any run of characters (nothing else is
special, so the ``[h11]`` of a parametrized id is literal).  An exact key wins over patterns; among patterns
the first in the file wins.  ``outcome`` is ``fail`` (failed or errored) or ``skip`` (skipped or xfailed).

The comparison is strict in both directions, so the pass count can only go up: a non-passing test without
an entry, a listed test that passes, a listed outcome that differs from the real one, and (on full runs)
an entry that matches no test at all each fail the run.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

CATEGORIES = {
    "internal": "a Uvicorn internal with no Pounce counterpart",
    "difference": "a deliberate difference",
    "bug": "a Pounce bug (reason names the issue it needs)",
    "environment": "the test cannot run in this environment",
}
UNTRIAGED = "untriaged"
OUTCOMES = ("fail", "skip")

# How each recorded pytest outcome counts.
PASS_OUTCOMES = frozenset({"passed", "xpassed"})
FAIL_OUTCOMES = frozenset({"failed", "error"})
SKIP_OUTCOMES = frozenset({"skipped", "xfailed"})


class ExpectationsError(ValueError):
    """The expectations file is malformed."""


def kind_of(outcome: str) -> str:
    """Map a recorded pytest outcome onto ``pass``/``fail``/``skip``."""
    if outcome in PASS_OUTCOMES:
        return "pass"
    if outcome in SKIP_OUTCOMES:
        return "skip"
    return "fail"


def _compile(key: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in key.split("*")) + r"\Z", re.DOTALL)


@dataclass(frozen=True)
class Expectation:
    key: str
    outcome: str
    category: str
    reason: str

    @property
    def is_pattern(self) -> bool:
        return "*" in self.key


@dataclass
class Expectations:
    entries: list[Expectation] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._exact = {e.key: e for e in self.entries if not e.is_pattern}
        self._patterns = [(e, _compile(e.key)) for e in self.entries if e.is_pattern]

    def match(self, nodeid: str) -> Expectation | None:
        exact = self._exact.get(nodeid)
        if exact is not None:
            return exact
        for entry, regex in self._patterns:
            if regex.match(nodeid):
                return entry
        return None


def parse(text: str, source: str = "<expectations>") -> Expectations:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ExpectationsError(f"{source}: {exc}") from exc
    table = data.get("tests", {})
    if not isinstance(table, dict):
        raise ExpectationsError(f"{source}: [tests] must be a table")
    entries = []
    for key, value in table.items():
        if not isinstance(value, dict):
            raise ExpectationsError(f"{source}: {key!r}: expected an inline table")
        outcome = value.get("outcome")
        category = value.get("category")
        reason = value.get("reason")
        if outcome not in OUTCOMES:
            raise ExpectationsError(f"{source}: {key!r}: outcome must be one of {OUTCOMES}, not {outcome!r}")
        if category not in CATEGORIES and category != UNTRIAGED:
            raise ExpectationsError(
                f"{source}: {key!r}: category must be one of {sorted(CATEGORIES)}, not {category!r}"
            )
        if not isinstance(reason, str):
            raise ExpectationsError(f"{source}: {key!r}: reason must be a string")
        entries.append(Expectation(key, outcome, category, reason.strip()))
    return Expectations(entries)


def load(path: Path) -> Expectations:
    if not path.exists():
        return Expectations()
    return parse(path.read_text(encoding="utf-8"), str(path))


@dataclass(frozen=True)
class Mismatch:
    nodeid: str  # or the expectation key, for a stale or untriaged entry
    problem: str

    def line(self) -> str:
        return f"{self.nodeid}: {self.problem}"


def compare(outcomes: Mapping[str, str], expectations: Expectations, *, full_run: bool) -> list[Mismatch]:
    """Check recorded outcomes (node id -> pytest outcome) against the expectations."""
    mismatches: list[Mismatch] = []
    used: set[str] = set()
    for nodeid in sorted(outcomes):
        kind = kind_of(outcomes[nodeid])
        entry = expectations.match(nodeid)
        if entry is not None:
            used.add(entry.key)
        if entry is None:
            if kind != "pass":
                mismatches.append(Mismatch(nodeid, f"{outcomes[nodeid]} but not listed in the expectations"))
        elif kind == "pass":
            mismatches.append(Mismatch(nodeid, f"passes but is listed ({entry.key!r}): remove it"))
        elif kind != entry.outcome:
            mismatches.append(Mismatch(nodeid, f"{outcomes[nodeid]} but listed as {entry.outcome}"))
    for entry in expectations.entries:
        if entry.category == UNTRIAGED or not entry.reason:
            mismatches.append(Mismatch(entry.key, "listed without a reason (untriaged)"))
        if full_run and entry.key not in used:
            mismatches.append(Mismatch(entry.key, "matches no test in this run: remove it"))
    return mismatches


def _quote(text: str) -> str:
    # TOML basic strings share JSON's escapes for everything we write.
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(entries: Iterable[Expectation], header: str) -> str:
    lines = [header.rstrip(), "", "[tests]"]
    for e in entries:
        lines.append(
            f"{_quote(e.key)} = {{ outcome = {_quote(e.outcome)}, category = {_quote(e.category)}, "
            f"reason = {_quote(e.reason)} }}"
        )
    return "\n".join(lines) + "\n"


def rewrite(outcomes: Mapping[str, str], current: Expectations) -> list[Expectation]:
    """Entries for exactly the non-passing tests, keeping the hand-written reasons that still hold.

    A pattern survives when every test it matches still fails the way it says; otherwise it is replaced
    by exact entries (same reason) for the tests that still do not pass.  Tests no entry explains get an
    ``untriaged`` entry, which the comparison rejects until someone writes a reason.
    """
    by_key: dict[str, list[str]] = {}
    new: list[Expectation] = []
    for nodeid in sorted(outcomes):
        entry = current.match(nodeid)
        if entry is not None:
            by_key.setdefault(entry.key, []).append(nodeid)
        elif kind_of(outcomes[nodeid]) != "pass":
            new.append(Expectation(nodeid, kind_of(outcomes[nodeid]), UNTRIAGED, ""))
    kept: list[Expectation] = []
    for entry in current.entries:
        matched = by_key.get(entry.key, [])
        holding = [n for n in matched if kind_of(outcomes[n]) == entry.outcome]
        if not holding:
            continue
        if entry.is_pattern and len(holding) == len(matched):
            kept.append(entry)
            continue
        for nodeid in holding:
            kept.append(Expectation(nodeid, entry.outcome, entry.category, entry.reason))
        for nodeid in matched:
            kind = kind_of(outcomes[nodeid])
            if kind not in ("pass", entry.outcome):
                new.append(Expectation(nodeid, kind, UNTRIAGED, ""))
    return kept + new


def summary_by_category(outcomes: Mapping[str, str], expectations: Expectations) -> dict[str, int]:
    counts: dict[str, int] = {}
    for nodeid, outcome in outcomes.items():
        if kind_of(outcome) == "pass":
            continue
        entry = expectations.match(nodeid)
        category = entry.category if entry is not None else "unlisted"
        counts[category] = counts.get(category, 0) + 1
    return counts


def as_json(entry: Expectation | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    return {"key": entry.key, "outcome": entry.outcome, "category": entry.category, "reason": entry.reason}

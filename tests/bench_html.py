"""Checks on a ``pounce bench`` HTML report, shared by the bench tests: well-formed, self-contained,
and its charts hold the numbers of the JSON written by the same run."""

from __future__ import annotations

import html.parser
import math
import xml.etree.ElementTree as ET
from typing import Any

VOID = {"meta", "br", "hr", "img", "link", "input"}


class TagBalance(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def check_html(text: str, doc: dict[str, Any]) -> None:
    parser = TagBalance()
    parser.feed(text)
    parser.close()
    assert not parser.errors and not parser.stack, (parser.errors, parser.stack)
    root = ET.fromstring(text)  # well-formed XML as well
    lowered = text.lower()
    assert "<script" not in lowered and "@import" not in lowered and "url(" not in lowered
    for element in root.iter():
        for attr in ("src", "href"):
            assert not element.get(attr, "").startswith(("http:", "https:", "//")), element.attrib
    bars: dict[tuple[str, str, str], float] = {}
    for rect in root.iter("rect"):
        key = (rect.get("data-server", ""), rect.get("data-workload", ""), rect.get("data-metric", ""))
        bars[key] = float(rect.get("data-value", "nan"))
    assert bars, "no chart bars"
    for result in doc["results"]:
        if not result["ok_runs"]:
            continue
        for metric in ("requests_per_sec", "p50_ms", "p90_ms", "p99_ms", "p999_ms"):
            value = result[metric]
            if value is None:
                continue
            got = bars[(result["server"], result["workload"], metric)]
            assert math.isclose(got, value, rel_tol=1e-9), (result["server"], result["workload"], metric, got, value)

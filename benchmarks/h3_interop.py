"""The HTTP/3 interop matrix, measured: tests/test_http3.py's aioquic client cases against a backend.

    python benchmarks/h3_interop.py                 # --backend zoomies (needs Python >= 3.14)
    python benchmarks/h3_interop.py --backend aioquic --json interop.json

It runs the test module in this process with every server it starts switched to ``--http3-backend
BACKEND`` and prints one line per case: passed or failed, and the failure's last line. Nothing is
asserted (a failing case is a measurement, and the exit status is 0 whatever the cases did): README
"Backends and interop" quotes what this prints.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class _Matrix:
    """A pytest plugin: the backend goes into every server, and each case's outcome is kept."""

    def __init__(self, backend: str, timeout: float) -> None:
        self.backend = backend
        self.timeout = timeout
        self.results: dict[str, dict[str, str]] = {}

    def pytest_collection_modifyitems(self, items: list[Any]) -> None:
        import pytest

        import tests.test_http3 as module

        original = module.run_server

        @contextlib.contextmanager
        def run_server(app: Any, **kwargs: Any) -> Iterator[Any]:
            with original(app, http3_backend=self.backend, **kwargs) as running:
                yield running

        module.run_server = run_server  # the module's own name, which its fixtures and tests call
        for item in items:
            item.add_marker(pytest.mark.timeout(self.timeout))  # closer than the module's 60 s

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "call" or report.outcome != "passed":
            entry = self.results.setdefault(report.nodeid.split("::", 1)[-1], {})
            if report.outcome == "failed" or "outcome" not in entry:
                entry["outcome"] = report.outcome
                if report.outcome != "passed":
                    crash = getattr(report.longrepr, "reprcrash", None)
                    text = crash.message if crash is not None else str(report.longrepr)
                    entry["detail"] = " ".join(text.split())[:200]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="zoomies", choices=("aioquic", "zoomies"))
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per case (default 20)")
    parser.add_argument("--json", type=Path, help="write the results here as well")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import pytest

    matrix = _Matrix(args.backend, args.timeout)
    pytest.main(
        ["-q", "-p", "no:cacheprovider", "-o", "addopts=", "-k", "not test_cli_errors", str(ROOT / "tests" / "test_http3.py")],
        plugins=[matrix],
    )
    import importlib.metadata

    versions = {name: _version(importlib.metadata, name) for name in ("aioquic", "bengal-zoomies")}
    installed = ", ".join(f"{name} {version}" for name, version in versions.items())
    print(f"\naioquic client -> {args.backend} backend (Python {sys.version.split()[0]}; {installed}):")
    for case, entry in matrix.results.items():
        print(f"  {entry['outcome']:7} {case}" + (f"  [{entry['detail']}]" if "detail" in entry else ""))
    if args.json is not None:
        args.json.write_text(json.dumps({"backend": args.backend, "versions": versions, "cases": matrix.results}, indent=2))
    return 0


def _version(metadata: Any, name: str) -> str:
    try:
        return str(metadata.version(name))
    except metadata.PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    sys.exit(main())

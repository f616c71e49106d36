"""h2load (nghttp2) as the HTTP/2 load generator: many streams per connection, prior knowledge (h2c).

h2load prints min/max/mean request times only, so percentiles come from its per-request log
(``--log-file``: start time, status, microseconds to the end of the response).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from pounce.bench.load import Histogram, LoadResult, LoadSpec, run_tool
from pounce.bench.machine import BenchError, pinned

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def parse(output: str, log_lines: list[str]) -> tuple[int, float, int, int, int, Histogram]:
    """(requests succeeded, seconds, errors, non-2xx, bytes, latency histogram)."""
    finished = re.search(r"finished in ([0-9.]+)(us|ms|s),", output)
    requests = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                         r"(\d+) errored, (\d+) timeout", output)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", output)
    traffic = re.search(r"traffic: \S+ \((\d+)\) total", output)
    if not finished or not requests or not codes:
        raise BenchError(f"cannot parse h2load's output:\n{output}")
    seconds = float(finished.group(1)) * _UNITS[finished.group(2)]
    done, failed, errored, timeout = (int(requests.group(i)) for i in (3, 5, 6, 7))
    non_2xx = sum(int(codes.group(i)) for i in (2, 3, 4))
    hist = Histogram()
    for line in log_lines:
        parts = line.split("\t")
        if len(parts) >= 3 and parts[2].strip().isdigit():
            hist.record(int(parts[2]) / 1e6)
    # "failed" counts non-2xx answers too; errors are what never got an answer.
    errors = errored + timeout + max(0, failed - non_2xx - errored - timeout)
    return done - non_2xx, seconds, errors, non_2xx, int(traffic.group(1)) if traffic else 0, hist


def run_h2load(spec: LoadSpec) -> LoadResult:
    if spec.protocol != "http2":
        raise BenchError(f"h2load is used for HTTP/2 only, not {spec.protocol}")
    h2load = shutil.which("h2load")
    if h2load is None:
        raise BenchError("h2load is not installed")
    with tempfile.TemporaryDirectory(prefix="pounce-bench-h2load-") as tmp:
        log_file = Path(tmp) / "requests.log"
        argv = [h2load, "-c", str(spec.connections), "-t", str(spec.workers()), "-m", str(spec.streams),
                "-D", f"{max(1, round(spec.duration))}", "--log-file", str(log_file)]
        if spec.body:
            data = Path(tmp) / "body"
            data.write_bytes(spec.body)
            argv += ["-d", str(data)]
        if spec.method not in ("GET", "POST"):
            argv += ["-H", f":method: {spec.method}"]
        argv.append(spec.url)
        if spec.cpus:
            argv = pinned(argv, spec.cpus)
        done, cpu = run_tool(argv, "h2load", spec.duration + 30)
        lines = log_file.read_text(errors="replace").splitlines() if log_file.exists() else []
    ok, seconds, errors, non_2xx, nbytes, hist = parse(done.stdout, lines)
    p50, p90, p99, p999 = hist.percentiles_ms()
    return LoadResult("h2load", ok, seconds, p50, p90, p99, p999, errors, non_2xx, nbytes, cpu)

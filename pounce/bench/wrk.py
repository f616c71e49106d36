"""wrk as the HTTP/1.1 load generator: its C event loop leaves the CPU to the server.

A Lua script sets the method and body and, in ``done()``, prints the summary and the latency
percentiles wrk keeps (p99.9 included, which ``--latency`` does not print) as one JSON line.
"""

from __future__ import annotations

import json
import shutil
import tempfile

from pounce.bench.load import LoadResult, LoadSpec, run_tool
from pounce.bench.machine import BenchError, pinned

MARK = "POUNCE-BENCH "

_SCRIPT = r"""
wrk.method = "%(method)s"
%(body)s
wrk.headers["Content-Type"] = "application/octet-stream"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"requests": %%d, "duration_us": %%d, "bytes": %%d, "connect": %%d, "read": %%d, ' ..
    '"write": %%d, "status": %%d, "timeout": %%d, "p50": %%d, "p90": %%d, "p99": %%d, "p999": %%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
"""


def lua_script(spec: LoadSpec) -> str:
    body = ""
    if spec.body:
        if len(set(spec.body)) == 1 and len(spec.body) > 64:
            # A large uniform body (upload-1m): built by Lua, not spelled out in the script.
            body = f'wrk.body = string.rep("\\{spec.body[0]}", {len(spec.body)})'
        else:
            body = "wrk.body = \"" + "".join(f"\\{b}" for b in spec.body) + "\""
    return _SCRIPT % {"method": spec.method, "body": body, "mark": MARK}


def parse(output: str) -> dict[str, int]:
    for line in output.splitlines():
        if line.startswith(MARK):
            data: dict[str, int] = json.loads(line[len(MARK):])
            return data
    raise BenchError(f"cannot find wrk's summary in its output:\n{output}")


def run_wrk(spec: LoadSpec) -> LoadResult:
    if spec.protocol != "http1":
        raise BenchError(f"wrk speaks HTTP/1.1 only, not {spec.protocol}")
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("wrk is not installed")
    seconds = max(1, round(spec.duration))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="pounce-bench-") as script:
        script.write(lua_script(spec))
        script.flush()
        argv = [wrk, "-t", str(spec.workers()), "-c", str(spec.connections), "-d", f"{seconds}s",
                "--timeout", "10s", "-s", script.name, spec.url]
        if spec.cpus:
            argv = pinned(argv, spec.cpus)
        done, cpu = run_tool(argv, "wrk", seconds + 30)
    data = parse(done.stdout)
    return LoadResult(
        generator="wrk",
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50"] / 1000.0, p90_ms=data["p90"] / 1000.0,
        p99_ms=data["p99"] / 1000.0, p999_ms=data["p999"] / 1000.0,
        errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
        # wrk counts statuses above 399 as "status" errors; that is what non-2xx means here.
        non_2xx=data["status"],
        bytes=data["bytes"],
        cpu_seconds=cpu,
    )


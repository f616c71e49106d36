"""The parts of ``pounce bench`` that need no server: latency histograms, the generators' scripts and
output parsing, CPU plans, who-set-the-pace, and the reports built from runs."""

from __future__ import annotations

import json
import os

import pytest

from pounce.bench import h2load, wrk
from pounce.bench.html import render
from pounce.bench.load import Histogram, LoadSpec, choose_generator
from pounce.bench.machine import CpuPlan, UsageError
from pounce.bench.report import ratios, summarise, text_report, to_jsonable
from pounce.bench.runner import Run, paced_by
from pounce.bench.workloads import WORKLOADS, app_workload
from tests.bench_html import check_html


def test_histogram_percentiles_are_within_one_percent() -> None:
    hist = Histogram.of(i / 1e5 for i in range(1, 10001))  # 0.01 ms .. 100 ms, evenly
    for p, expected in ((50, 50.0), (90, 90.0), (99, 99.0), (99.9, 99.9)):
        assert hist.percentile_ms(p) == pytest.approx(expected, rel=0.011)
    merged = Histogram(hist.counts)
    merged.merge(hist)
    assert merged.total == 20000 and merged.percentile_ms(50) == hist.percentile_ms(50)
    assert Histogram().percentile_ms(50) != Histogram().percentile_ms(50)  # NaN when empty


def test_wrk_script_carries_method_and_body() -> None:
    spec = LoadSpec("127.0.0.1", 1, "http1", "POST", "/", b"ab\n")
    script = wrk.lua_script(spec)
    assert 'wrk.method = "POST"' in script and 'wrk.body = "\\97\\98\\10"' in script
    big = wrk.lua_script(LoadSpec("127.0.0.1", 1, "http1", "POST", "/", b"x" * 2**20))
    assert 'string.rep("\\120", 1048576)' in big
    line = wrk.MARK + json.dumps({"requests": 5})
    assert wrk.parse("noise\n" + line + "\n") == {"requests": 5}


H2LOAD_OUTPUT = """
finished in 1.00s, 1000.00 req/s, 100.00KB/s
requests: 1010 total, 1010 started, 1005 done, 1000 succeeded, 5 failed, 2 errored, 1 timeout
status codes: 1000 2xx, 0 3xx, 2 4xx, 0 5xx
traffic: 100.00KB (102400) total, 10.00KB (10240) headers (space savings 90.00%), 80.00KB (81920) data
"""


def test_h2load_output_and_request_log_are_parsed() -> None:
    log = [f"1700000000000000\t200\t{us}" for us in (1000, 2000, 3000, 4000)]
    ok, seconds, errors, non_2xx, nbytes, hist = h2load.parse(H2LOAD_OUTPUT, log)
    assert (ok, seconds, non_2xx, nbytes) == (1003, 1.0, 2, 102400)
    assert errors == 3 + 0  # errored + timeout; the rest of "failed" were the 4xx answers
    assert hist.total == 4 and hist.percentile_ms(50) == pytest.approx(2.0, rel=0.011)


def test_generator_choice() -> None:
    assert choose_generator("builtin", "http1") == "builtin"
    assert choose_generator("auto", "ws") == "builtin"
    with pytest.raises(UsageError):
        choose_generator("h2load", "http1")
    with pytest.raises(UsageError):
        choose_generator("ab", "http1")


def test_cpu_plan_separates_server_and_load_when_it_can() -> None:
    usable = sorted(os.sched_getaffinity(0))
    plan = CpuPlan.choose(server_cpus=1)
    if len(usable) > 1:
        assert plan.separate and len(plan.server) == 1 and set(plan.server) | set(plan.load) == set(usable)
    else:
        assert not plan.separate and "shared" in plan.describe()
    with pytest.raises(UsageError):
        CpuPlan.choose("9999")


def test_who_set_the_pace() -> None:
    assert paced_by(50, 0, 95) == "load generator"
    assert paced_by(97, 0, 30) == "server"
    assert paced_by(40, 50, 30) == "other processes"
    assert paced_by(40, 0, 30).startswith("neither")


def test_workload_connections_count_requests_in_flight() -> None:
    assert WORKLOADS["hello"].connections(50) == 50
    assert WORKLOADS["h2"].connections(50) == 5
    assert WORKLOADS["ws-echo"].connections(8) == 1
    assert WORKLOADS["hello"].over_http2().protocol == "http2"
    with pytest.raises(UsageError):
        app_workload("m:app", method="GET", path="nope", body=b"", http="1.1")


def fake_runs() -> list[Run]:
    runs = []
    for server, rps in (("pounce", 2000.0), ("uvicorn", 1000.0)):
        for rnd, k in ((1, 1.0), (2, 1.1), (3, 0.9)):
            runs.append(Run(server, "hello", rnd, True, generator="wrk", requests=int(rps * k), seconds=1.0,
                            requests_per_sec=rps * k, p50_ms=1.0 * k, p90_ms=2.0, p99_ms=3.0 * k, p999_ms=4.0,
                            server_cpu_seconds=1.0, server_cpu_pct=99.0, server_other_cpu_pct=0.0,
                            load_cpu_pct=30.0, requests_per_cpu_sec=rps * k, rss_peak_bytes=2**25,
                            pss_peak_bytes=2**24, processes=1, paced_by="server"))
    runs.append(Run("uvicorn", "stream", 1, False, "it crashed", "wrk"))
    return runs


def fake_doc(results: list) -> dict:  # type: ignore[type-arg]
    return {"machine": {"cpu_model": "Test CPU", "cpu_count": 2, "usable_cpus": [0, 1], "memory_bytes": 2**30,
                        "kernel": "6", "platform": "Linux"},
            "python": {"implementation": "CPython", "version": "3.11", "build": "GIL", "gil_enabled": True},
            "settings": {"connections": 50, "duration": 1.0, "warmup": 0.0, "rounds": 3, "workers": 1},
            "cpus": {"description": "server on CPU 0, load on CPU 1"},
            "servers": [{"name": "pounce", "available": True, "description": "pounce 0"},
                        {"name": "granian", "available": False, "reason": "granian is not installed"}],
            "workloads": [{"name": "hello", "description": "hello <&> \"quoted\""},
                          {"name": "stream", "description": "stream"}],
            "ratios": ratios(results), "warnings": ["a <warning> & more"], "started_at": "now",
            "command": ["pounce", "bench"], "results": results}


def test_summary_ratios_text_and_html_agree() -> None:
    results = summarise(fake_runs())
    by = {(r.server, r.workload): r for r in results}
    assert by[("pounce", "hello")].requests_per_sec == 2000.0  # the median of the three rounds
    assert by[("pounce", "hello")].rps_spread_pct == pytest.approx(20.0)
    assert not by[("uvicorn", "stream")].ok and by[("uvicorn", "stream")].error == "it crashed"
    table = ratios(results)
    assert table["hello"]["uvicorn"]["requests_per_sec"] == pytest.approx(2.0)
    doc = fake_doc(results)
    text = text_report(doc, results)
    assert "2.00x" in text and "FAILED" in text and "granian: not run" in text
    check_html(render(doc, results), to_jsonable(doc))

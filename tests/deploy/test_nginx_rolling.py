"""Beyond one machine: real nginx in front of three Pounce instances, replaced one by one under wrk load.

The recipe README's "Behind a load balancer" section gives: an ``upstream`` with ``keepalive`` and
passive health checks (``max_fails``/``fail_timeout``), ``proxy_next_upstream error timeout`` so a
request that met a refused or closed connection is sent to another instance, and Pounce's drain on
SIGTERM (listeners closed at once, requests in flight finished, idle keep-alive connections closed
after a short grace window). Replacing every instance under steady GET load must cost **no** failed
request; a SIGKILL under POST load (which nginx never retries once it reached an instance) may cost at
most the requests that were on the killed instance at that moment.

POST load during the same replacement is measured and bounded, not asserted to be 0: nginx may send a
request on a cached keep-alive connection at the very moment the draining instance closes it (seen: 1
in 239,000), and it does not retry a non-idempotent request. That race belongs to HTTP/1.1 keep-alive;
the load balancer avoids it by no longer choosing the instance before it stops (a readiness probe that
fails while draining, or a ``down`` entry and a reload).

Run it alone: ``python3 -m pytest tests/deploy -s`` (prints the counts). Needs ``nginx`` and ``wrk``
(``apt-get install nginx wrk``); skipped with that reason where they are missing.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.supervisors.serving import ROOT, free_port, get, wait_for

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
WRK = shutil.which("wrk")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.skipif(NGINX is None or WRK is None, reason="needs nginx and wrk (apt-get install nginx wrk)"),
]

APP = "tests.supervisors.apps:app"
CONNECTIONS = 20
# POST, not GET: nginx never passes a non-idempotent request that reached an instance on to another one,
# so a request an instance drops while it drains is a failure the client sees, not a silent retry.
POST_SCRIPT = 'wrk.method = "POST"\nwrk.body = "payload"\nwrk.headers["Content-Type"] = "text/plain"\n'

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream pounce {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://pounce;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout http_502 http_503;
            proxy_connect_timeout 1s;
        }}
    }}
}}
"""


def start_instance(port: int, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pounce", APP, "--port", str(port), "--no-access-log",
         "--timeout-graceful-shutdown", "10"],
        cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )

    def ready() -> bool:
        try:
            return get(port, timeout=1)[0] == 200
        except OSError:
            return False

    assert wait_for(ready, 20, step=0.05), log.read_text(errors="replace")
    return proc


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextmanager
def nginx_in_front(tmp_path: Path, ports: list[int]) -> Iterator[int]:
    assert NGINX is not None
    front = free_port()
    servers = "\n".join(f"        server 127.0.0.1:{port} max_fails=1 fail_timeout=2s;" for port in ports)
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp_path, servers=servers, port=front))
    proc = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def up() -> bool:
        try:
            return get(front, timeout=1)[0] == 200
        except OSError:
            return False

    try:
        assert wait_for(up, 10, step=0.05), proc.stderr.read().decode() if proc.poll() is not None else "nginx not up"
        yield front
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def wrk_load(port: int, seconds: int, post: bool = False) -> Iterator[dict[str, int]]:
    """wrk for ``seconds`` on ``port``; the dict gets requests/non2xx/socket_errors once the block ends."""
    assert WRK is not None
    script = Path(os.environ.get("TMPDIR", "/tmp")) / f"pounce-post-{os.getpid()}.lua"
    script.write_text(POST_SCRIPT)
    proc = subprocess.Popen([WRK, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s",
                             *(("-s", str(script)) if post else ()), f"http://127.0.0.1:{port}/"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    result: dict[str, int] = {}
    try:
        yield result
    finally:
        out = proc.communicate(timeout=seconds + 30)[0].decode()
    result.update(parse_wrk(out))
    result["output"] = out  # type: ignore[assignment]


def parse_wrk(out: str) -> dict[str, int]:
    requests = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests": int(requests.group(1)) if requests else 0,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(n) for n in errors.groups()) if errors else 0,
    }


def test_rolling_replacement_behind_nginx_loses_nothing_and_a_kill_is_bounded(tmp_path: Path) -> None:
    ports = [free_port() for _ in range(3)]
    log = tmp_path / "pounce.log"
    instances = [start_instance(port, log) for port in ports]
    try:
        with nginx_in_front(tmp_path, ports) as front:

            def replace_all() -> None:
                time.sleep(1.5)
                for index, port in enumerate(ports):
                    # As an orchestrator does: SIGTERM (the instance drains), start the new one on the
                    # same address, wait until it answers, go on to the next.
                    stop(instances[index])
                    instances[index] = start_instance(port, log)
                    time.sleep(1.0)

            with wrk_load(front, seconds=10) as rolling:
                replace_all()
            print(f"\nrolling replacement, GET: {rolling}")
            assert rolling["requests"] > 1000, rolling["output"]
            assert rolling["non2xx"] == 0 and rolling["socket_errors"] == 0, rolling["output"]

            with wrk_load(front, seconds=10, post=True) as rolling_post:
                replace_all()
            print(f"rolling replacement, POST: {rolling_post}")
            # Measured, not asserted to be 0: see the module docstring (the keep-alive close race).
            assert rolling_post["non2xx"] + rolling_post["socket_errors"] <= 3, rolling_post["output"]

            with wrk_load(front, seconds=5, post=True) as killed:
                time.sleep(1.5)
                instances[1].send_signal(signal.SIGKILL)
                instances[1].wait(5)
            failed = killed["non2xx"] + killed["socket_errors"]
            print(f"SIGKILL of one instance, POST: {killed}")
            assert killed["requests"] > 500, killed["output"]
            # At most the requests that were on the killed instance (one per wrk connection at a time).
            assert failed <= CONNECTIONS, killed["output"]
    finally:
        for proc in instances:
            stop(proc)

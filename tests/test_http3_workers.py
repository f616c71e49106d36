"""HTTP/3 with several workers (``--workers 2 --worker-mode thread|process``): each worker binds its own UDP
socket on the port with SO_REUSEPORT, the kernel spreads connections over them by address, and a connection
stays with the worker that accepted it. A real ``python -m pounce`` and aioquic's client."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytest.importorskip("aioquic", reason="HTTP/3 needs aioquic: pip install 'pounce-asgi[h3]'")
from tests.h3client import h3_connect
from tests.test_http3 import write_certs
from tests.supervisors.serving import serve

pytestmark = pytest.mark.timeout(90)

CONNECTIONS = 12


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_connections_spread_over_workers_and_stay_with_theirs(tmp_path: Path, mode: str) -> None:
    certs = write_certs(tmp_path)
    args = ("--workers", "2", "--worker-mode", mode, "--ssl-certfile", certs.cert, "--ssl-keyfile", certs.key, "--http3")
    with serve(*args, tmp_path=tmp_path, ready=False) as server:
        assert server.wait_log("Serving HTTP/3 on udp", count=2, timeout=30), server.output()

        async def one() -> set[str]:
            # Each connection is a new UDP socket: another client port, so another 4-tuple to hash.
            async with h3_connect(server.port, certs.ca_pem) as client:
                seen = set()
                for _ in range(3):
                    response = await client.request("GET", "/", timeout=10)
                    assert response.status == 200, response
                    seen.add(bytes(response.body).decode())
                return seen

        async def go() -> list[set[str]]:
            return list(await asyncio.gather(*(one() for _ in range(CONNECTIONS))))

        results = asyncio.run(go())
        output = server.output()
    assert len(results) == CONNECTIONS
    assert all(len(seen) == 1 for seen in results), results  # a connection's requests: one worker
    workers = {next(iter(seen)) for seen in results}
    # 12 connections hashed over 2 sockets all landing on one: about 1 in 2000.
    assert len(workers) == 2, (workers, output)
    assert output.count("Serving HTTP/3 on udp") == 2

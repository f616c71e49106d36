"""An app that leaves orphans: ``/orphan`` starts ``sh -c 'sleep 0.3 &'`` and waits for the shell only, so
the ``sleep`` is re-parented to the namespace's PID 1 (the server, in a container) and exits there."""

from __future__ import annotations

import subprocess
from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/orphan":
        subprocess.run(["sh", "-c", "sleep 0.3 &"], check=True)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})

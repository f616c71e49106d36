from __future__ import annotations

from typing import Any

import httpx
import pytest

from pounce._types import Scope
from pounce.middleware.asgi2 import ASGI2Middleware

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Asgi2App:
    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        body = (await receive())["body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": self.scope["path"].encode() + b":" + body})


async def test_asgi2_app_served_as_asgi3() -> None:
    transport = httpx.ASGITransport(app=ASGI2Middleware(Asgi2App))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post("/path", content=b"data")
    assert response.status_code == 200
    assert response.text == "/path:data"

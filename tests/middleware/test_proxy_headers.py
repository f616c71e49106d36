from __future__ import annotations

import ipaddress
from typing import Any

import httpx
import pytest

from pounce._types import Message, Scope
from pounce.middleware.proxy_headers import ProxyHeadersMiddleware, _parse_host_port, _TrustedHosts

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def echo_app(scope: Scope, receive: Any, send: Any) -> None:
    """Responds with ``scheme://client`` so a test can read what the middleware rewrote."""
    host, port = scope["client"]
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass
    body = f"{scope['scheme']}://{host}:{port}".encode("latin1")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


def make_client(trusted_hosts: str | list[str], client: tuple[str, int] = ("127.0.0.1", 123)) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=ProxyHeadersMiddleware(echo_app, trusted_hosts), client=client)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


_NOTHING: list[str] = []
_EVERYTHING = "*"
_EVERYTHING_LIST = ["*"]
_V4_ADDRS = "127.0.0.1, 10.0.0.1"
_V4_NETS = ["127.0.0.0/8", "10.0.0.0/8"]
_V6_ADDRS = [
    "2001:db8::",
    "2001:0db8:0001:0000:0000:0ab9:C0A8:0102",
    "2001:db8:3333:4444:5555:6666:1.2.3.4",  # dual address
    "::11.22.33.44",  # dual address
]
_V6_NETS = "2001:db8:abcd:0012::0/64"
_LITERALS = "some-literal , unix:///foo/bar  ,  /foo/bar, garba*gewith*"

_HOSTS = [
    "127.0.0.1", "127.1.1.1", "10.0.0.1", "10.255.255.255", "192.168.0.1", "1.1.1.1",
    "2001:db8::", "2001:db8:abcd:0012::1:1", "::1",
    "2001:db8:3333:4444:5555:6666:102:304",  # = ...:1.2.3.4
    "::b16:212c",  # = ::11.22.33.44
    "some-literal", "unix:///foo/bar", "/foo/bar", "*", "another-literal", "",
]  # fmt: skip

_TRUSTED: dict[str, set[str]] = {
    "nothing": set(),
    "v4_addrs": {"127.0.0.1", "10.0.0.1"},
    "v4_nets": {"127.0.0.1", "127.1.1.1", "10.0.0.1", "10.255.255.255"},
    "v6_addrs": {"2001:db8::", "2001:db8:3333:4444:5555:6666:102:304", "::b16:212c"},
    "v6_nets": {"2001:db8:abcd:0012::1:1"},
    "literals": {"some-literal", "unix:///foo/bar", "/foo/bar"},
}
_INIT: dict[str, str | list[str]] = {
    "nothing": _NOTHING,
    "v4_addrs": _V4_ADDRS,
    "v4_nets": _V4_NETS,
    "v6_addrs": _V6_ADDRS,
    "v6_nets": _V6_NETS,
    "literals": _LITERALS,
}


@pytest.mark.parametrize("kind", sorted(_INIT))
@pytest.mark.parametrize("host", _HOSTS)
def test_trusted_hosts_table(kind: str, host: str) -> None:
    assert (host in _TrustedHosts(_INIT[kind])) is (host in _TRUSTED[kind])


@pytest.mark.parametrize("init", [_EVERYTHING, _EVERYTHING_LIST])
@pytest.mark.parametrize("host", _HOSTS)
def test_always_trust(init: str | list[str], host: str) -> None:
    assert host in _TrustedHosts(init)


def test_none_and_overlong_hosts_are_untrusted() -> None:
    trusted = _TrustedHosts("127.0.0.1, literal")
    assert None not in trusted
    assert ("x" * 300) not in trusted
    assert "literal" in trusted


@pytest.mark.parametrize(
    ("trusted_hosts", "expected"),
    [
        ("*", "https://1.2.3.4:0"),
        ("127.0.0.1", "https://1.2.3.4:0"),
        (["127.0.0.1"], "https://1.2.3.4:0"),
        (["127.0.0.1", "10.0.0.1"], "https://1.2.3.4:0"),
        ("127.0.0.1, 10.0.0.1", "https://1.2.3.4:0"),
        ("127.0.0.0/24, 10.0.0.1", "https://1.2.3.4:0"),
        ("192.168.0.1", "http://127.0.0.1:123"),  # untrusted proxy: headers ignored
        ("192.168.0.0/16", "http://127.0.0.1:123"),
        (["127.0.0.1", "1.2.3.4"], "https://1.2.3.4:0"),  # client is itself a trusted proxy
    ],
)
async def test_trusted_hosts(trusted_hosts: str | list[str], expected: str) -> None:
    async with make_client(trusted_hosts) as client:
        response = await client.get("/", headers={"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "https"})
    assert response.status_code == 200
    assert response.text == expected


@pytest.mark.parametrize(
    ("forwarded_for", "forwarded_proto", "expected"),
    [
        ("", "", "http://127.0.0.1:123"),
        ("", None, "http://127.0.0.1:123"),
        ("", "asdf", "http://127.0.0.1:123"),
        (" , ", "https", "https://127.0.0.1:123"),
        (", , ", "https", "https://127.0.0.1:123"),
        (" , 10.0.0.1", "https", "https://127.0.0.1:123"),
        ("9.9.9.9 , , , 10.0.0.1", "https", "https://127.0.0.1:123"),
        (", , 9.9.9.9", "https", "https://9.9.9.9:0"),
        (", , 9.9.9.9, , ", "https", "https://127.0.0.1:123"),
        (None, " https ", "https://127.0.0.1:123"),
    ],
)
async def test_malformed_headers(forwarded_for: str | None, forwarded_proto: str | None, expected: str) -> None:
    headers = {}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    if forwarded_proto is not None:
        headers["X-Forwarded-Proto"] = forwarded_proto
    async with make_client("127.0.0.1, 10.0.0.0/8") as client:
        response = await client.get("/", headers=headers)
    assert response.text == expected


@pytest.mark.parametrize(
    ("trusted_hosts", "expected"),
    [
        ("*", "https://1.2.3.4:0"),
        (["127.0.0.1", "10.0.2.1", "192.168.0.2"], "https://1.2.3.4:0"),
        (["10.0.2.1", "192.168.0.2", "127.0.0.1"], "https://1.2.3.4:0"),
        (["192.168.0.2", "127.0.0.1"], "https://10.0.2.1:0"),  # first untrusted hop, from the right
        (["127.0.0.1", "10.0.0.0/8", "192.168.0.2"], "https://1.2.3.4:0"),
    ],
)
async def test_multiple_proxies(trusted_hosts: str | list[str], expected: str) -> None:
    async with make_client(trusted_hosts) as client:
        response = await client.get(
            "/", headers={"X-Forwarded-For": "1.2.3.4, 10.0.2.1, 192.168.0.2", "X-Forwarded-Proto": "https"}
        )
    assert response.text == expected


@pytest.mark.parametrize(
    ("trusted_hosts", "expected"),
    [
        ("*", "https://1.2.3.4:1234"),
        (["127.0.0.1", "2001:db8::1", "192.168.0.2"], "https://1.2.3.4:1234"),
        (["192.168.0.2", "127.0.0.1"], "https://[2001:db8::1]:8080"),
        (["127.0.0.1", "2001:db8::/32", "192.168.0.2"], "https://1.2.3.4:1234"),
    ],
)
async def test_multiple_proxies_with_ports(trusted_hosts: str | list[str], expected: str) -> None:
    async with make_client(trusted_hosts) as client:
        response = await client.get(
            "/",
            headers={
                "X-Forwarded-For": "1.2.3.4:1234, [2001:db8::1]:8080, 192.168.0.2:9000",
                "X-Forwarded-Proto": "https",
            },
        )
    assert response.text == expected


async def test_non_ascii_forwarded_for() -> None:
    headers = httpx.Headers(
        {"X-Forwarded-For": "1.2.3.4, \xf0\xfd\xfd\xfd, unix:, ::1", "X-Forwarded-Proto": "https"},
        encoding="latin-1",
    )
    async with make_client("*") as client:
        response = await client.get("/", headers=headers)
    assert response.text == "https://1.2.3.4:0"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.2.3.4", ("1.2.3.4", 0)),
        ("1.2.3.4:1234", ("1.2.3.4", 1234)),
        ("[2001:db8::1]:443", ("2001:db8::1", 443)),
        ("[2001:db8::1]", ("2001:db8::1", 0)),
        ("2001:db8::1", ("2001:db8::1", 0)),
        ("1.2.3.4:notaport", ("1.2.3.4:notaport", 0)),
        ("[2001:db8::1]:notaport", ("2001:db8::1", 0)),
        ("[2001:db8::1]extra", ("[2001:db8::1]extra", 0)),
        ("[2001:db8::1", ("[2001:db8::1", 0)),
    ],
)
def test_parse_host_port(value: str, expected: tuple[str, int]) -> None:
    assert _parse_host_port(value) == expected


async def test_empty_forwarded_for_keeps_client() -> None:
    async with make_client("*") as client:
        response = await client.get("/", headers={"X-Forwarded-For": "", "X-Forwarded-Proto": "https"})
    assert response.text == "https://127.0.0.1:123"


def http_scope(headers: list[tuple[bytes, bytes]], type_: str = "http", client: Any = ("127.0.0.1", 12345)) -> Scope:
    return {
        "type": type_,
        "scheme": "ws" if type_ == "websocket" else "http",
        "path": "/",
        "headers": headers,
        "client": client,
        "server": ("127.0.0.1", 80),
    }


async def run(middleware: ProxyHeadersMiddleware, scope: Scope) -> Scope:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        seen.append(scope)

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        pass

    middleware.app = app
    await middleware(scope, receive, send)
    return seen[0]


@pytest.mark.parametrize(
    ("proto", "expected"),
    [("http", "ws"), ("https", "wss"), ("ws", "ws"), ("wss", "wss"), ("ftp", "ws")],
)
async def test_websocket_forwarded_proto(proto: str, expected: str) -> None:
    middleware = ProxyHeadersMiddleware(echo_app, "*")
    scope = await run(middleware, http_scope([(b"x-forwarded-proto", proto.encode())], type_="websocket"))
    assert scope["scheme"] == expected


async def test_duplicate_forwarded_for_is_combined() -> None:
    middleware = ProxyHeadersMiddleware(echo_app, "127.0.0.1")
    scope = await run(
        middleware,
        http_scope([(b"x-forwarded-for", b"203.0.113.66, 198.51.100.23"), (b"x-forwarded-for", b"127.0.0.1")]),
    )
    assert scope["client"] == ("198.51.100.23", 0)


@pytest.mark.parametrize(("first", "last"), [(b"https", b"http"), (b"http", b"https")])
async def test_duplicate_forwarded_proto_uses_last(first: bytes, last: bytes) -> None:
    middleware = ProxyHeadersMiddleware(echo_app, "127.0.0.1")
    scope = await run(middleware, http_scope([(b"x-forwarded-proto", first), (b"x-forwarded-proto", last)]))
    assert scope["scheme"] == last.decode()


async def test_unix_socket_client_trusted_by_literal() -> None:
    # Over a unix socket the protocols report no client address; a literal can still be trusted
    # when the server supplies a path-like host.
    middleware = ProxyHeadersMiddleware(echo_app, "/tmp/app.sock")
    scope = await run(middleware, http_scope([(b"x-forwarded-for", b"5.6.7.8")], client=("/tmp/app.sock", 0)))
    assert scope["client"] == ("5.6.7.8", 0)
    scope = await run(middleware, http_scope([(b"x-forwarded-for", b"5.6.7.8")], client=None))
    assert scope["client"] is None


async def test_lifespan_passes_through_untouched() -> None:
    middleware = ProxyHeadersMiddleware(echo_app, "*")
    scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    assert await run(middleware, scope) == {"type": "lifespan", "asgi": {"version": "3.0"}}

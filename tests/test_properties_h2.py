"""Property-based test of the HTTP/2 connection handler (``H2Protocol``) against a real server.

An ``h2`` client connection generates frame sequences (requests with headers and bodies, trailers,
stream resets, window updates, pings, settings, priority, GOAWAY), interleaved with raw frames built by
hyperframe (any type, flags, stream id and payload, valid or not) and with bytes of either kind damaged
at random. They go over a cleartext prior-knowledge connection to one Pounce server; whatever arrives:

* the connection handler never crashes: nothing is logged that only a failure inside the server logs
  (an exception in a protocol callback, a task, or the app; an HTTP/2 response h2 refused to send);
* the connection never hangs: a PING after a frame-aligned sequence is answered (unless the server has
  closed the connection), and the server closes its side once the client has closed its own;
* the server keeps serving: a fresh connection gets its answer after every example.

Refusing the input (GOAWAY, RST_STREAM, closing) is fine: the property is about robustness only. It is
slow (real sockets), so the example count is small and each socket wait is bounded.
"""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hpack
import pytest
from hyperframe import frame as hf
from hypothesis import event, given, settings
from hypothesis import strategies as st

from pounce.protocols.http.negotiate import PREFACE
from tests.strategies import BASE_SETTINGS
from tests.utils import RunningServer, captured_logs, run_server

pytestmark = pytest.mark.timeout(60)

# 50 by default (about two seconds); POUNCE_H2_PROPERTY_EXAMPLES=2000 for a deeper local run.
EXAMPLES = int(os.environ.get("POUNCE_H2_PROPERTY_EXAMPLES", "50"))
# What only a failure inside the server logs. "Invalid HTTP/2 frame received" (a warning about the
# client's frames) is expected and allowed.
CRASH_MARKERS = (
    "Exception in",  # "Exception in ASGI application", asyncio's "Exception in callback ..."
    "Fatal error",  # asyncio: "Fatal error: protocol.data_received() call failed."
    "Traceback",
    "exception was never retrieved",
    "Invalid HTTP/2 response",  # h2 refused a response our own checks let through
    "ASGI callable",  # "returned without starting/completing response": the app was told a lie
)
SENTINEL = b"sentinel"
IO_TIMEOUT = 5.0


# ---------------------------------------------------------------------------------------- app
async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the body (except on /noread), then answers in a way that depends on the path, so the
    responses exercise flow control (/big), streaming (/stream) and trailers (/trailers)."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    size = 0
    if path != "/noread":
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
    if path == "/big":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(3):
            await send({"type": "http.response.body", "body": b"b" * 40_000, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-size", b"%d" % size)]})
        for part in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/trailers":
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"with trailers"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"1")]})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"%d" % size})


# ------------------------------------------------------------------------------------ actions
@dataclass(frozen=True)
class Request:
    method: bytes
    path: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body_parts: tuple[bytes, ...]
    end_stream: bool
    trailers: tuple[tuple[bytes, bytes], ...] | None


@dataclass(frozen=True)
class StreamAction:
    """Something done to one of the streams opened so far (``index`` modulo their number)."""

    kind: str  # "data", "end", "reset", "window", "priority"
    index: int
    data: bytes = b""
    number: int = 0  # error code, window increment or weight
    flag: bool = False  # end_stream / exclusive


@dataclass(frozen=True)
class ConnectionAction:
    kind: str  # "ping", "settings", "window", "goaway"
    number: int = 0
    data: bytes = b""
    settings: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class RawFrame:
    """A frame built outside h2's state machine (hyperframe, or bytes when hyperframe refuses)."""

    frame_type: int
    flags: int
    stream_id: int
    payload: bytes
    fields: tuple[int, int, int] = (0, 0, 0)  # type-specific numbers (depends_on, codes, ids, ...)
    length_lie: int = 0  # added to the serialized length field


Action = Request | StreamAction | ConnectionAction | RawFrame


@dataclass(frozen=True)
class Step:
    action: Action
    mutation_seed: bytes | None  # when set, the step's bytes are damaged (see ``damage``)


header_names = st.sampled_from(
    [
        b"x-a", b"accept", b"content-type", b"te", b"user-agent", b"cookie", b"X-Upper", b"connection",
        b"content-length", b"host", b"expect",
    ]
)
header_values = st.sampled_from(
    [b"1", b"trailers", b"gzip", b"100-continue", b"", b" spaced ", b"a\x00b", b"x" * 300, b"0", b"7"]
)
paths = st.sampled_from([b"/", b"/echo", b"/big", b"/stream", b"/trailers", b"/noread", b"/%zz", b"", b"*", b"/\xff"])
methods = st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"CONNECT", b"OPTIONS", b"bad method"])

requests = st.builds(
    Request,
    methods,
    paths,
    st.lists(st.tuples(header_names, header_values), max_size=3).map(tuple),
    st.lists(st.binary(max_size=300), max_size=3).map(tuple),
    st.booleans(),
    st.one_of(st.none(), st.lists(st.tuples(header_names, header_values), min_size=1, max_size=2).map(tuple)),
)
stream_actions = st.builds(
    StreamAction,
    st.sampled_from(["data", "end", "reset", "window", "priority"]),
    st.integers(0, 7),
    st.binary(max_size=200),
    st.one_of(st.integers(0, 14), st.integers(1, 2**31 - 1), st.integers(1, 256)),
    st.booleans(),
)
# SETTINGS identifiers 1..8 (RFC 9113 §6.5.2, RFC 8441) and an unknown one; values valid and not.
setting_items = st.tuples(
    st.sampled_from([1, 2, 3, 4, 5, 6, 8, 0x99]),
    st.sampled_from([0, 1, 100, 16383, 16384, 65535, 2**24 - 1, 2**31 - 1, 2**31, 2**32 - 1]),
)
connection_actions = st.one_of(
    st.builds(ConnectionAction, st.just("ping"), data=st.binary(min_size=8, max_size=8)),
    st.builds(ConnectionAction, st.just("settings"), settings=st.lists(setting_items, max_size=3).map(tuple)),
    st.builds(ConnectionAction, st.just("window"), number=st.integers(1, 2**31 - 1)),
    st.builds(ConnectionAction, st.just("goaway"), number=st.integers(0, 14)),
)
raw_frames = st.builds(
    RawFrame,
    st.one_of(st.integers(0, 9), st.integers(10, 255)),
    st.sampled_from([0, 0x1, 0x4, 0x5, 0x8, 0x20, 0x25, 0xFF]),
    st.one_of(st.sampled_from([0, 1, 3, 5, 2, 2**31 - 1]), st.integers(0, 2**31 - 1)),
    st.one_of(st.binary(max_size=40), st.just(b"\x82\x86\x84\x41\x01a")),  # the last: a valid HPACK GET /
    st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 2**32 - 1), st.integers(0, 255)),
    st.one_of(st.just(0), st.just(0), st.just(0), st.integers(-3, 3)),
)
steps = st.builds(
    Step,
    st.one_of(requests, requests, stream_actions, stream_actions, connection_actions, raw_frames),
    st.one_of(st.none(), st.none(), st.none(), st.none(), st.binary(min_size=4, max_size=4)),
)


@dataclass
class Scenario:
    validate_headers: bool  # False: h2 sends what we give it (uppercase names, connection headers, ...)
    steps: list[Step] = field(default_factory=list)
    damage_preface: bool = False


scenarios = st.builds(
    Scenario,
    st.booleans(),
    st.lists(steps, min_size=1, max_size=12),
    # Rarely (hypothesis favours small integers, so not "== 0"): the preface itself damaged, which sends the
    # connection down the HTTP/1.1 path of the negotiation.
    st.integers(0, 30).map(lambda n: n == 17),
)


# -------------------------------------------------------------------------------- raw frames
def build_raw(frame: RawFrame) -> bytes:
    """Serialize with hyperframe where it accepts the fields; otherwise write the 9-byte header by hand."""
    a, b, c = frame.fields
    sid = frame.stream_id
    try:
        built: Any  # one of hyperframe's frame classes; their fields differ
        t = frame.frame_type
        if t == 0:
            built = hf.DataFrame(sid, frame.payload)
        elif t == 1:
            built = hf.HeadersFrame(sid, frame.payload)
            if frame.flags & 0x20:
                built.depends_on, built.stream_weight, built.exclusive = a, c, bool(b & 1)
        elif t == 2:
            built = hf.PriorityFrame(sid, depends_on=a, stream_weight=c, exclusive=bool(b & 1))
        elif t == 3:
            built = hf.RstStreamFrame(sid, error_code=b)
        elif t == 4:
            built = hf.SettingsFrame(sid, settings={c % 10: b})
        elif t == 5:
            built = hf.PushPromiseFrame(sid, promised_stream_id=a, data=frame.payload)
        elif t == 6:
            built = hf.PingFrame(sid, opaque_data=(frame.payload + bytes(8))[:8])
        elif t == 7:
            built = hf.GoAwayFrame(sid, last_stream_id=a, error_code=b, additional_data=frame.payload)
        elif t == 8:
            built = hf.WindowUpdateFrame(sid, window_increment=a)
        elif t == 9:
            built = hf.ContinuationFrame(sid, frame.payload)
        else:
            built = hf.ExtensionFrame(t, sid, flag_byte=frame.flags, body=frame.payload)
            built.body_len = len(frame.payload)  # hyperframe 6.1 serializes length 0 unless parsed
        for flag in getattr(built, "defined_flags", ()):
            if frame.flags & flag.bit:
                built.flags.add(flag.name)
        if "PADDED" in built.flags:
            built.pad_length = c
        data = bytes(built.serialize())
    except Exception:  # hyperframe refuses some field combinations: write them ourselves
        payload = frame.payload
        header = len(payload).to_bytes(3, "big") + bytes((frame.frame_type & 0xFF, frame.flags))
        data = header + sid.to_bytes(4, "big") + payload
    if frame.length_lie:
        # A length field that disagrees with the payload: what follows is read out of step.
        length = max(0, int.from_bytes(data[:3], "big") + frame.length_lie)
        data = length.to_bytes(3, "big") + data[3:]
    return data


def damage(data: bytes, seed: bytes) -> bytes:
    """``data`` with 1-3 random damages (bit flip, inserted byte, deletion, truncation, duplicated span).

    Derived from a drawn seed rather than drawn directly, because the bytes exist only once h2 has
    produced them inside the example; the seed keeps the example reproducible.
    """
    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        n = len(out)
        kind = rng.randrange(5)
        if kind == 0 and n:
            out[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif kind == 1:
            out.insert(rng.randint(0, n), rng.choice(b"\x00\xff\x80\x01\x04"))
        elif kind == 2 and n:
            i = rng.randrange(n)
            del out[i : i + rng.randint(1, 9)]
        elif kind == 3 and n:
            del out[rng.randrange(n) :]
        elif n:
            i = rng.randrange(n)
            j = min(n, i + rng.randint(1, 12))
            out[j:j] = out[i:j]
    return bytes(out)


# ----------------------------------------------------------------------------------- client
class FuzzClient:
    """One raw connection driven by an h2 client state machine, plus anything else we write on it."""

    def __init__(self, running: RunningServer, scenario: Scenario) -> None:
        self.sock = running.connect(IO_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=scenario.validate_headers,
            normalize_outbound_headers=scenario.validate_headers,
            validate_inbound_headers=False,
        )
        self.conn = h2.connection.H2Connection(config)
        self.streams: list[int] = []
        self.ended: set[int] = set()  # streams the client finished sending (it expects a response)
        self.sent = bytearray()  # everything written, to tell whether it ends on a frame boundary
        self.peer_closed = False
        self.client_broken = False  # the h2 state machine gave up on what the server sent
        self.inbound = bytearray()
        self.server_frames: list[tuple[int, int, int, bytes]] = []  # (type, flags, stream, payload)
        self.hpack = hpack.Encoder()

    def write(self, data: bytes) -> None:
        if not data or self.peer_closed:
            return
        self.sent += data
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            self.peer_closed = True

    def h2_output(self) -> bytes:
        return self.conn.data_to_send()

    def perform(self, action: Action) -> bytes:
        """Apply ``action`` to the h2 state machine (or build it raw); return the bytes it produces."""
        conn = self.conn
        try:
            if isinstance(action, Request):
                stream_id = conn.get_next_available_stream_id()
                head = [(b":method", action.method), (b":scheme", b"http"), (b":authority", b"example.org")]
                if action.path:
                    head.insert(1, (b":path", action.path))
                body = bool(action.body_parts) or action.trailers is not None
                conn.send_headers(stream_id, head + list(action.headers), end_stream=action.end_stream and not body)
                self.streams.append(stream_id)
                for i, part in enumerate(action.body_parts):
                    last = i == len(action.body_parts) - 1 and action.trailers is None
                    conn.send_data(stream_id, part, end_stream=action.end_stream and last)
                if action.trailers is not None:
                    conn.send_headers(stream_id, list(action.trailers), end_stream=True)
                if action.end_stream or action.trailers is not None:
                    self.ended.add(stream_id)
            elif isinstance(action, StreamAction):
                if not self.streams:
                    return b""
                stream_id = self.streams[action.index % len(self.streams)]
                if action.kind == "data":
                    conn.send_data(stream_id, action.data, end_stream=action.flag)
                    if action.flag:
                        self.ended.add(stream_id)
                elif action.kind == "end":
                    conn.end_stream(stream_id)
                    self.ended.add(stream_id)
                elif action.kind == "reset":
                    conn.reset_stream(stream_id, action.number % 16)
                    self.ended.discard(stream_id)
                elif action.kind == "window":
                    conn.increment_flow_control_window(action.number, stream_id)
                else:
                    depends_on = self.streams[(action.index + 1) % len(self.streams)]
                    weight = action.number % 256 + 1
                    conn.prioritize(stream_id, weight=weight, depends_on=depends_on, exclusive=action.flag)
            elif isinstance(action, ConnectionAction):
                if action.kind == "ping":
                    conn.ping(action.data)
                elif action.kind == "settings":
                    conn.update_settings(dict(action.settings))
                elif action.kind == "window":
                    conn.increment_flow_control_window(action.number)
                else:
                    conn.close_connection(action.number)
            else:
                return self.h2_output() + build_raw(action)
        except (h2.exceptions.H2Error, ValueError, KeyError, IndexError):
            # h2 refuses this in the current state or value (or, out of step after raw frames, trips over
            # its own state): skip it, keep what it queued. This is the client's library, not the server.
            pass
        return self.h2_output()

    # Reading
    def receive(self, timeout: float) -> bool:
        """Read once (up to ``timeout``); False when nothing came in time or the server closed."""
        if self.peer_closed:
            return False
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, OSError):
            data = b""
        if not data:
            self.peer_closed = True
            return False
        self.inbound += data
        self._split_frames()
        if not self.client_broken:
            try:
                for ev in self.conn.receive_data(data):
                    if isinstance(ev, h2.events.DataReceived) and ev.flow_controlled_length:
                        # Give the window back, or /big would stall on the default 64 KiB window.
                        self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            except (h2.exceptions.H2Error, ValueError, KeyError):
                self.client_broken = True  # the raw frames took it out of step with the server
            else:
                self.write(self.h2_output())
        return True

    def _split_frames(self) -> None:
        buf = self.inbound
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            stream_id = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            self.server_frames.append((buf[3], buf[4], stream_id, bytes(buf[9 : 9 + length])))
            del buf[: 9 + length]

    def saw(self, frame_type: int, predicate: Callable[[int, int, bytes], Any] | None = None) -> bool:
        return any(t == frame_type and (predicate is None or predicate(f, s, p)) for t, f, s, p in self.server_frames)

    def responses_done(self) -> bool:
        """Every stream the client finished has been finished (END_STREAM) or reset by the server."""
        if self.saw(7):  # GOAWAY: the server will not finish the rest
            return True
        done = {s for t, f, s, _ in self.server_frames if (t in (0, 1) and f & 1) or t == 3}
        return self.ended <= done

    def wait_for(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.peer_closed:
                return bool(condition())
            self.receive(remaining)
        return True

    def close(self) -> None:
        self.sock.close()


def frames_aligned(data: bytes) -> bool:
    """Whether ``data`` is the preface and then whole frames: only then must a PING after it be answered."""
    if not data.startswith(PREFACE):
        return False
    pos = len(PREFACE)
    while pos + 9 <= len(data):
        pos += 9 + int.from_bytes(data[pos : pos + 3], "big")
    return pos == len(data)


def fresh_request(running: RunningServer) -> tuple[int, bytes]:
    """One GET on a new connection: (status, body)."""
    with running.connect(IO_TIMEOUT) as sock:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        conn.initiate_connection()
        head = [(b":method", b"GET"), (b":path", b"/after"), (b":scheme", b"http"), (b":authority", b"x")]
        conn.send_headers(1, head, end_stream=True)
        sock.sendall(conn.data_to_send())
        status, body = 0, b""
        deadline = time.monotonic() + IO_TIMEOUT
        while time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            data = sock.recv(65536)
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    status = int(dict(ev.headers)[b":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    body += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    return status, body
            sock.sendall(conn.data_to_send())
        return status, body


# --------------------------------------------------------------------------------- property
def run_scenario(running: RunningServer, scenario: Scenario) -> None:
    client = FuzzClient(running, scenario)
    try:
        client.conn.initiate_connection()
        preface = client.h2_output()
        if scenario.damage_preface:
            preface = damage(preface, b"pref")
        client.write(preface)
        for step in scenario.steps:
            data = client.perform(step.action)
            if step.mutation_seed is not None:
                data = damage(data, step.mutation_seed)
            client.write(data)
        if client.peer_closed:
            event("server closed while we sent")
            return
        # No hang: after whole frames, a PING is answered, or the connection is closed (GOAWAY).
        if frames_aligned(bytes(client.sent)):
            client.write(hf.PingFrame(0, opaque_data=SENTINEL).serialize())
            answered = client.wait_for(lambda: client.saw(6, lambda f, s, p: f & 1 and p == SENTINEL), IO_TIMEOUT)
            assert answered or client.peer_closed, "the server neither answered a PING nor closed the connection"
            event("ping answered" if answered else "closed before the ping")
        else:
            event("not frame-aligned")
        # Let the responses of complete requests come in (bounded: a stream may be legitimately stuck,
        # e.g. behind a zero window the client announced).
        if client.wait_for(client.responses_done, 0.5):
            event("all responses finished")
        if client.saw(7):
            event("server sent GOAWAY")
        # No hang on close: once the client has closed its side, the server closes the connection.
        if not client.peer_closed:
            try:
                client.sock.shutdown(socket.SHUT_WR)
            except OSError:  # reset by the server in the meantime
                client.peer_closed = True
            closed = client.wait_for(lambda: client.peer_closed, IO_TIMEOUT)
            assert closed, "the server kept the connection open after EOF"
    finally:
        client.close()


def test_h2_frame_sequences_never_crash_the_connection_handler() -> None:
    with run_server(app, http2=True) as running, captured_logs() as server_logs, captured_logs("asyncio") as loop_logs:

        @settings(BASE_SETTINGS, max_examples=EXAMPLES)
        @given(scenarios)
        def property_(scenario: Scenario) -> None:
            seen = len(server_logs), len(loop_logs)
            run_scenario(running, scenario)
            # The server keeps serving, and its answer is also the barrier after which anything the
            # previous connection's tasks logged has been logged.
            answer = fresh_request(running)
            new = server_logs[seen[0] :] + loop_logs[seen[1] :]
            crashes = [m for m in new if any(marker in m for marker in CRASH_MARKERS)]
            assert not crashes, crashes
            assert answer == (200, b"0")

        property_()


# RFC 9113 §4.2: a frame larger than SETTINGS_MAX_FRAME_SIZE (16,384 until the server says otherwise)
# is a FRAME_SIZE_ERROR. The length is in the first three bytes of the frame header, so the error is
# known as soon as those 9 bytes arrive; waiting for the payload means holding up to 16 MiB
# (2**24 - 1) per connection for a frame that is refused anyway.
OVERSIZED_DATA = (0, 16_385)  # (frame type, declared length)
OVERSIZED_UNKNOWN = (0xFA, 2**24 - 1)


def oversized_frame_answer(running: RunningServer, frame_type: int, length: int, timeout: float) -> tuple[bool, bool]:
    """Send the preface, SETTINGS and the header of an oversized frame with a little of its payload:
    (GOAWAY FRAME_SIZE_ERROR seen, connection closed) within ``timeout``."""
    with running.connect(IO_TIMEOUT) as sock:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        header = length.to_bytes(3, "big") + bytes((frame_type, 0)) + (1).to_bytes(4, "big")
        sock.sendall(conn.data_to_send() + header + b"x" * 100)
        inbound = bytearray()
        deadline = time.monotonic() + timeout
        closed = False
        while time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                data = sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                data = b""
            if not data:
                closed = True
                break
            inbound += data
        goaway = False
        pos = 0
        while pos + 9 <= len(inbound):
            size = int.from_bytes(inbound[pos : pos + 3], "big")
            if inbound[pos + 3] == 7 and int.from_bytes(inbound[pos + 13 : pos + 17], "big") == 0x6:
                goaway = True  # GOAWAY, error code FRAME_SIZE_ERROR
            pos += 9 + size
        return goaway, closed


@pytest.mark.parametrize("case", [OVERSIZED_DATA, OVERSIZED_UNKNOWN], ids=["data-16385", "unknown-type-16MiB"])
def test_oversized_frame_is_refused_at_its_header(case: tuple[int, int]) -> None:
    with run_server(app, http2=True) as running:
        goaway, closed = oversized_frame_answer(running, *case, timeout=1.0)
        assert goaway and closed, f"GOAWAY(FRAME_SIZE_ERROR) seen: {goaway}, connection closed: {closed}"


def test_crash_markers_would_be_caught() -> None:
    """Not vacuous: the messages a crash logs contain a marker, the expected warning does not."""
    assert any(m in "Exception in ASGI application\n" for m in CRASH_MARKERS)
    assert any(m in "Fatal error: protocol.data_received() call failed." for m in CRASH_MARKERS)
    assert any(m in "Exception in callback H2Protocol._flush()" for m in CRASH_MARKERS)
    assert not any(m in "Invalid HTTP/2 frame received: Received frame with invalid padding." for m in CRASH_MARKERS)
    assert frames_aligned(PREFACE + hf.PingFrame(0, opaque_data=SENTINEL).serialize())
    assert not frames_aligned(PREFACE + hf.PingFrame(0, opaque_data=SENTINEL).serialize()[:-1])


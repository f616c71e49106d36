"""The events: frozen, slotted, keyword-only dataclasses with a timestamp and a worker id."""

from __future__ import annotations

import dataclasses
import time

import pytest

import pounce.observability as observability
from pounce.observability import events as ev


def test_every_event_is_frozen_slotted_and_has_time_and_worker() -> None:
    assert len(ev.EVENT_TYPES) == 16
    for cls in ev.EVENT_TYPES:
        assert dataclasses.is_dataclass(cls)
        params = cls.__dataclass_params__  # type: ignore[attr-defined]
        assert params.frozen, cls
        assert "__slots__" in cls.__dict__, cls
        names = [field.name for field in dataclasses.fields(cls)]
        assert names[:2] == ["time", "worker_id"], cls
        assert all(field.kw_only for field in dataclasses.fields(cls)), cls
        assert cls.__name__ in observability.__all__, cls


def test_request_scoped_events_carry_connection_and_request_ids() -> None:
    for cls in (ev.RequestStarted, ev.ResponseStarted, ev.ResponseCompleted, ev.ClientDisconnected,
                ev.RequestFailed, ev.WebSocketAccepted, ev.WebSocketRejected, ev.WebSocketClosed):
        assert issubclass(cls, ev.RequestEvent)
        names = {field.name for field in dataclasses.fields(cls)}
        assert {"connection_id", "request_id"} <= names, cls
    assert {"connection_id", "stream_id", "request_id"} <= {f.name for f in dataclasses.fields(ev.StreamReset)}


def test_events_cannot_change_and_have_no_dict() -> None:
    event = ev.ResponseStarted(time=time.monotonic(), worker_id=1, connection_id=2, request_id=3, status=200)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.status = 500  # type: ignore[misc]
    assert not hasattr(event, "__dict__")
    with pytest.raises(TypeError):
        ev.ResponseStarted(1.0, 1, 2, 3, 200)  # type: ignore[misc]  # keyword-only


def test_response_completed_holds_its_request() -> None:
    scope = {"type": "http", "method": "GET", "path": "/"}
    started = ev.RequestStarted(time=1.0, worker_id=1, connection_id=1, request_id=7, method="GET", path="/",
                                http_version="1.1", stream_id=None, scope=scope)
    done = ev.ResponseCompleted(time=1.5, worker_id=1, connection_id=1, request_id=7, status=204, body_bytes=0,
                                queue_seconds=0.1, first_byte_seconds=0.2, total_seconds=0.5, request=started)
    assert done.request.scope is scope
    assert isinstance(done, ev.REQUEST_END_TYPES)


def test_helpers() -> None:
    assert ev.exception_type_name(ValueError("x")) == "ValueError"

    class Custom(Exception):
        pass

    assert ev.exception_type_name(Custom()) == f"{__name__}.test_helpers.<locals>.Custom"
    assert ev.protocol_for_version("1.1") == "http/1.1"
    assert ev.protocol_for_version("1.0") == "http/1.1"
    assert ev.protocol_for_version("2") == "h2"
    assert ev.protocol_for_version("3") == "h3"


def test_fast_constructors_make_the_same_frozen_objects() -> None:
    for cls in ev.EVENT_TYPES:
        fields = dataclasses.fields(cls)
        values = {field.name: f"value-{index}" for index, field in enumerate(fields)}
        fast = ev.fast_constructor(cls)(*values.values())
        assert fast == cls(**values), cls  # type: ignore[arg-type]
        assert type(fast) is cls
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(fast, fields[0].name, 0)
    with pytest.raises(TypeError):
        ev.fast_constructor(ev.ResponseStarted)(1.0, 1)  # every field, positionally

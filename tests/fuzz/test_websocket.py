"""The WebSocket under hostile clients, on the running system: random JSON frames,
wrong types, non-JSON text, binary frames, huge frames and floods. Every frame is
answered by what docs/websocket.md promises (an `error` frame, the frame's own answer,
or nothing for frames that have none) or by one of its documented closes, and the api
keeps serving a fresh socket afterwards."""

import contextlib
import json
import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.fuzz.conftest import Fuzzed

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("PARKMATE_FUZZ_EXAMPLES", "100"))
SERVER_FRAMES = {
    "notification",
    "unread_count",
    "notification_update",
    "slot_update",
    "ping",
    "pong",
    "error",
}
ERROR_CODES = {
    "bad_frame",
    "unknown_type",
    "rate_limited",
    "not_found",
    "unavailable",
    "bad_topic",
    "too_many_topics",
}
CLIENT_TYPES = [
    "ping",
    "pong",
    "resume",
    "ack",
    "mark_read",
    "mark_all_read",
    "get_unread_count",
    "subscribe",
    "unsubscribe",
]
# Frames per socket stay under the default burst (PARKMATE_WS_BURST, 40), so the rate
# limit answers only the flood test.
PER_SOCKET = 30

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)
field_names = st.sampled_from(["after_seq", "seq", "id", "topic", "type"]) | st.text(max_size=10)
# Frames shaped like the client's: a known type with fields of any type and value.
shaped = st.builds(
    lambda kind, fields: json.dumps({**fields, "type": kind}),
    st.sampled_from(CLIENT_TYPES) | st.text(max_size=20) | json_values,
    st.dictionaries(field_names, json_values, max_size=4),
)


def _frame_type(frame: str | bytes) -> object:
    """The `type` of a frame that is a JSON object, else None."""
    try:
        value = json.loads(frame)
    except ValueError:
        return None
    return value.get("type") if isinstance(value, dict) else None


# No `ping` among them: its `pong` marks the end of a batch (frames_until_pong).
frames = st.one_of(
    shaped,
    json_values.map(json.dumps),
    st.text(max_size=200),  # mostly not JSON at all
    st.binary(max_size=200),
    shaped.map(str.encode),  # JSON in a binary frame
    st.integers(1, 60_000).map(lambda n: json.dumps({"type": "ack", "pad": "x" * n})),
).filter(lambda frame: _frame_type(frame) != "ping")


@contextlib.contextmanager
def socket(fuzzed: Fuzzed) -> Iterator[ClientConnection]:
    """A new socket of the driver, past its `hello`, for the block."""
    with connect(
        f"ws://127.0.0.1:{fuzzed.system.port}/ws?token={fuzzed.driver_token}",
        max_size=None,
        open_timeout=15,
    ) as ws:
        hello = json.loads(ws.recv(timeout=15))
        assert hello["type"] == "hello", hello
        yield ws


def frames_until_pong(ws: ClientConnection) -> list[dict]:
    """Send a ping and return every frame received up to its pong (excluded): the
    server handles a socket's frames in order, so all earlier ones were handled."""
    ws.send(json.dumps({"type": "ping"}))
    received = []
    while True:
        frame = json.loads(ws.recv(timeout=15))
        if frame["type"] == "pong":
            return received
        received.append(frame)


def assert_documented(frame: dict) -> None:
    assert frame.get("type") in SERVER_FRAMES, frame
    if frame["type"] == "error":
        assert frame["code"] in ERROR_CODES and frame["detail"], frame


@settings(
    max_examples=EXAMPLES,
    derandomize=True,  # the same frames on every run: a failure reproduces
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(batch=st.lists(frames, min_size=1, max_size=PER_SOCKET))
def test_random_frames_get_documented_answers(fuzzed: Fuzzed, batch: list[str | bytes]):
    with socket(fuzzed) as ws:
        for frame in batch:
            ws.send(frame)
        received = frames_until_pong(ws)
    for frame in received:
        assert_documented(frame)
    # Every frame that is not a JSON object with a string type is answered bad_frame.
    assert len([f for f in received if f["type"] == "error"]) >= sum(
        1 for frame in batch if not isinstance(_frame_type(frame), str)
    ), (batch, received)


def test_a_frame_over_64_kib_closes_1009_and_the_api_serves_on(fuzzed: Fuzzed):
    for frame in ("x" * (65 * 1024), b"\x00" * (1024 * 1024)):
        with socket(fuzzed) as ws:
            ws.send(frame)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=15)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    with socket(fuzzed) as ws:
        assert frames_until_pong(ws) == []


def test_a_flood_gets_rate_limited_then_closed_1008_and_the_api_serves_on(fuzzed: Fuzzed):
    received = []
    with socket(fuzzed) as ws:
        # The server may close while we still send: what it sent before is still read.
        with contextlib.suppress(ConnectionClosed):
            for _ in range(10_000):
                ws.send(json.dumps({"type": "get_unread_count"}))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                received.append(json.loads(ws.recv(timeout=15)))
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008, closed.value
    assert any(f.get("code") == "rate_limited" for f in received), received
    for frame in received:
        assert_documented(frame)
    with socket(fuzzed) as ws:
        assert frames_until_pong(ws) == []

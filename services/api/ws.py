"""The WebSocket endpoint: GET /ws (docs/websocket.md).

Authenticates, greets with `hello` (always the first frame), replays with
?after_seq=N, then answers client frames; live delivery, gap repair and the heartbeat
are the gateway's (gateway.py), each socket's seq bookkeeping is wsconn.py's.

It is served as plain ASGI in front of the Litestar app (`WebSocketFront`), not as a
Litestar route: every live frame would otherwise pass four more coroutine layers, and
each open socket would hold Litestar's connection objects and a deeper call chain;
at 10,000 sockets both show (docs/benchmarks.md).

Per socket: a bounded send queue, written by a task that exists while frames wait (a
slow reader is closed with 1013 without stalling the others), a rate limit on client
frames (error `rate_limited`, then 1008), and a close with 4401 when the token expires.
"""

import asyncio
import contextlib
import time
from typing import Annotated, Any
from urllib.parse import parse_qs

import msgspec
import structlog
from litestar.datastructures import State

from services.api import identity
from services.api.auth import bearer_token
from services.api.gateway import Gateway
from services.api.wsconn import CLOSE_TRY_AGAIN, Connection
from services.api.wslimits import RateLimit, Verdict
from services.contracts import notifier as n
from services.contracts import subjects
from services.contracts.limits import FRAME_TYPE_MAX, TOPIC_MAX, AfterSeq, Id, Seq, explain, text
from services.runtime.metrics import WEBSOCKETS
from services.runtime.micro import RemoteError, call

log = structlog.get_logger()

CLOSE_UNAUTHORIZED = 4401  # missing, bad or expired token
CLOSE_BAD_REQUEST = 4400  # a query parameter that is not valid (the reason says which)
CLOSE_POLICY = 1008  # kept sending faster than the rate limit
CLOSE_TOO_BIG = 1009  # a frame over MAX_FRAME (enforced by the server, see entrypoints)
MAX_FRAME = 64 * 1024
PATH = "/ws"

Scope = dict[str, Any]
Receive = Any  # the ASGI receive callable
Send = Any  # the ASGI send callable


class ClientFrame(msgspec.Struct, kw_only=True):
    """Any client frame; fields used depend on `type`. Every field is bounded
    (contracts/limits.py); a frame that breaks a bound gets a `bad_frame` error."""

    type: Annotated[str, text(FRAME_TYPE_MAX)]
    after_seq: AfterSeq | None = None
    id: Id | None = None
    seq: Seq | None = None
    topic: Annotated[str, text(TOPIC_MAX)] | None = None


_client_decoder = msgspec.json.Decoder(ClientFrame)


def _error(code: str, detail: str) -> dict[str, str]:
    return {"type": "error", "code": code, "detail": detail}


async def _replay(conn: Connection, gateway: Gateway, after_seq: int) -> None:
    """`resume`: every notification after `after_seq` this connection has not sent."""
    async with conn.sync:
        conn.busy = True
        try:
            conn.replayed(await gateway.fetch(conn.user_id, after_seq), after_seq)
        finally:
            gap_left = conn.finish_fetch()
    if gap_left:
        gateway.watch_gap(conn)


async def _call_and_report(conn: Connection, coro) -> Any:
    """Await a notifier request; its error goes back as an error frame (None returned)."""
    try:
        return await coro
    except RemoteError as e:
        if e.code == "unavailable":
            conn.send(
                _error("unavailable", "The inbox is unavailable; retry or resume in a moment.")
            )
        else:
            conn.send(_error(e.code, e.detail))
        return None


async def _handle_frame(conn: Connection, gateway: Gateway, raw: str | bytes) -> None:
    nc = gateway.nc
    try:
        frame = _client_decoder.decode(raw)
    except msgspec.ValidationError as e:
        conn.send(_error("bad_frame", explain(str(e))[1]))
        return
    except msgspec.DecodeError as e:
        conn.send(_error("bad_frame", f"Frames are JSON objects with a string `type`: {e}"))
        return
    kind = frame.type
    if kind == "ping":
        conn.send({"type": "pong"})
    elif kind == "pong":
        pass  # liveness is recorded for every frame
    elif kind == "resume":
        if frame.after_seq is None or frame.after_seq < 0:
            conn.send(
                _error("bad_frame", "resume needs after_seq, an integer >= 0 (0 for everything).")
            )
            return
        await _call_and_report(conn, _replay(conn, gateway, frame.after_seq))
    elif kind == "get_unread_count":
        summary = await _call_and_report(
            conn,
            call(
                nc,
                subjects.NOTIFIER_INBOX_SUMMARY,
                n.InboxSummaryRequest(user_id=conn.user_id),
                n.InboxSummary,
            ),
        )
        if summary is not None:
            conn.count(summary.unread_count, summary.version, always=True)
    elif kind == "mark_read":
        if not frame.id:
            conn.send(_error("bad_frame", "mark_read needs id, the notification's id."))
            return
        await _call_and_report(
            conn,
            call(
                nc,
                subjects.NOTIFIER_INBOX_READ,
                n.NotificationRef(user_id=conn.user_id, id=frame.id),
                n.Notification,
            ),
        )
    elif kind == "mark_all_read":
        await _call_and_report(
            conn,
            call(nc, subjects.NOTIFIER_INBOX_READ_ALL, n.UserRef(user_id=conn.user_id), n.Changed),
        )
    elif kind == "ack":
        if frame.seq is None or frame.seq < 1:
            conn.send(_error("bad_frame", "ack needs seq, the notification's seq (>= 1)."))
            return
        gateway.ack(conn, frame.seq)
    elif kind in ("subscribe", "unsubscribe") and conn.lot_topics is not None:
        await conn.lot_topics.handle(conn, kind, frame.topic)
    else:
        conn.send(
            _error(
                "unknown_type",
                f"Unknown frame type {kind!r}; docs/websocket.md lists the client frames.",
            )
        )


async def _receive(conn: Connection, gateway: Gateway, receive: Receive, limit: RateLimit) -> None:
    last_warning = -1.0
    while not conn.closed:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            conn.close(1000)
            return
        raw = message.get("text")
        if raw is None:
            raw = message.get("bytes") or b""
        conn.alive = True
        now = time.monotonic()
        verdict = limit.check(now)
        if verdict is Verdict.CLOSE:
            conn.close(CLOSE_POLICY)
            return
        if verdict is Verdict.DROP:
            if now - last_warning >= 1.0:
                last_warning = now
                conn.send(
                    _error(
                        "rate_limited",
                        f"More than {limit.rate:g} frames per second: frames are being "
                        "dropped; slow down or the socket is closed (1008).",
                    )
                )
            continue
        await _handle_frame(conn, gateway, raw)


def after_seq_param(value: str | None) -> int | None:
    """?after_seq=N: None when absent, N when it is an integer 0 <= N < 2**63.

    Raises ValueError (its text says what to send) for anything else: silently ignoring
    a bad value would let a client believe it resumed.
    """
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or int(value) >= 2**63:
        raise ValueError("after_seq must be an integer >= 0 (the highest seq you have seen)")
    return int(value)


async def _greet(conn: Connection, gateway: Gateway, after_seq: int | None, ping: float) -> None:
    """`hello` (then, with ?after_seq=N, every notification after N) before any live
    frame; closes with 1013 when the inbox does not answer. The first ping is due
    `ping` seconds later."""
    async with conn.sync:
        try:
            conn.greet(await gateway.summary(conn.user_id))
            conn.next_ping = asyncio.get_running_loop().time() + ping
            if after_seq is not None:
                conn.replayed(await gateway.fetch(conn.user_id, after_seq), after_seq)
        except RemoteError:
            conn.close(CLOSE_TRY_AGAIN)
            return
        gap_left = conn.finish_fetch()
    if gap_left:
        gateway.watch_gap(conn)


class WebSocketFront:
    """ASGI app: GET /ws to `serve_socket`, everything else (HTTP, lifespan) to `app`.

    `state` holds `settings`, `gateway`, `lot_topics` and `draining` (the Litestar app's
    state). While `state.draining`, every HTTP answer says `Connection: close`, so
    clients and proxies holding a keep-alive connection to this process open their next
    one elsewhere. `sockets` counts the sockets being served."""

    def __init__(self, app: Any, state: State) -> None:
        self.app = app
        self.state = state
        self.sockets = 0
        self._none_left = asyncio.Event()
        self._none_left.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == PATH:
            self.sockets += 1
            self._none_left.clear()
            try:
                await serve_socket(scope, receive, send, self.state)
            finally:
                self.sockets -= 1
                if not self.sockets:
                    self._none_left.set()
        elif scope["type"] == "http" and self.state.draining:
            await self.app(scope, receive, _closing_connection(send))
        else:
            await self.app(scope, receive, send)

    async def close_sockets(self, code: int, timeout: float) -> int:
        """Close every socket with `code` (and any opened meanwhile) and wait up to
        `timeout` seconds until each has sent its close frame; returns how many were
        still open then (uvicorn's shutdown closes those with 1012)."""
        self.state.gateway.close_sockets(code)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._none_left.wait(), timeout)
        return self.sockets


def _closing_connection(send: Send) -> Send:
    """`send` with `Connection: close` added to the response's headers."""

    async def closing(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"connection"]
            message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await send(message)

    return closing


def _query(scope: Scope) -> dict[str, list[str]]:
    return parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


async def _refuse(send: Send, code: int, reason: str) -> None:
    await send({"type": "websocket.close", "code": code, "reason": reason[:120]})


async def serve_socket(scope: Scope, receive: Receive, send: Send, state: State) -> None:
    """One socket, start to end: authenticate, greet with `hello` (then, with
    ?after_seq=N, replay every notification after N), then relay live ones and answer
    frames until either side closes."""
    if (await receive())["type"] != "websocket.connect":
        return
    settings = state.settings
    await send({"type": "websocket.accept"})
    query = _query(scope)
    token = (query.get("token") or [None])[0] or bearer_token(_header(scope, b"authorization"))
    try:
        if not token:
            raise identity.BadToken("missing token: connect with ?token=<access_token>")
        claims = identity.verify_token(settings.keys, token)
    except identity.BadToken as e:
        await _refuse(send, CLOSE_UNAUTHORIZED, str(e))
        return
    try:
        after_seq = after_seq_param((query.get("after_seq") or [None])[0])
    except ValueError as e:
        await _refuse(send, CLOSE_BAD_REQUEST, str(e))
        return
    structlog.contextvars.bind_contextvars(user_id=claims.user_id)
    gateway: Gateway = state.gateway
    conn = Connection(claims.user_id, settings.ws_send_queue, send, state.lot_topics, claims.roles)
    gateway.attach(conn)  # live ones wait in the connection until `hello` is sent
    WEBSOCKETS.inc()
    expiry = asyncio.get_running_loop().call_later(
        max(0.0, claims.exp - time.time()), conn.close, CLOSE_UNAUTHORIZED
    )
    try:
        if not conn.closed:  # else attached while the api drains: closed at once
            await _greet(conn, gateway, after_seq, settings.ws_ping_seconds)
        # Client frames are read only after `hello`, so no answer can precede it. They
        # are read in this task (no task of its own: memory per socket counts at 10,000
        # sockets); a close decided elsewhere cancels the read (Connection.close).
        conn.reader = asyncio.current_task()
        try:
            limit = RateLimit(settings.ws_rate, settings.ws_burst)
            await _receive(conn, gateway, receive, limit)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not conn.closed or task is None or task.cancelling() > 1:
                raise
            task.uncancel()
    finally:
        conn.reader = None
        expiry.cancel()
        conn.close(conn.close_code)
        gateway.detach(conn)
        await state.lot_topics.detach(conn)
        WEBSOCKETS.dec()
        await conn.flushed(2.0)
        with contextlib.suppress(Exception):  # the peer may be gone already
            await send({"type": "websocket.close", "code": conn.close_code})

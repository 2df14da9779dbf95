"""Load for the fault tests: drivers who book, renew and let bookings expire through any
of several api replicas, each with a WebSocket that resumes with `after_seq` whenever
it is closed, recording when each notification arrived.

`Replicas` stands in for a load balancer in front of the api processes: it routes each
request or socket to a replica whose /readyz last answered 200 (polled every
`POLL_SECONDS`), as a Kubernetes Service does with its ready endpoints, and tries
another on a connection error. POSTs carry an Idempotency-Key, so a request retried
after an error that left its fate unknown books nothing twice. Times are wall-clock
`time.time()` seconds (the services' timestamps are wall-clock too, on the same host).
"""

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import websockets

POLL_SECONDS = 0.1
RETRY_SECONDS = 0.1
RETRIES = 100  # a request gives up after this many tries (about 10 s)


def timestamp(iso: str) -> float:
    """`time.time()` seconds of an ISO 8601 time the api answered."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class Replicas:
    """The api processes (their HTTP ports) and which of them are ready; `retries`
    counts requests tried again (on another replica or after a 503)."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = list(ports)
        self.ready: dict[int, bool] = {}
        self.clients: dict[int, httpx.AsyncClient] = {}
        self.retries = 0
        self._poller: asyncio.Task | None = None

    def add(self, port: int) -> None:
        self.ports.append(port)

    async def start(self) -> None:
        await self._poll_once()
        self._poller = asyncio.create_task(self._poll())

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        for client in self.clients.values():
            await client.aclose()

    async def _poll_once(self) -> None:
        async with httpx.AsyncClient(timeout=1.0) as http:
            for port in list(self.ports):
                try:
                    r = await http.get(f"http://127.0.0.1:{port}/readyz")
                    self.ready[port] = r.status_code == 200
                except httpx.HTTPError:
                    self.ready[port] = False

    async def _poll(self) -> None:
        while True:
            await self._poll_once()
            await asyncio.sleep(POLL_SECONDS)  # a probe's period, not a wait for a condition

    def pick(self, avoid: int | None = None) -> int | None:
        """A ready replica's port (not `avoid` if another is ready), or None."""
        ready = [p for p in self.ports if self.ready.get(p)]
        others = [p for p in ready if p != avoid]
        return (others or ready or [None])[0]

    def client(self, port: int) -> httpx.AsyncClient:
        if port not in self.clients:
            self.clients[port] = httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}/api/v1", timeout=15
            )
        return self.clients[port]

    async def request(self, method: str, path: str, token: str | None, **kw) -> httpx.Response:
        """The answer of a ready replica. Tries again (another replica when there is one)
        on a connection error, a 503, or a 409 about the Idempotency-Key (the first try
        is still running or just failed); raises AssertionError after RETRIES tries."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if method == "POST":
            headers["Idempotency-Key"] = uuid.uuid4().hex
        last: object = None
        avoid = None
        for attempt in range(RETRIES):
            if attempt:
                self.retries += 1
                await asyncio.sleep(RETRY_SECONDS)
            port = self.pick(avoid)
            if port is None:
                last = "no ready replica"
                continue
            try:
                r = await self.client(port).request(method, path, headers=headers, **kw)
            except httpx.TransportError as e:
                last, avoid = e, port
                continue
            retry = r.status_code == 503 or (
                r.status_code == 409 and "Idempotency-Key" in r.json().get("detail", "")
            )
            if not retry:
                return r
            last = r.text
        raise AssertionError(f"{method} {path} failed {RETRIES} times: {last!r}")


@dataclass
class Received:
    """A notification frame as a client saw it: the notification, and when it came."""

    notification: dict
    at: float


@dataclass
class Watcher:
    """One user's socket, kept open across api restarts: on any close it reconnects to a
    ready replica with `after_seq`, the highest seq it has seen."""

    replicas: Replicas
    token: str
    received: list[Received] = field(default_factory=list)
    closes: list[int | None] = field(default_factory=list)
    stopping: bool = False
    last_seq: int = 0
    _task: asyncio.Task | None = None
    _ws: Any = None
    _connected: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._connected.wait(), 30)

    async def stop(self) -> None:
        self.stopping = True
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        avoid = None
        while not self.stopping:
            port = self.replicas.pick(avoid)
            if port is None:
                await asyncio.sleep(RETRY_SECONDS)
                continue
            url = f"ws://127.0.0.1:{port}/ws?token={self.token}&after_seq={self.last_seq}"
            try:
                async with websockets.connect(url, open_timeout=5) as ws:
                    self._ws = ws
                    hello = json.loads(await ws.recv())
                    assert hello["type"] == "hello", hello
                    self._connected.set()
                    avoid = None
                    async for raw in ws:
                        frame = json.loads(raw)
                        self._frame(frame)
                        if frame["type"] == "ping":  # the heartbeat wants an answer
                            await ws.send('{"type":"pong"}')
            except websockets.ConnectionClosed as e:
                if not self.stopping:
                    self.closes.append(e.rcvd.code if e.rcvd else None)
                    avoid = port
            except (OSError, TimeoutError):
                avoid = port  # that replica stopped listening: the next one is tried
            else:
                if not self.stopping:
                    self.closes.append(ws.close_code)
                    avoid = port

    def _frame(self, frame: dict) -> None:
        if frame["type"] != "notification":
            return
        n = frame["notification"]
        self.received.append(Received(n, time.time()))
        self.last_seq = max(self.last_seq, n["seq"])

    def of(self, type_: str, booking_id: str) -> list[Received]:
        return [
            r
            for r in self.received
            if r.notification["type"] == type_
            and r.notification["data"].get("booking_id") == booking_id
        ]


@dataclass
class Booking:
    """A booking as its driver knows it: id, the ends of its periods in order (the last
    is its end), and the wall-clock time each answer came."""

    id: str
    ends: list[float]
    renewed: bool = False


@dataclass
class Driver:
    """A driver with their own slot: books it, renews every other booking once early in
    its period, waits for the expiry on the socket, and books again."""

    replicas: Replicas
    token: str
    slot_id: str
    watcher: Watcher
    bookings: list[Booking] = field(default_factory=list)

    async def run(self, done: asyncio.Event, renew_after: float, expiry_timeout: float) -> None:
        """Book, renew every other booking `renew_after` s into it, wait for its expiry
        on the socket (AssertionError after `expiry_timeout` s), until `done` is set."""
        n = 0
        while not done.is_set():
            r = await self.replicas.request(
                "POST", "/bookings", self.token, json={"slot_id": self.slot_id}
            )
            assert r.status_code == 201, r.text
            b = r.json()
            booking = Booking(b["id"], [timestamp(b["end_time"])])
            self.bookings.append(booking)
            if n % 2 == 0:
                await asyncio.sleep(renew_after)  # on purpose: renew early in the period
                r = await self.replicas.request("POST", f"/bookings/{b['id']}/renew", self.token)
                assert r.status_code == 200, r.text
                booking.ends.append(timestamp(r.json()["end_time"]))
                booking.renewed = True
            n += 1
            deadline = time.monotonic() + expiry_timeout
            while not self.watcher.of("booking.expired", booking.id):
                assert time.monotonic() < deadline, f"no expiry of {booking.id} on the socket"
                await asyncio.sleep(0.05)

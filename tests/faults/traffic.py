"""Traffic for the fault tests, and the checks that nothing was lost, doubled or early.

`Traffic` makes an owner's lot with short bookings and drivers who keep booking its
slots and sometimes renew, each with a socket that resumes with `after_seq` whenever
it closes, as a client should. Requests that fail while something is down are retried
with the same Idempotency-Key. Everything it saw is kept for the checks in `verify`,
which read the truth from PostgreSQL and the EVENTS stream, not from what the clients
were told.
"""

import asyncio
import contextlib
import itertools
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import msgspec
import nats
import sqlalchemy as sa
import websockets
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.contracts.envelope import RawCloudEvent
from services.notifier.domain import facts_of, plan
from services.runtime.db import make_engine
from tests.faults.harness import OUTBOXES, Harness
from tests.support import eventually

PASSWORD = "secret-pw"
ADMIN_EMAIL = "admin@example.com"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class ResumingSocket:
    """A user's socket that reconnects with `after_seq` = the last seq it got whenever it
    closes (api killed, 1001 on a drain, 1013), and records every notification seq in
    the order received. It answers the server's pings."""

    def __init__(self, h: Harness, token: str):
        self.h = h
        self.token = token
        self.seqs: list[int] = []
        self.connects = 0
        self.closes: list[int | None] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._connected = asyncio.Event()

    async def start(self) -> "ResumingSocket":
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._connected.wait(), 30)
        return self

    async def _run(self) -> None:
        while not self._stop.is_set():
            # From the start (after_seq=0) the first time, then from the last seq seen.
            url = self.h.ws_url(self.token, self.seqs[-1] if self.seqs else 0)
            try:
                async with websockets.connect(url, max_size=None, open_timeout=5) as ws:
                    self.connects += 1
                    self._connected.set()
                    await self._read(ws)
            except websockets.ConnectionClosed as e:
                self.closes.append(e.rcvd.code if e.rcvd else None)
            except (OSError, TimeoutError, websockets.InvalidHandshake):
                pass  # the api is away: try again
            if not self._stop.is_set():
                await asyncio.sleep(0.2)  # on purpose: a client's pause before reconnecting

    async def _read(self, ws) -> None:
        reader = asyncio.create_task(self._frames(ws))
        stopper = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait([reader, stopper], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if reader in done:
            reader.result()  # raises ConnectionClosed
        else:
            reader.cancel()
            await ws.close()

    async def _frames(self, ws) -> None:
        async for raw in ws:
            frame = json.loads(raw)
            if frame["type"] == "notification":
                self.seqs.append(frame["notification"]["seq"])
            elif frame["type"] == "ping":
                await ws.send('{"type":"pong"}')

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


@dataclass
class Attempt:
    """One create: when it was first sent and when it was answered (monotonic s)."""

    sent: float
    answered: float
    status: int


@dataclass
class Traffic:
    """An owner, a lot with `slots` slots of `booking_seconds` (warning
    `warning_seconds` before the end), and `drivers` drivers booking and renewing."""

    h: Harness
    drivers: int = 6
    slots: int = 10
    booking_seconds: int = 4
    warning_seconds: int = 2
    renew_share: float = 0.3
    seed: int = 1
    tokens: dict[str, str] = field(default_factory=dict)  # user id -> token
    sockets: dict[str, ResumingSocket] = field(default_factory=dict)
    creates: list[Attempt] = field(default_factory=list)
    renewals: int = 0
    answers: Counter = field(default_factory=Counter)  # status, or the error, -> count
    lot_id: str = ""
    slot_ids: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task] = field(default_factory=list)

    async def setup(self) -> None:
        """The admin (CLI), the owner (by the admin), the lot, the drivers, every
        user's socket; waits until the notifier knows them all."""
        await asyncio.to_thread(self.h.create_admin, ADMIN_EMAIL, PASSWORD)
        async with self.h.http() as http:
            admin = await login(http, ADMIN_EMAIL)
            body = {"email": "owner@example.com", "password": PASSWORD, "full_name": "Owner"}
            body["roles"] = ["owner"]
            r = await http.post("/admin/users", json=body, headers=auth(admin))
            assert r.status_code == 201, r.text
            owner_id, owner = r.json()["id"], await login(http, "owner@example.com")
            self.tokens[owner_id] = owner
            r = await http.post(
                "/lots",
                headers=auth(owner),
                json={
                    "name": "Faults",
                    "address": "1 Main St",
                    "slot_count": self.slots,
                    "booking_seconds": self.booking_seconds,
                    "warning_seconds": self.warning_seconds,
                    "price_per_hour": {"amount": "1.00", "currency": "EUR"},
                },
            )
            assert r.status_code == 201, r.text
            self.lot_id = r.json()["id"]
            self.slot_ids = [s["id"] for s in r.json()["slots"]]
            for i in range(self.drivers):
                email = f"driver{i}@example.com"
                body = {"email": email, "password": PASSWORD, "full_name": f"Driver {i}"}
                r = await http.post("/auth/register", json=body)
                assert r.status_code == 201, r.text
                self.tokens[r.json()["id"]] = await login(http, email)
        # The notifier must know every user before their first event (announcements aside,
        # a booking's notifications do not need it, but the inbox check counts them).
        await self.h.drained(timeout=30)
        for user_id, token in self.tokens.items():
            self.sockets[user_id] = await ResumingSocket(self.h, token).start()

    def start(self) -> None:
        """Start the drivers (until `stop`)."""
        self._stop.clear()
        drivers = [u for u in self.tokens if u != self.owner_id]
        self._tasks = [
            asyncio.create_task(self._drive(token, random.Random(self.seed * 100 + i)))
            for i, token in enumerate(self.tokens[u] for u in drivers)
        ]

    @property
    def owner_id(self) -> str:
        return next(iter(self.tokens))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        self._tasks = []

    async def _drive(self, token: str, rnd: random.Random) -> None:
        async with httpx.AsyncClient(base_url=self.h.base + "/api/v1", timeout=5) as http:
            while not self._stop.is_set():
                slot = rnd.choice(self.slot_ids)
                sent = time.monotonic()
                r = await self._post(http, token, "/bookings", {"slot_id": slot})
                if r is not None:
                    self.creates.append(Attempt(sent, time.monotonic(), r.status_code))
                if r is not None and r.status_code == 201 and rnd.random() < self.renew_share:
                    booking = r.json()
                    await self._pause(rnd.uniform(0, self.booking_seconds))
                    renewed = await self._post(http, token, f"/bookings/{booking['id']}/renew", {})
                    if renewed is not None and renewed.status_code == 200:
                        self.renewals += 1
                await self._pause(rnd.uniform(0.1, 0.5))

    async def _pause(self, seconds: float) -> None:
        # On purpose: a driver's think time (ends early when the traffic stops).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _post(
        self, http: httpx.AsyncClient, token: str, path: str, body: dict
    ) -> httpx.Response | None:
        """POST with an Idempotency-Key, retried while the answer is 5xx or nothing;
        None when the traffic stopped first."""
        key = str(uuid.uuid4())
        while not self._stop.is_set():
            try:
                r = await http.post(path, json=body, headers=auth(token) | {"Idempotency-Key": key})
            except httpx.HTTPError as e:
                self.answers[type(e).__name__] += 1
            else:
                self.answers[r.status_code] += 1
                if r.status_code < 500:
                    return r
            await self._pause(0.2)
        return None

    def first_booking_after(self, t: float) -> float | None:
        """When the first create sent at or after `t` was answered 201 (monotonic s)."""
        ok = [a.answered for a in self.creates if a.sent >= t and a.status == 201]
        return min(ok) if ok else None

    async def stop_sockets(self) -> None:
        for sock in self.sockets.values():
            await sock.stop()


async def login(http: httpx.AsyncClient, email: str) -> str:
    r = await http.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


# ----- the truth, and the checks -----

STREAM_SEQ: dict[str, int] = {}


async def stream_events(nats_url: str, subject: str = ">") -> list[RawCloudEvent]:
    """Every event on EVENTS matching `subject`, in stream order (an ephemeral consumer);
    `STREAM_SEQ` maps each one's id to its stream sequence."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(
            subject,
            stream="EVENTS",
            config=ConsumerConfig(
                ack_policy=AckPolicy.NONE,
                deliver_policy=DeliverPolicy.ALL,
                inactive_threshold=30,
            ),
        )
        out: list[RawCloudEvent] = []
        while True:
            try:
                # Generous: a first delivery can take seconds on a loaded machine, and
                # a timeout here is read as the end of the stream.
                msgs = await sub.fetch(500, timeout=10)
            except (nats.errors.TimeoutError, TimeoutError):
                return out
            for m in msgs:
                out.append(msgspec.json.decode(m.data, type=RawCloudEvent))
                STREAM_SEQ[out[-1].id] = m.metadata.sequence.stream
            if msgs[-1].metadata.num_pending == 0:
                return out
    finally:
        await nc.close()


async def fired_timers(nats_url: str, booking_id: str) -> list[str]:
    """The fired timers of one booking still on TIMERS, for a failure message: when the
    server fired each (its stored time), its version, and what it says was due."""
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.jetstream().pull_subscribe(
            f"timers.fired.booking.*.{booking_id}",
            stream="TIMERS",
            config=ConsumerConfig(
                ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=30
            ),
        )
        try:
            msgs = await sub.fetch(20, timeout=5)
        except (nats.errors.TimeoutError, TimeoutError):
            return []
        return [
            f"  TIMERS #{m.metadata.sequence.stream} fired at {m.metadata.timestamp} "
            f"{m.data.decode()}"
            for m in msgs
        ]
    finally:
        await nc.close()


async def dead_letters(h: Harness) -> list[str]:
    """Every dead letter: outbox rows given up on, and messages on stream DEAD (each
    with its headers saying where it came from and why)."""
    found: list[str] = []
    engine = make_engine(h.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            for table in OUTBOXES:
                rows = await conn.execute(
                    sa.text(
                        f"SELECT event_id::text, subject, last_error FROM {table} "
                        "WHERE dead_at IS NOT NULL"
                    )
                )
                found += [f"{table}: {tuple(r)}" for r in rows]
    finally:
        await engine.dispose()
    nc = await nats.connect(h.nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("DEAD")
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            with contextlib.suppress(Exception):
                msg = await js.get_msg("DEAD", seq)
                found.append(f"DEAD:{seq} {msg.subject} {msg.headers}")
    finally:
        await nc.close()
    return found


@dataclass
class Verdict:
    """What `verify` found: counts, and per expiry the booking's end and how late it
    was in seconds (event time minus the end)."""

    bookings: int
    expired: int
    renewed: int
    notifications: int
    lateness: list[tuple[datetime, float, str]]  # (end, seconds late, booking id)
    events: list[RawCloudEvent] = field(default_factory=list)

    def worst_lateness(self, since: datetime | None = None) -> float:
        """The latest expiry of a booking that ended at or after `since` (default: all)."""
        return max((s for end, s, _ in self.lateness if since is None or end >= since), default=0.0)

    def latest(self, since: datetime | None = None) -> str:
        """The booking of `worst_lateness(since)`, or "" when none ended since."""
        late = [(s, b) for end, s, b in self.lateness if since is None or end >= since]
        return max(late)[1] if late else ""

    def story(self, booking_id: str, log_dir: Path | None = None) -> str:
        """What happened to one booking, for a failure message: its events on EVENTS
        (stream seq, type, time, version, end) and every service log line naming it."""
        lines = [f"booking {booking_id}:"]
        for e in self.events:
            if e.subject == booking_id:
                data = msgspec.json.decode(e.data)
                lines.append(
                    f"  #{STREAM_SEQ.get(e.id)} {e.type} at {e.time.isoformat()} "
                    f"v{data.get('version')} end {data.get('end_time')}"
                )
        for log in sorted(log_dir.glob("*.log")) if log_dir is not None else []:
            named = [x for x in log.read_text().splitlines() if booking_id in x]
            lines += [f"  {log.stem}: {x[:400]}" for x in named]
        return "\n".join(lines)


async def all_ended(h: Harness, timeout: float) -> None:
    """Wait until no booking is active any more (every one reached its end and was
    expired): the traffic must have stopped."""
    engine = make_engine(h.database_url, pool_size=1)

    async def none_active() -> bool:
        async with engine.connect() as conn:
            q = "SELECT count(*) FROM bookings.bookings WHERE status = 'active'"
            return (await conn.execute(sa.text(q))).scalar_one() == 0

    try:
        await eventually(none_active, timeout=timeout, interval=0.2)
    finally:
        await engine.dispose()


async def verify(h: Harness, traffic: Traffic) -> Verdict:
    """Every check of issue 14 point 5, after the traffic stopped and every booking
    ended. Raises AssertionError naming the first broken promise."""
    await h.drained(timeout=60)
    dead = await dead_letters(h)
    assert not dead, ("dead letters", dead)
    events = await stream_events(h.nats_url)
    engine = make_engine(h.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            bookings = (
                await conn.execute(
                    sa.text(
                        "SELECT id::text, slot_id::text, status, start_time, end_time, version "
                        "FROM bookings.bookings ORDER BY slot_id, start_time"
                    )
                )
            ).all()
            inbox = (
                await conn.execute(
                    sa.text(
                        "SELECT user_id::text, seq, event_id::text FROM notifier.notifications "
                        "ORDER BY user_id, seq"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    assert bookings, "no booking was made"

    # No slot held by two bookings: on each slot, a booking starts after the last ended.
    for prev, cur in itertools.pairwise(bookings):
        if prev.slot_id == cur.slot_id:
            assert cur.start_time >= prev.end_time, ("slot held twice", prev, cur)

    # Every booking reached its end and expired exactly once, never early, at the end
    # of its last period, and never without the warning of that period.
    warned = {
        (e.subject, msgspec.json.decode(e.data)["version"])
        for e in events
        if e.type == "booking.expiring"
    }
    expired = Counter()
    lateness: list[tuple[datetime, float, str]] = []
    by_id = {b.id: b for b in bookings}
    for e in events:
        if e.type != "booking.expired":
            continue
        data = msgspec.json.decode(e.data)
        b = by_id[data["booking_id"]]
        expired[b.id] += 1
        end = datetime.fromisoformat(data["end_time"])
        assert end == b.end_time and data["version"] == b.version, ("stale expiry", data, b)
        assert e.time >= end, ("expired early", e.time, end, b)
        assert (b.id, b.version) in warned, ("expired without its warning", b)
        lateness.append((end, (e.time - end).total_seconds(), b.id))
    for b in bookings:
        assert b.status == "expired", ("not expired", b)
        assert expired[b.id] == 1, ("expired events", expired[b.id], b)
    assert all(b.end_time <= datetime.now(UTC) for b in bookings)

    # Every notification is in its inbox once: one per event and recipient the
    # notifier's rules name, and each inbox's seqs are 1..n.
    expected = Counter()
    for e in events:
        if e.type.startswith("booking."):
            for planned in plan(e.type, facts_of(e.type, e.data)):
                expected[(e.id, planned.user_id)] += 1
    stored = Counter((r.event_id, r.user_id) for r in inbox if r.event_id is not None)
    missing = expected - stored
    doubled = {k: n for k, n in stored.items() if n > 1}
    types = {e.id: (e.type, e.subject, e.time, STREAM_SEQ.get(e.id)) for e in events}
    assert not missing, ("notifications missing", [(k, types[k[0]]) for k in list(missing)[:5]])
    assert not doubled, ("notifications doubled", list(doubled)[:5])
    seqs: dict[str, list[int]] = {}
    for r in inbox:
        seqs.setdefault(r.user_id, []).append(r.seq)
    for user_id, got in seqs.items():
        assert got == list(range(1, len(got) + 1)), ("inbox seqs", user_id, got)

    # Every socket that resumed got each notification once, in order.
    for user_id, sock in traffic.sockets.items():
        want = seqs.get(user_id, [])
        await eventually(lambda s=sock, w=want: s.seqs[-1:] == w[-1:], timeout=30)
        assert sock.seqs == want, ("socket seqs", user_id, sock.seqs, want)

    return Verdict(
        bookings=len(bookings),
        expired=sum(expired.values()),
        renewed=sum(1 for e in events if e.type == "booking.renewed"),
        notifications=len(inbox),
        lateness=lateness,
        events=[e for e in events if e.type.startswith("booking.")],
    )

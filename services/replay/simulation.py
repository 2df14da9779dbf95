"""Drivers and lot owners of a replayed day, on Parkmate's public HTTP API and WebSocket.

Nothing here touches a service's tables or NATS: lot owners create (or reuse) their
lots, an admin creates the day's drivers and their vehicles with the bulk endpoints,
and each car books, renews, cancels or lets its booking expire through the API, at
the wall-clock times the plan's day times map to (`speed` day seconds per second).

Every car is one asyncio task. A car renews at its booking's warning when it stays past
the booking's end; a car that leaves cancels at its departure, or lets the booking
expire when the plan has it leave at the end. Drivers on a socket (the sample) react to
the warning frame itself: they renew, or cancel after the warning time, only once the
frame arrived (or a patience deadline passed), so a warning can never be overtaken by
their own renewal. Other drivers act by their own clock at the warning time plus a
reaction delay. End times always come from the server's answers.

Times: `time.time()` epoch seconds on this machine (the server's clock on the same
machine), day seconds in the plan.
"""

import asyncio
import contextlib
import json
import math
import random
import string
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import aiohttp
import msgspec
import websockets

from services.replay.plan import Car, Plan

WARNING = "booking.expiring"
EXPIRED = "booking.expired"
BULK = 2000
RETRIES = 10
OVERLOAD = (429, 503)  # "too much now, retry later" answers, counted per kind of request
MAX_RETRY_AFTER = 60.0  # seconds: never wait longer than this on a Retry-After
HTTP_TIMEOUT = 60.0  # seconds for one HTTP request, connecting included


class ReplayError(RuntimeError):
    """The replay cannot go on (no admin, the API refused the set-up); says why."""


@dataclass(slots=True)
class Answer:
    """One HTTP answer, read whole: its status, headers (names case-insensitive), body
    bytes, and whether the request that got it was a retry (`Simulation.call`)."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes
    retried: bool = False

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self):
        """The body as JSON; raises ValueError (msgspec.DecodeError) when it is not."""
        return msgspec.json.decode(self.content)

    def raise_for_status(self) -> None:
        """Raises ReplayError unless the status is 2xx."""
        if not 200 <= self.status_code < 300:
            raise ReplayError(f"the API answered {self.status_code}: {self.text[:200]}")


async def request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    token: str | None = None,
    body: dict | None = None,
    params: dict | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One request to the API at `url`: `token` as a bearer token, `body` sent as JSON,
    `params` as the query string; the answer read whole. Raises aiohttp.ClientError,
    OSError or TimeoutError when the request got no answer (the caller decides whether
    to retry). Shared with benchmarks/bookings.py."""
    headers = dict(headers or {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = msgspec.json.encode(body)
        headers["Content-Type"] = "application/json"
    async with session.request(method, url, data=data, params=params, headers=headers) as r:
        return Answer(r.status, r.headers, await r.read())


@dataclass(frozen=True)
class Options:
    """How to replay: API address, speed (day seconds per wall second), sampled sockets,
    the seed, the admin who creates drivers, the owners' password, HTTP concurrency."""

    url: str = "http://127.0.0.1:8000"
    speed: float = 120.0
    sockets: int = 1000
    seed: int = 1
    admin_email: str = "admin@example.com"
    admin_password: str = "parkmate"
    owner_password: str = "parkmate-replay"
    concurrency: int = 100
    drain_seconds: float = 60.0
    settle_seconds: float | None = None  # default: the plan's quiet margin


def epoch(iso: str) -> float:
    """RFC 3339 time as the API writes it -> epoch seconds."""
    return datetime.fromisoformat(iso).timestamp()


def ms(t: float) -> int:
    """Epoch seconds -> whole milliseconds (how end times are compared)."""
    return round(t * 1000)


def slug(code: str) -> str:
    """A car-park code as an email-safe word ("Broad Street" -> "broad-street")."""
    return "".join(ch if ch.isalnum() else "-" for ch in code.lower()).strip("-")


def plate_of(seed: int, index: int) -> str:
    """A made-up UK-style plate, the same for a seed and car."""
    rng = random.Random(f"{seed}:plate:{index}")
    letters = "ABCDEFGHJKLMNOPRSTUVWXYZ"
    return (
        "".join(rng.choice(letters) for _ in range(2))
        + f"{rng.randint(10, 66):02d}"
        + "".join(rng.choice(letters) for _ in range(3))
    )


@dataclass
class Period:
    """One booking period as the server answered it: the booking, its end (epoch s)."""

    car: int
    booking_id: str
    end: float
    slot: str = ""
    warning_expected: bool = True
    expiry_expected: bool = False
    ended_by: str = ""  # renewed, rebooked, cancelled, expired
    cancel_sent: float | None = None  # epoch seconds the driver asked to cancel


@dataclass
class Received:
    """A notification frame on a sampled socket: when it arrived and was stored (epoch s)."""

    type: str
    booking_id: str
    end: float
    arrival: float
    created: float
    seq: int


@dataclass
class Boundary:
    """Occupancy at one boundary: the data's, Parkmate's at the boundary, and once
    settled (within the quiet margin after it), with how long settling took (s)."""

    index: int
    day_seconds: int
    expected: list[int]
    at_boundary: list[int]
    settled: list[int]
    settle_seconds: float


@dataclass
class Stats:
    """What the drivers did and what the API answered."""

    made: int = 0
    refused: Counter = field(default_factory=Counter)
    renewed: int = 0
    rebooked: int = 0
    renew_refused: Counter = field(default_factory=Counter)
    cancelled: int = 0
    let_expire: int = 0
    retries: int = 0
    adopted: int = 0
    errors: Counter = field(default_factory=Counter)
    # kind of request (create, renew, cancel, set-up) -> Counter of 429/503 answers
    overload: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    create_latency: list[float] = field(default_factory=list)
    renew_latency: list[float] = field(default_factory=list)
    cancel_latency: list[float] = field(default_factory=list)


@dataclass
class LotState:
    id: str
    code: str
    name: str
    capacity: int
    owner_id: str
    owner_token: str
    booking_seconds: int
    warning_seconds: int
    free: deque = field(default_factory=deque)


class Watcher:
    """A sampled driver's socket: records every frame with its arrival time, answers
    the server's pings, reconnects with `resume` if it drops, and lets the car wait for
    a given notification."""

    def __init__(self, ws_url: str, token: str):
        self.url = f"{ws_url}/ws?token={token}"
        self.frames: list[tuple[float, dict]] = []
        self.received: list[Received] = []
        self.last_seq = 0
        self.reconnects = 0
        self._seen: dict[tuple, asyncio.Event] = {}
        self._ws = None
        self._task: asyncio.Task | None = None
        self._stop = False
        self.hello = asyncio.Event()

    def _event(self, key: tuple) -> asyncio.Event:
        return self._seen.setdefault(key, asyncio.Event())

    async def start(self) -> None:
        """Connect; return once `hello` arrived (raises TimeoutError after 60 s)."""
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.hello.wait(), 60)

    async def _run(self) -> None:
        while not self._stop:
            try:
                async with websockets.connect(self.url, max_queue=None, open_timeout=60) as ws:
                    self._ws = ws
                    first = True
                    async for raw in ws:
                        now = time.time()
                        frame = json.loads(raw)
                        self.frames.append((now, frame))
                        kind = frame.get("type")
                        if kind == "hello":
                            if not first or self.last_seq:
                                await ws.send(
                                    json.dumps({"type": "resume", "after_seq": self.last_seq})
                                )
                            first = False
                            self.hello.set()
                        elif kind == "ping":
                            await ws.send('{"type":"pong"}')
                        elif kind == "notification":
                            self._note(now, frame["notification"])
            except (OSError, websockets.WebSocketException, TimeoutError):
                pass
            if not self._stop:
                self.reconnects += 1
                await asyncio.sleep(0.5)

    def _note(self, now: float, n: dict) -> None:
        seq = n.get("seq", 0)
        if seq <= self.last_seq:
            return
        self.last_seq = seq
        data = n.get("data") or {}
        if n.get("type") not in (WARNING, EXPIRED) or "end_time" not in data:
            return
        end = epoch(data["end_time"])
        self.received.append(
            Received(n["type"], data["booking_id"], end, now, epoch(n["created_at"]), seq)
        )
        self._event((n["type"], data["booking_id"], ms(end))).set()

    async def wait_for(self, type_: str, booking_id: str, end: float, deadline: float) -> bool:
        """Wait until that notification arrived (True) or `deadline` passed (False)."""
        event = self._event((type_, booking_id, ms(end)))
        if deadline == float("inf"):
            await event.wait()
            return True
        try:
            await asyncio.wait_for(event.wait(), max(0.0, deadline - time.time()))
            return True
        except TimeoutError:
            return False

    async def close(self) -> None:
        """Stop reconnecting and close the socket."""
        self._stop = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


class Simulation:
    """One replay of `plan` against the API at `options.url`."""

    def __init__(self, plan: Plan, options: Options, on_event: Callable | None = None):
        self.plan = plan
        self.o = options
        self.on_event = on_event or (lambda *_: None)
        self.stats = Stats()
        self.run_id = uuid.uuid4().hex[:8]
        self.lots: list[LotState] = []
        self.drivers: list[dict] = []  # per car: id, token, vehicle_id
        self.watchers: dict[int, Watcher] = {}
        self.periods: list[Period] = []
        self.boundaries: list[Boundary] = []
        self.origin = 0.0
        self.finished_at = 0.0
        self.day_started = asyncio.Event()  # set once `origin` is fixed
        self.day_over = asyncio.Event()  # set at `finished_at` (or by an interruption)
        self.active = 0
        self.session: aiohttp.ClientSession | None = None
        self.admin_token = ""
        self.setup_seconds = 0.0
        self.owner_expired: Counter = Counter()
        self.interrupted_at: float | None = None
        self.final_counts: list[int] = []

    # ----- time -----

    def wall(self, day_seconds: float) -> float:
        """Epoch seconds at which day second `day_seconds` is replayed."""
        return self.origin + (day_seconds - self.plan.first) / self.o.speed

    def day(self, at: float) -> float:
        """Day second replayed at epoch second `at`."""
        return self.plan.first + (at - self.origin) * self.o.speed

    @staticmethod
    async def until(at: float) -> None:
        """Sleep until epoch second `at` (at once if it has passed)."""
        delay = at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)

    # ----- HTTP -----

    async def send(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: dict | None = None,
        params: dict | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """One request to the API, `path` under `--url` (`request`)."""
        url = self.o.url.rstrip("/") + path
        return await request(self.session, method, url, token, body, params, headers)

    async def call(
        self,
        method: str,
        path: str,
        token: str,
        body: dict | None = None,
        key: str | None = None,
        kind: str = "set-up",
        params: dict | None = None,
    ) -> Answer:
        """One API call (`params`: the query string); 5xx, 429 and transport errors are
        retried (RETRIES tries in all) with the same Idempotency-Key, after the answer's
        Retry-After when it has one, else after an exponential backoff. 429 and 503
        answers are counted under `kind` in `stats.overload`. Returns the last response
        (the caller checks its status); raises ReplayError when every try failed."""
        headers = {"Idempotency-Key": key} if key else None
        last = ""
        wait: float | None = None
        for attempt in range(RETRIES):
            if attempt:
                self.stats.retries += 1
                await asyncio.sleep(wait if wait is not None else min(0.25 * 2**attempt, 5.0))
            wait = None
            try:
                # Our own FIFO gate, so thousands of waiting requests cost the client's
                # connection pool nothing.
                async with self.gate:
                    r = await self.send(method, path, token, body, params, headers)
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                last = repr(e)
                continue
            if r.status_code in OVERLOAD:
                self.stats.overload[kind][r.status_code] += 1
                wait = retry_after(r)
            retry = (
                r.status_code >= 500
                or r.status_code == 429
                or (r.status_code == 409 and "in progress" in r.text)
            )
            if not retry:
                r.retried = attempt > 0
                return r
            last = f"{r.status_code} {r.text[:200]}"
        raise ReplayError(f"{method} {path} failed after {RETRIES} tries: {last}")

    # ----- set-up -----

    async def login(self, email: str, password: str) -> str | None:
        """An access token, or None when the API refuses the credentials. A 429 (too many
        failed logins from this address, docs/security.md) is waited out and retried."""
        for _ in range(RETRIES):
            r = await self.send(
                "POST", "/api/v1/auth/login", body={"email": email, "password": password}
            )
            if r.status_code != 429:
                return r.json()["access_token"] if r.status_code == 200 else None
            await asyncio.sleep(min(float(r.headers.get("retry-after", "1")), 60.0))
        raise ReplayError(f"logins for {email} still refused with 429 after {RETRIES} tries")

    async def setup(self) -> None:
        """Owners and their lots (reused when they exist), then the day's drivers with a
        vehicle each (bulk), then the sampled drivers' sockets."""
        started = time.time()
        token = await self.login(self.o.admin_email, self.o.admin_password)
        if token is None:
            raise ReplayError(
                f"cannot log in as {self.o.admin_email}; give an admin's --admin-email and "
                "--admin-password (parkmate dev seeds admin@example.com / parkmate)"
            )
        self.admin_token = token
        existing = await self._all_lots()
        booking = max(1, round(self.plan.booking_seconds / self.o.speed))
        warning = max(1, round(self.plan.warning_seconds / self.o.speed + 1e-9))
        if warning >= booking:
            raise ReplayError(f"speed {self.o.speed} is too high: bookings would last {booking} s")
        for series in self.plan.data.lots:
            self.lots.append(await self._lot(series, existing, booking, warning))
        await self._drivers()
        sample = self.plan.sample(self.o.sockets)
        ws_url = "ws" + self.o.url[len("http") :]
        for chunk in range(0, len(sample), 50):
            batch = []
            for index in sample[chunk : chunk + 50]:
                watcher = Watcher(ws_url, self.drivers[index]["token"])
                self.watchers[index] = watcher
                batch.append(watcher.start())
            await asyncio.gather(*batch)
        self.setup_seconds = time.time() - started

    async def _all_lots(self) -> list[dict]:
        items, cursor = [], None
        while True:
            params = {"limit": 200} | ({"cursor": cursor} if cursor else {})
            r = await self.call("GET", "/api/v1/lots", self.admin_token, params=params)
            r.raise_for_status()
            page = r.json()
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return items

    async def _owner(self, code: str) -> tuple[str, str]:
        # Create first (409 when a run before made it), then log in: a login that fails
        # because the owner does not exist yet counts against this address's failed-login
        # allowance, and a city has more car parks than that allowance (docs/security.md).
        email = f"replay-owner-{slug(code)}@parkmate.example"
        r = await self.call(
            "POST",
            "/api/v1/admin/users",
            self.admin_token,
            {
                "email": email,
                "password": self.o.owner_password,
                "full_name": f"Car park manager ({code})",
                "roles": ["owner"],
            },
        )
        if r.status_code not in (201, 409):
            raise ReplayError(f"cannot create owner {email}: {r.status_code} {r.text[:200]}")
        token = await self.login(email, self.o.owner_password)
        if token is None:
            raise ReplayError(f"owner {email} exists with another password (--owner-password)")
        me = await self.call("GET", "/api/v1/me", token)
        me.raise_for_status()
        return me.json()["id"], token

    async def _lot(self, series, existing: list[dict], booking: int, warning: int) -> LotState:
        owner_id, token = await self._owner(series.code)
        found = [x for x in existing if x["owner_id"] == owner_id and x["name"] == series.name]
        if found:
            lot = found[0]
            if (lot["booking_seconds"], lot["warning_seconds"]) != (booking, warning):
                r = await self.call(
                    "PATCH",
                    f"/api/v1/lots/{lot['id']}",
                    token,
                    {"booking_seconds": booking, "warning_seconds": warning},
                )
                if r.status_code != 200:
                    raise ReplayError(f"cannot update lot {series.name}: {r.text[:200]}")
            if lot["total_slots"] < series.capacity:
                await self.call(
                    "POST",
                    f"/api/v1/lots/{lot['id']}/slots",
                    token,
                    {"count": series.capacity - lot["total_slots"]},
                )
            await self._clear(lot["id"], token)
        else:
            r = await self.call(
                "POST",
                "/api/v1/lots",
                token,
                {
                    "name": series.name,
                    "address": f"Birmingham city centre (car park {series.code})",
                    "slot_count": series.capacity,
                    "booking_seconds": booking,
                    "warning_seconds": warning,
                    "price_per_hour": {"amount": "2.00", "currency": "GBP"},
                },
                key=f"replay-lot-{slug(series.code)}-{self.run_id}",
            )
            if r.status_code != 201:
                raise ReplayError(
                    f"cannot create lot {series.name}: {r.status_code} {r.text[:200]}"
                )
            lot = r.json()
        slots = await self.call("GET", f"/api/v1/lots/{lot['id']}/slots", token)
        slots.raise_for_status()
        free = [s["id"] for s in slots.json() if s["status"] == "free"][: series.capacity]
        rng = random.Random(f"{self.o.seed}:slots:{series.code}")
        rng.shuffle(free)
        return LotState(
            lot["id"],
            series.code,
            series.name,
            series.capacity,
            owner_id,
            token,
            booking,
            warning,
            deque(free),
        )

    async def _clear(self, lot_id: str, owner_token: str) -> None:
        """Decline bookings an interrupted earlier replay left active in the lot."""
        while True:
            r = await self.call(
                "GET", "/api/v1/bookings", owner_token, params={"status": "active", "limit": 200}
            )
            r.raise_for_status()
            left = [b for b in r.json()["items"] if b["lot_id"] == lot_id]
            if not left:
                return
            for b in left:
                await self.call(
                    "POST",
                    f"/api/v1/bookings/{b['id']}/decline",
                    owner_token,
                    {"reason": "a new replay of the day starts"},
                )

    async def _drivers(self) -> None:
        cars = self.plan.cars
        seconds = self.plan.booking_seconds * 2 + self.plan.last - self.plan.first
        # Generous: an overloaded system stretches the replay well past its plan.
        token_seconds = min(7 * 24 * 3600, int(3 * seconds / self.o.speed) + 12 * 3600)
        for start in range(0, len(cars), BULK):
            chunk = cars[start : start + BULK]
            r = await self.call(
                "POST",
                "/api/v1/admin/users/bulk",
                self.admin_token,
                {
                    "users": [
                        {
                            "email": f"car{c.index}.{self.run_id}@replay.parkmate.example",
                            "full_name": f"Driver of car {c.index}",
                        }
                        for c in chunk
                    ],
                    "token_seconds": token_seconds,
                },
            )
            if r.status_code != 201:
                raise ReplayError(f"bulk accounts refused: {r.status_code} {r.text[:300]}")
            users = r.json()["items"]
            r = await self.call(
                "POST",
                "/api/v1/admin/vehicles/bulk",
                self.admin_token,
                {
                    "vehicles": [
                        {"user_id": u["id"], "plate": plate_of(self.o.seed, c.index)}
                        for u, c in zip(users, chunk, strict=True)
                    ]
                },
            )
            if r.status_code != 201:
                raise ReplayError(f"bulk vehicles refused: {r.status_code} {r.text[:300]}")
            for u, v in zip(users, r.json()["items"], strict=True):
                self.drivers.append({"id": u["id"], "token": u["access_token"], "vehicle": v["id"]})
            self.on_event("setup", len(self.drivers))

    # ----- the day -----

    async def run(self) -> None:
        """Set up, replay the day, wait for the last expiries and notifications."""
        # aiohttp rather than httpx: about a fifth of httpx's CPU per request (0.27 ms
        # against 1.4 ms), and the replay shares the machine with what it measures.
        # The pool has a connection for every request the gate lets through, plus
        # the set-up's own calls, which do not pass the gate.
        connector = aiohttp.TCPConnector(limit=self.o.concurrency + 4, limit_per_host=0)
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT)
        async with contextlib.AsyncExitStack() as stack:
            self.session = await stack.enter_async_context(
                aiohttp.ClientSession(connector=connector, timeout=timeout)
            )
            self.gate = asyncio.Semaphore(self.o.concurrency)
            try:
                await self.setup()
                self.origin = time.time() + 2.0
                self.day_started.set()
                tasks = [asyncio.create_task(self._drive(car)) for car in self.plan.cars]
                checker = asyncio.create_task(self._check_boundaries())
                await self._until_cars_done(tasks)
                await checker
                self.finished_at = time.time()
                self.day_over.set()
                await self._drain()
                self.owner_expired = await self._settled_owner_expiries()
                self.final_counts = await self.lot_counts()
            finally:
                for w in self.watchers.values():
                    await w.close()

    async def _until_cars_done(self, tasks: list[asyncio.Task]) -> None:
        """Wait for every car; once the plan is over, give up on cars still waiting
        when nothing (no car finished, no frame arrived) moved for `drain_seconds`.

        Counts finished cars with one done-callback per task: `asyncio.wait` on tens of
        thousands of tasks every second re-registers a callback on each (O(cars) per
        call), which made it the replay's own hottest line (py-spy, whole-city replay).
        """
        left = len(tasks)
        finished = asyncio.Event()

        def one_done(_: asyncio.Task) -> None:
            nonlocal left
            left -= 1
            if left == 0:
                finished.set()

        for task in tasks:
            task.add_done_callback(one_done)
        moved, heard, seen = time.time(), -1, left
        over = self.wall(self.plan.last + self.plan.booking_seconds)
        while left:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), 1.0)
            frames = sum(len(w.received) for w in self.watchers.values())
            if left != seen or frames != heard:
                moved, heard, seen = time.time(), frames, left
            if left and time.time() > over and time.time() - moved > self.o.drain_seconds:
                pending = [t for t in tasks if not t.done()]
                self.stats.errors["cars still waiting for a warning when nothing moved"] += len(
                    pending
                )
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                return

    async def _drive(self, car: Car) -> None:
        try:
            await self._drive_car(car)
        except ReplayError as e:
            self.stats.errors[str(e)[:120]] += 1

    async def _drive_car(self, car: Car) -> None:
        lot = self.lots[car.lot]
        driver = self.drivers[car.index]
        watcher = self.watchers.get(car.index)
        rng = random.Random(f"{self.o.seed}:car:{car.index}")
        await self.until(self.wall(car.arrive))
        period = await self._book(car, lot, driver)
        if period is None:
            return
        stay = self.wall(self.plan.stay_until(car))
        leave = None if car.leave is None else self.wall(car.leave)
        warning = lot.warning_seconds
        while True:
            warn_at = period.end - warning
            if stay <= period.end:  # the car does not outlive this period
                let_expire = car.leave is None or (
                    car.at_end
                    and self.day(period.end) <= self.plan.bin_end(car.leave) - self.plan.margin
                )
                if let_expire:
                    period.expiry_expected = True
                    period.ended_by = "expired"
                    self.stats.let_expire += 1
                    await self.until(period.end)
                    self.active -= 1
                    await asyncio.sleep(max(1.0, warning))
                    lot.free.append(period.slot)
                    return
                if leave >= warn_at and watcher is not None:
                    await self._await_warning(watcher, period, lot)
                period.warning_expected = leave >= warn_at
                await self.until(leave)
                await self._cancel(car, lot, driver, period)
                return
            if watcher is not None:
                await self._await_warning(watcher, period, lot)
                await asyncio.sleep(rng.uniform(0.05, 0.3) * warning)
            else:
                await self.until(warn_at + rng.uniform(0.1, 0.5) * warning)
            period = await self._renew(car, lot, driver, period)
            if period is None:
                return

    async def _await_warning(self, watcher: Watcher, period: Period, lot: LotState) -> None:
        """Wait, however long it takes, for the period's warning on the socket. A driver
        who acted first (renewed, say) could make the server drop a warning it fires
        late as stale; then a late warning would look missing. Lateness is measured
        instead, and a warning that never comes holds its car until the run ends."""
        await watcher.wait_for(WARNING, period.booking_id, period.end, float("inf"))

    async def _book(self, car: Car, lot: LotState, driver: dict) -> Period | None:
        for attempt in range(5):
            if not lot.free:
                self.stats.refused["no free slot known to the driver"] += 1
                return None
            slot = lot.free.popleft()
            started = time.time()
            r = await self.call(
                "POST",
                "/api/v1/bookings",
                driver["token"],
                {"slot_id": slot, "vehicle_id": driver["vehicle"]},
                key=f"{self.run_id}-{car.index}-book-{attempt}",
                kind="create",
            )
            self.stats.create_latency.append(time.time() - started)
            if r.status_code == 201:
                b = r.json()
                self.stats.made += 1
                self.active += 1
                p = Period(car.index, b["id"], epoch(b["end_time"]), slot)
                self.periods.append(p)
                return p
            if r.status_code == 409 and r.retried:
                adopted = await self._adopt(car, driver, slot)
                if adopted is not None:
                    return adopted
            reason = refusal(r)
            self.stats.refused[reason] += 1
            if r.status_code == 409:
                lot.free.append(slot)  # held by a booking whose end is not processed yet
                continue
            lot.free.appendleft(slot)
            return None
        return None

    async def _adopt(self, car: Car, driver: dict, slot: str) -> Period | None:
        """After a retried create answered 409: the first try may have booked after all
        (it timed out in the api, not in bookings). Adopt that booking if so."""
        r = await self.send(
            "GET", "/api/v1/bookings", driver["token"], params={"status": "active", "limit": 5}
        )
        for b in r.json().get("items", []) if r.status_code == 200 else []:
            if b["slot_id"] == slot:
                self.stats.made += 1
                self.stats.adopted += 1
                self.active += 1
                p = Period(car.index, b["id"], epoch(b["end_time"]), slot)
                self.periods.append(p)
                return p
        return None

    async def _renew(self, car: Car, lot: LotState, driver: dict, period: Period) -> Period | None:
        started = time.time()
        r = await self.call(
            "POST",
            f"/api/v1/bookings/{period.booking_id}/renew",
            driver["token"],
            None,
            key=f"{self.run_id}-{car.index}-renew-{ms(period.end)}",
            kind="renew",
        )
        self.stats.renew_latency.append(time.time() - started)
        if r.status_code != 200:
            self.stats.renew_refused[refusal(r)] += 1
            period.expiry_expected = True
            period.ended_by = "expired"
            self.active -= 1
            if "taken" not in r.text:
                lot.free.append(period.slot)
            return None
        b = r.json()
        new = Period(car.index, b["id"], epoch(b["end_time"]), period.slot)
        if b["id"] == period.booking_id:
            self.stats.renewed += 1
            period.ended_by = "renewed"
        else:  # it had expired before the renewal reached the server: rebooked
            self.stats.rebooked += 1
            period.ended_by = "rebooked"
            period.expiry_expected = True
        self.periods.append(new)
        return new

    async def _cancel(self, car: Car, lot: LotState, driver: dict, period: Period) -> None:
        started = period.cancel_sent = time.time()
        r = await self.call(
            "POST", f"/api/v1/bookings/{period.booking_id}/cancel", driver["token"], kind="cancel"
        )
        self.stats.cancel_latency.append(time.time() - started)
        self.active -= 1
        if r.status_code == 200:
            self.stats.cancelled += 1
            period.ended_by = "cancelled"
        else:
            self.stats.refused[f"cancel: {refusal(r)}"] += 1
            period.ended_by = "expired"
            period.expiry_expected = True
        lot.free.append(period.slot)

    # ----- checks -----

    async def lot_counts(self) -> list[int]:
        """Active bookings of each replayed lot, from GET /api/v1/lots."""
        by_id = {x["id"]: x for x in await self._all_lots()}
        return [by_id[lot.id]["total_slots"] - by_id[lot.id]["free_slots"] for lot in self.lots]

    async def _check_boundaries(self) -> None:
        data = self.plan.data
        for k, t in enumerate(data.boundaries):
            expected = [lot.occupancy[k] for lot in data.lots]
            await self.until(self.wall(t))
            at = await self.lot_counts()
            counts = at
            settle = self.o.settle_seconds
            quiet_until = self.wall(t) + (
                settle if settle is not None else self.plan.margin / self.o.speed
            )
            settle = 0.0
            while counts != expected and time.time() < quiet_until:
                await asyncio.sleep(0.1)
                counts = await self.lot_counts()
                settle = time.time() - self.wall(t)
            self.boundaries.append(Boundary(k, t, expected, at, counts, settle))
            self.on_event("boundary", k)

    async def _drain(self) -> None:
        """Wait for every expected notification on the sockets and every lot empty; give
        up only when nothing moved for `drain_seconds` (an overloaded system catches up
        late, and that is measured, not cut off)."""
        due = max((p.end for p in self.periods), default=time.time())
        await self.until(due)
        last, progress = None, time.time()
        while time.time() - progress < self.o.drain_seconds:
            missing, counts = len(self.missing()), await self.lot_counts()
            if not missing and not any(counts):
                return
            if (missing, counts) != last:
                last, progress = (missing, counts), time.time()
            await asyncio.sleep(0.5)

    def expected(self) -> list[tuple[str, Period]]:
        """(type, period) of every notification a sampled driver must receive; after an
        interruption, only those the server scheduled before it."""
        out = []
        cutoff = self.interrupted_at or float("inf")
        for p in self.periods:
            if p.car not in self.watchers:
                continue
            warning = self.lots[self.plan.cars[p.car].lot].warning_seconds
            if p.warning_expected and p.end - warning < cutoff:
                out.append((WARNING, p))
            if p.expiry_expected and p.end < cutoff:
                out.append((EXPIRED, p))
        return out

    def missing(self) -> list[tuple[str, Period]]:
        """Expected notifications no sampled socket has received (yet)."""
        got = {
            (r.type, r.booking_id, ms(r.end)) for w in self.watchers.values() for r in w.received
        }
        return [(t, p) for t, p in self.expected() if (t, p.booking_id, ms(p.end)) not in got]

    def reached_end(self) -> set[str]:
        """Ids of the bookings whose last period the server had to end (expiry)."""
        finals: dict[str, bool] = {}
        for p in self.periods:  # a booking's last period decides
            finals[p.booking_id] = p.expiry_expected
        return {b for b, expired in finals.items() if expired}

    async def _settled_owner_expiries(self) -> Counter:
        """The owners' booking.expired notifications once they stop changing. A lot's
        count drops when bookings expires a booking; the owner's note is stored a moment
        later by the notifier, so read the inboxes until every booking that reached its
        end is there, or nothing changed for `drain_seconds`."""
        reached = self.reached_end()
        seen, progress = await self.owner_expiries(), time.time()
        while not reached <= seen.keys() and time.time() - progress < self.o.drain_seconds:
            await asyncio.sleep(0.5)
            again = await self.owner_expiries()
            if again != seen:
                seen, progress = again, time.time()
        return seen

    async def owner_expiries(self) -> Counter:
        """booking.expired notifications per booking id in the owners' inboxes."""
        seen: Counter = Counter()
        for lot in self.lots:
            cursor = None
            while True:
                params = {"type": EXPIRED, "limit": 200} | ({"cursor": cursor} if cursor else {})
                r = await self.call(
                    "GET", "/api/v1/notifications", lot.owner_token, params=params, kind="check"
                )
                r.raise_for_status()
                page = r.json()
                for n in page["items"]:
                    if n["data"].get("lot_id") == lot.id:
                        seen[n["data"]["booking_id"]] += 1
                cursor = page["next_cursor"]
                if not cursor:
                    break
        return seen


def retry_after(r: Answer) -> float | None:
    """The answer's Retry-After in seconds (at most MAX_RETRY_AFTER), or None when it has
    none in the delay-seconds form (the form Parkmate sends; an HTTP date is not read)."""
    try:
        seconds = float(r.headers.get("retry-after", ""))
    except ValueError:
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER) if math.isfinite(seconds) else None


def refusal(r: Answer) -> str:
    """A short reason for a refused call: status and the API's reason or detail."""
    try:
        body = r.json()
    except ValueError:
        return f"{r.status_code}"
    extra = body.get("extra") or {}
    if "reason" in extra:
        return f"{r.status_code} {extra['reason']}"
    detail = str(body.get("detail", ""))
    if "already booked" in detail:
        return f"{r.status_code} slot already booked"
    return f"{r.status_code} {detail.rstrip(string.punctuation)[:80]}"

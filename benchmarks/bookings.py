"""Bookings under load: creates (and one renewal each) over the HTTP API at a fixed
offered rate, open loop.

    .venv/bin/python -m benchmarks.bookings [--url http://127.0.0.1:8000] [--rate 50]
        [--seconds 60] [--contention 1] [--renew-after 5] [--booking-seconds 30]
        [--processes .parkmate/processes.json] [--nats-url URL] [--json PATH] [--check]

Against a running Parkmate at `--url` (e.g. what `scripts/dev` prints), or, without
`--url`, one it starts itself (`parkmate dev` on a free port with a temporary state
dir, stopped at the end). Then:

1. logs in as an admin (`--admin-email` / `--admin-password`, default the demo admin
   `parkmate dev` seeds) and makes, with POST /api/v1/admin/users/bulk, one lot owner
   and one driver per create request (emails unique to this run, server-minted
   tokens); the owner opens lots with POST /api/v1/lots (up to 1,000 slots each,
   `--booking-seconds` bookings, `--warning-seconds` warning), one slot per
   `--contention` creates;
2. waits until the set-up's events are out of the way: the EVENTS stream holds a
   user.registered for every account made, and every consumer of EVENTS has
   num_pending + num_ack_pending 0 (at most 300 s; the report says how long it took,
   or that the load ran on top of them). Without a NATS URL it does not wait;
3. the load, open loop: every `contention / rate` seconds a fresh slot is raced by
   `--contention` drivers at once (POST /api/v1/bookings, an Idempotency-Key each),
   launched on schedule whether or not earlier requests have answered, for
   `--seconds`; each booking won (201) is renewed once (POST .../renew) `--renew-after`
   seconds after its 201 when that falls inside the load window. Nothing is retried:
   a 429 or 503 is counted as it came;
4. once every request has answered (the load stops): whether the timers and the
   notifier kept up, i.e. their JetStream consumers (EVENTS/timers, EVENTS/notifier)
   had num_pending + num_ack_pending back to 0 within 5 s. The NATS URL is
   `--nats-url`, else `nats_url` in parkmate dev's process list (`--processes`, for the
   api at `--url`; without `--url`, the list of the dev it started); without one the
   consumers are not measured;
5. double bookings: the owner lists every booking of its lots (GET /api/v1/bookings,
   all pages); two active bookings of one slot, or two bookings of one slot whose
   periods overlap (cancelled and declined ones aside), are a double booking. Must be 0.

Prints (and with `--json` writes) the offered and achieved rates (creates/s counts 201s
only, over the time from the first launch to the last create's answer), p50/p99/max
latency from each request's scheduled launch (so a client falling behind shows as
latency, not as a lower offered rate), every status's count (201, 409, 429, 503, ...),
transport errors, the races (slots with exactly one 201 and `contention - 1` 409s), the
consumers' lag, and the double bookings. Asserts nothing about time; `--check` exits 1
when a double booking was found or a slot was won more than once.
"""

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import math
import secrets
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import nats

from benchmarks.fanout import BenchmarkError, DevServer
from services.contracts import subjects
from services.replay.cpu import same_api
from services.replay.report import percentile
from services.replay.simulation import Answer, request
from services.runtime import processes

BULK = 5000  # accounts per POST /admin/users/bulk (services/api/routes/admin_bulk.py)
SLOTS_PER_LOT = 1000
# The load's connections to the api: one aiohttp session (0.27 ms of this client's CPU
# per request, against httpx's 1.4 to 1.5 ms, docs/replay.md), so on two shared cores
# the client is not what limits the rate it offers.
CONNECTIONS = 4096
CONSUMERS = (
    ("timers", subjects.EVENTS_STREAM, "timers"),
    ("notifier", subjects.EVENTS_STREAM, "notifier"),
)
KEPT_UP_WITHIN = 5.0  # seconds after the load stops for a consumer's lag to reach 0
# Seconds the set-up's events (a user.registered per account, published by the api's
# outbox relay, consumed by the notifier) may take before the load starts. Without the
# wait a large run's load started while thousands of them were still being published
# and stored, and their CPU counted as the load's.
SETTLE_WITHIN = 300.0
START_DELAY = 0.5  # seconds between the end of the set-up and the first launch


@dataclass
class Options:
    """What to run; `url` None starts a `parkmate dev` of its own."""

    url: str | None = None
    rate: float = 50.0  # create requests offered per second
    seconds: float = 60.0
    contention: int = 1  # drivers racing for each slot
    renew_after: float = 5.0  # seconds after a 201 that its booking is renewed
    booking_seconds: int = 30
    warning_seconds: int = 10
    admin_email: str = "admin@example.com"
    admin_password: str = "parkmate"
    processes: Path = processes.DEFAULT_PATH
    nats_url: str | None = None
    quiet: bool = False


@dataclass
class Outcomes:
    """Answers to one kind of request: counts by status, transport errors, latency (ms,
    from the scheduled launch to the answer)."""

    sent: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    latency_ms_p50: float | None = None
    latency_ms_p99: float | None = None
    latency_ms_max: float | None = None
    # status -> {"p50", "p99", "max"} (ms): how soon a 503, say, came compared to a 201
    latency_ms_by_status: dict[str, dict[str, float]] = field(default_factory=dict)
    # why the 429 and 503 answers said no, by the start of their `detail`
    overload_reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class Consumer:
    """A JetStream consumer's lag (num_pending + num_ack_pending) when the load stopped,
    and the seconds until it was 0 (None: not within KEPT_UP_WITHIN)."""

    stream: str
    durable: str
    lag_at_stop: int
    seconds_to_zero: float | None
    kept_up: bool


@dataclass
class Result:
    """The figures of one run (None: not measured)."""

    url: str
    rate: float
    seconds: float
    contention: int
    renew_after: float
    booking_seconds: int
    lots: int = 0
    slots: int = 0
    drivers: int = 0
    creates: Outcomes = field(default_factory=Outcomes)
    renewals: Outcomes = field(default_factory=Outcomes)
    creates_per_second: float | None = None  # 201s only
    offered_creates_per_second: float | None = None  # create requests launched / --seconds
    launch_lag_ms_max: float | None = None  # how late this client launched a request
    # requests this client had in flight at most, and its connections: beyond them a
    # request waited for a connection in the client (counted in its latency)
    client_in_flight_max: int = 0
    client_connections: int = CONNECTIONS
    client_cpu_seconds: float | None = None  # this process's CPU over the load
    races: dict[str, int] = field(default_factory=dict)
    consumers: dict[str, Consumer] | None = None
    consumers_not_measured: str | None = None
    # seconds from the end of the set-up until its events were published and consumed
    # (None: not within SETTLE_WITHIN, or no NATS URL); the load started then
    setup_settled_seconds: float | None = None
    setup_lag_at_load: int | None = None  # EVENTS messages still to consume at the start
    bookings_checked: int = 0
    # bookings made whose create was not answered 201 (a 503 after the api stopped
    # waiting for the bookings service, which made the booking later; a lost answer)
    bookings_without_201: int = 0
    double_bookings: int = 0
    double_booking_examples: list[str] = field(default_factory=list)

    def failures(self) -> list[str]:
        """What `--check` fails on: double bookings, a slot won more than once."""
        out = []
        if self.double_bookings:
            out.append(f"{self.double_bookings} double bookings")
        if self.races.get("won_more_than_once"):
            out.append(f"{self.races['won_more_than_once']} slots won more than once")
        return out

    def settled_line(self) -> str:
        """The report's line on the wait for the set-up's events."""
        if self.setup_lag_at_load is None:
            return "set-up's events: not waited for (no NATS URL)"
        if self.setup_settled_seconds is not None:
            return (
                f"set-up's events: published and consumed {self.setup_settled_seconds:.1f} s "
                "after the set-up, before the load started"
            )
        return (
            f"set-up's events: not consumed within {SETTLE_WITHIN:g} s; the load started with "
            f"{self.setup_lag_at_load:,} still to consume (its figures include their work)"
        )

    def lines(self) -> list[str]:
        """The report, one figure a line."""

        def num(value: float | None, unit: str = "", digits: int = 1) -> str:
            return "n/a" if value is None else f"{value:,.{digits}f}{unit}"

        def outcome(name: str, o: Outcomes, ok: str) -> list[str]:
            shown = (ok, "409", "429", "503")
            main = ", ".join(f"{code} {o.statuses.get(code, 0):,}" for code in shown)
            other = {k: v for k, v in o.statuses.items() if k not in shown}
            by_status = "; ".join(
                f"{code}: p50 {num(x['p50'], ' ms', 0)}, p99 {num(x['p99'], ' ms', 0)}"
                for code, x in o.latency_ms_by_status.items()
            )
            lines = [
                f"{name}: sent {o.sent:,}; {main}"
                + (f"; other {other}" if other else "")
                + (f"; transport errors {o.errors}" if o.errors else ""),
                f"  latency from the scheduled launch: p50 {num(o.latency_ms_p50, ' ms', 0)}, "
                f"p99 {num(o.latency_ms_p99, ' ms', 0)}, max {num(o.latency_ms_max, ' ms', 0)}"
                + (f" ({by_status})" if by_status else ""),
            ]
            if o.overload_reasons:
                lines.append(f"  429/503 said: {o.overload_reasons}")
            return lines

        out = [
            f"offered: {self.rate:g} creates/s for {self.seconds:g} s, {self.contention} "
            f"driver(s) per slot, each booking won renewed {self.renew_after:g} s after its 201 "
            f"({self.booking_seconds} s bookings); {self.lots} lots, {self.slots:,} slots, "
            f"{self.drivers:,} drivers",
            f"launched: {num(self.offered_creates_per_second, ' creates/s')}; this client "
            f"launched at most {num(self.launch_lag_ms_max, ' ms', 0)} late and had at most "
            f"{self.client_in_flight_max:,} requests in flight on "
            f"{self.client_connections:,} connections, using "
            f"{num(self.client_cpu_seconds, ' s', 1)} of CPU",
            f"achieved: {num(self.creates_per_second, ' creates/s')} (201s only)",
            self.settled_line(),
            *outcome("creates", self.creates, "201"),
            *outcome("renewals", self.renewals, "200"),
        ]
        r = self.races
        if self.contention > 1:
            out.append(
                f"races: {r.get('slots', 0):,} slots; as expected (one 201, "
                f"{self.contention - 1} x 409) {r.get('as_expected', 0):,}; no winner "
                f"{r.get('no_winner', 0):,}; won more than once {r.get('won_more_than_once', 0):,}"
            )
        else:
            out.append(
                f"slots: {r.get('slots', 0):,}; won once {r.get('as_expected', 0):,}; not won "
                f"{r.get('no_winner', 0):,}; won more than once {r.get('won_more_than_once', 0):,}"
            )
        if self.consumers is None:
            out.append(f"consumers: not measured ({self.consumers_not_measured})")
        for name, c in (self.consumers or {}).items():
            out.append(
                f"consumer {c.stream}/{c.durable} ({name}): lag {c.lag_at_stop:,} when the load "
                "stopped, "
                + (
                    f"0 after {c.seconds_to_zero:.1f} s: kept up"
                    if c.kept_up
                    else f"not 0 within {KEPT_UP_WITHIN:g} s: did not keep up"
                )
            )
        out.append(
            f"double bookings: {self.double_bookings} (of {self.bookings_checked:,} bookings "
            f"listed; {self.bookings_without_201:,} of them made although their create was not "
            "answered 201)"
        )
        out += [f"  {x}" for x in self.double_booking_examples]
        return out


def progress(options: Options, text: str) -> None:
    if not options.quiet:
        print(f"bookings: {text}", file=sys.stderr, flush=True)


# ----- set-up -----


async def login(http: httpx.AsyncClient, email: str, password: str) -> str:
    r = await http.post("/api/v1/auth/login", json={"email": email, "password": password})
    if r.status_code != 200:
        raise BenchmarkError(
            f"cannot log in as {email} ({r.status_code}); give an admin's --admin-email and "
            "--admin-password (parkmate dev seeds admin@example.com / parkmate)"
        )
    return r.json()["access_token"]


async def create_accounts(
    http: httpx.AsyncClient, admin: str, prefix: str, count: int, roles: list[str]
) -> list[dict[str, str]]:
    """`count` new accounts with `roles` (emails unique to this run): id and token each."""
    run_id = secrets.token_hex(4)
    out: list[dict[str, str]] = []
    for start in range(0, count, BULK):
        body = {
            "users": [
                {
                    "email": f"{prefix}{i}.{run_id}@bench.parkmate.example",
                    "full_name": f"{prefix} {i}",
                    "roles": roles,
                }
                for i in range(start, min(count, start + BULK))
            ],
            "token_seconds": 12 * 3600,
        }
        r = await http.post(
            "/api/v1/admin/users/bulk", json=body, headers={"Authorization": f"Bearer {admin}"}
        )
        if r.status_code != 201:
            raise BenchmarkError(f"bulk accounts refused: {r.status_code} {r.text[:300]}")
        out += [{"id": u["id"], "token": u["access_token"]} for u in r.json()["items"]]
    return out


async def create_lots(
    http: httpx.AsyncClient, owner: str, slots: int, options: Options
) -> tuple[list[str], list[str]]:
    """Lots of the owner holding `slots` slots in all: (lot ids, slot ids)."""
    headers = {"Authorization": f"Bearer {owner}"}
    lot_ids: list[str] = []
    slot_ids: list[str] = []
    run_id = secrets.token_hex(4)
    for n, start in enumerate(range(0, slots, SLOTS_PER_LOT)):
        r = await http.post(
            "/api/v1/lots",
            json={
                "name": f"Benchmark lot {n} ({run_id})",
                "address": "1 Benchmark Road",
                "slot_count": min(SLOTS_PER_LOT, slots - start),
                "booking_seconds": options.booking_seconds,
                "warning_seconds": options.warning_seconds,
            },
            headers=headers,
        )
        if r.status_code != 201:
            raise BenchmarkError(f"lot refused: {r.status_code} {r.text[:300]}")
        lot_ids.append(r.json()["id"])
        listed = await http.get(f"/api/v1/lots/{lot_ids[-1]}/slots", headers=headers)
        listed.raise_for_status()
        slot_ids += [s["id"] for s in listed.json()]
    return lot_ids, slot_ids


# ----- the load -----


class Load:
    """The open-loop load: races launched on schedule, renewals after wins, answers."""

    def __init__(self, session: aiohttp.ClientSession, url: str, options: Options):
        self.session = session
        self.url = url.rstrip("/")
        self.o = options
        self.tasks: set[asyncio.Task] = set()
        self.latency: dict[str, dict[str, list[float]]] = {
            "create": defaultdict(list),
            "renew": defaultdict(list),
        }
        self.reasons: dict[str, Counter] = {"create": Counter(), "renew": Counter()}
        self.statuses: dict[str, Counter] = {"create": Counter(), "renew": Counter()}
        self.errors: dict[str, Counter] = {"create": Counter(), "renew": Counter()}
        self.sent: Counter = Counter()
        self.per_slot: dict[str, Counter] = defaultdict(Counter)  # slot -> status counts
        self.launch_lag = 0.0
        self.in_flight = 0
        self.in_flight_max = 0
        self.first_launch: float | None = None
        self.last_create_answer: float | None = None
        self.window_end = 0.0

    async def _post(
        self, kind: str, path: str, token: str, body: dict | None, at: float
    ) -> Answer | None:
        """One POST scheduled for loop time `at`: the answer, or None (transport error,
        counted)."""
        loop = asyncio.get_running_loop()
        self.launch_lag = max(self.launch_lag, loop.time() - at)
        self.sent[kind] += 1
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        self.in_flight += 1
        self.in_flight_max = max(self.in_flight_max, self.in_flight)
        try:
            r = await request(self.session, "POST", self.url + path, token, body, headers=headers)
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            self.errors[kind][type(e).__name__] += 1
            return None
        finally:
            self.in_flight -= 1
        self.latency[kind][str(r.status_code)].append(loop.time() - at)
        self.statuses[kind][str(r.status_code)] += 1
        if r.status_code in (429, 503):
            self.reasons[kind][reason(r)] += 1
        return r

    async def _create(self, slot: str, driver: dict[str, str], at: float) -> None:
        r = await self._post("create", "/api/v1/bookings", driver["token"], {"slot_id": slot}, at)
        loop = asyncio.get_running_loop()
        self.last_create_answer = loop.time()
        self.per_slot[slot]["error" if r is None else str(r.status_code)] += 1
        if r is None or r.status_code != 201:
            return
        renew_at = loop.time() + self.o.renew_after
        if renew_at < self.window_end:
            await asyncio.sleep(renew_at - loop.time())
            booking = r.json()["id"]
            await self._post(
                "renew", f"/api/v1/bookings/{booking}/renew", driver["token"], None, renew_at
            )

    def _launch(self, coro) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self, slots: list[str], drivers: list[dict[str, str]]) -> None:
        """Launch every race on schedule, then wait for every answer."""
        loop = asyncio.get_running_loop()
        c = self.o.contention
        start = loop.time() + START_DELAY
        self.window_end = start + self.o.seconds
        self.first_launch = start
        for i, slot in enumerate(slots):
            at = start + i * c / self.o.rate
            delay = at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            for k in range(c):
                self._launch(self._create(slot, drivers[i * c + k], at))
        while self.tasks:
            await asyncio.gather(*list(self.tasks))

    def outcomes(self, kind: str) -> Outcomes:
        def spread(values: list[float]) -> dict[str, float]:
            ordered = sorted(values)
            return {
                "p50": percentile(ordered, 50) * 1000,
                "p99": percentile(ordered, 99) * 1000,
                "max": ordered[-1] * 1000,
            }

        by_status = self.latency[kind]
        every = [x for values in by_status.values() for x in values]
        whole = spread(every) if every else {}
        return Outcomes(
            sent=self.sent[kind],
            statuses=dict(sorted(self.statuses[kind].items())),
            errors=dict(self.errors[kind]),
            latency_ms_p50=whole.get("p50"),
            latency_ms_p99=whole.get("p99"),
            latency_ms_max=whole.get("max"),
            latency_ms_by_status={code: spread(v) for code, v in sorted(by_status.items())},
            overload_reasons=dict(self.reasons[kind]),
        )

    def races(self) -> dict[str, int]:
        """Per slot: exactly one 201 and contention - 1 409s (as expected), no 201, or
        more than one 201."""
        c = self.o.contention
        out = Counter(slots=len(self.per_slot))
        for counts in self.per_slot.values():
            wins = counts["201"]
            out["as_expected"] += wins == 1 and counts["409"] == c - 1
            out["no_winner"] += wins == 0
            out["won_more_than_once"] += wins > 1
        return {k: out[k] for k in ("slots", "as_expected", "no_winner", "won_more_than_once")}


def reason(r: Answer) -> str:
    """A 429's or 503's reason: its `detail` up to the first colon or semicolon."""
    try:
        detail = str(r.json().get("detail", ""))
    except ValueError:
        return "no JSON detail"
    for mark in (":", ";"):
        detail = detail.split(mark, 1)[0]
    return detail[:80]


# ----- between the set-up and the load -----


async def registered_events(js: nats.js.JetStreamContext) -> int:
    """How many user.registered events the EVENTS stream holds now."""
    info = await js.stream_info(subjects.EVENTS_STREAM, subjects_filter=subjects.USER_REGISTERED)
    return (info.state.subjects or {}).get(subjects.USER_REGISTERED, 0)


async def events_lag(js: nats.js.JetStreamContext) -> int:
    """num_pending + num_ack_pending summed over every consumer of EVENTS."""
    consumers = await js.consumers_info(subjects.EVENTS_STREAM)
    return sum(c.num_pending + c.num_ack_pending for c in consumers)


async def settle(
    js: nats.js.JetStreamContext, registered: int, within: float
) -> tuple[float | None, int]:
    """Wait until the EVENTS stream holds at least `registered` user.registered events
    and every consumer of EVENTS has lag 0, polling every 0.2 s for at most `within`
    seconds. Returns (seconds waited, or None when not within; the consumers' lag then).
    """
    started = time.monotonic()
    while True:
        lag = await events_lag(js)
        if lag == 0 and await registered_events(js) >= registered:
            return round(time.monotonic() - started, 2), 0
        if time.monotonic() - started >= within:
            return None, lag
        await asyncio.sleep(0.2)


# ----- after the load -----


async def consumer_lag(js: nats.js.JetStreamContext) -> dict[str, Consumer]:
    """Each consumer's lag now, then polled until 0 (at most KEPT_UP_WITHIN s)."""
    started = time.monotonic()
    out: dict[str, Consumer] = {}
    for name, stream, durable in CONSUMERS:
        info = await js.consumer_info(stream, durable)
        lag = info.num_pending + info.num_ack_pending
        out[name] = Consumer(stream, durable, lag, 0.0 if lag == 0 else None, lag == 0)
    while True:
        elapsed = time.monotonic() - started
        for name, stream, durable in CONSUMERS:
            c = out[name]
            if c.kept_up:
                continue
            info = await js.consumer_info(stream, durable)
            if info.num_pending + info.num_ack_pending == 0:
                c.seconds_to_zero, c.kept_up = round(elapsed, 2), True
        if all(c.kept_up for c in out.values()) or elapsed >= KEPT_UP_WITHIN:
            return out
        await asyncio.sleep(0.1)


def _when(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def double_bookings(bookings: list[dict[str, Any]]) -> list[str]:
    """Per slot, a description of each pair of bookings that overlap: two active ones,
    or two whose periods [start_time, end_time) overlap, cancelled and declined ones
    aside (they end before their end_time)."""
    by_slot: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for b in bookings:
        by_slot[b["slot_id"]].append(b)
    found = []
    for slot, items in by_slot.items():
        active = [b["id"] for b in items if b["status"] == "active"]
        if len(active) > 1:
            found.append(f"slot {slot}: {len(active)} active bookings {active}")
            continue
        held = sorted(
            (b for b in items if b["status"] not in ("cancelled", "declined")),
            key=lambda b: _when(b["start_time"]),
        )
        for a, b in itertools.pairwise(held):
            if _when(b["start_time"]) < _when(a["end_time"]):
                found.append(
                    f"slot {slot}: {a['id']} ({a['start_time']} to {a['end_time']}) overlaps "
                    f"{b['id']} (from {b['start_time']})"
                )
    return found


async def all_bookings(http: httpx.AsyncClient, owner: str, lot_ids: list[str]) -> list[dict]:
    """Every booking of `lot_ids` as the owner sees them (GET /api/v1/bookings, all pages)."""
    wanted = set(lot_ids)
    items, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 200} | ({"cursor": cursor} if cursor else {})
        r = await http.get(
            "/api/v1/bookings", params=params, headers={"Authorization": f"Bearer {owner}"}
        )
        if r.status_code != 200:
            raise BenchmarkError(f"listing bookings refused: {r.status_code} {r.text[:300]}")
        page = r.json()
        items += [b for b in page["items"] if b["lot_id"] in wanted]
        cursor = page["next_cursor"]
        if not cursor:
            return items


# ----- the run -----


@contextlib.asynccontextmanager
async def parkmate(options: Options) -> AsyncIterator[tuple[str, str | None, str | None]]:
    """(base URL, NATS URL or None, why no NATS URL): `options.url`'s, or a `parkmate
    dev`'s of its own."""
    if options.url:
        url = options.url.rstrip("/")
        if options.nats_url:
            yield url, options.nats_url, None
            return
        try:
            table = processes.read(options.processes)
        except ValueError as e:
            yield url, None, str(e)
            return
        if table is None:
            yield url, None, f"no --nats-url and no process list at {options.processes}"
        elif not same_api(table.url, url):
            yield url, None, f"{options.processes} describes {table.url}; give --nats-url"
        else:
            yield url, table.nats_url, None
        return
    with tempfile.TemporaryDirectory(prefix="parkmate-bookings-") as tmp:
        dev = DevServer(Path(tmp))
        try:
            url = await dev.start()
            table = processes.read(Path(tmp) / "state" / processes.FILE_NAME)
            yield url, table.nats_url if table else None, "parkmate dev wrote no process list"
        finally:
            await asyncio.to_thread(dev.stop)


async def run(options: Options) -> Result:
    """The whole benchmark; raises BenchmarkError when a set-up request is refused."""
    if options.rate <= 0 or options.seconds <= 0 or options.contention < 1:
        raise BenchmarkError("--rate and --seconds must be positive, --contention at least 1")
    slot_count = max(1, math.ceil(options.rate * options.seconds / options.contention))
    async with (
        parkmate(options) as (url, nats_url, no_nats),
        httpx.AsyncClient(base_url=url, timeout=120) as http,
        contextlib.AsyncExitStack() as stack,
    ):
        result = Result(
            url=url,
            rate=options.rate,
            seconds=options.seconds,
            contention=options.contention,
            renew_after=options.renew_after,
            booking_seconds=options.booking_seconds,
        )
        admin = await login(http, options.admin_email, options.admin_password)
        # One NATS connection for the wait before the load and the lag after it.
        nc = await nats.connect(nats_url, connect_timeout=5) if nats_url else None
        js = nc.jetstream() if nc is not None else None
        if nc is not None:
            stack.push_async_callback(nc.close)
        registered_before = await registered_events(js) if js else 0
        (owner,) = await create_accounts(http, admin, "owner", 1, ["owner"])
        drivers = await create_accounts(
            http, admin, "driver", slot_count * options.contention, ["driver"]
        )
        lot_ids, slots = await create_lots(http, owner["token"], slot_count, options)
        result.lots, result.slots, result.drivers = len(lot_ids), len(slots), len(drivers)
        progress(options, f"{len(drivers):,} drivers, {len(slots):,} slots in {len(lot_ids)} lots")
        if js is not None:
            accounts = registered_before + len(drivers) + 1
            result.setup_settled_seconds, result.setup_lag_at_load = await settle(
                js, accounts, SETTLE_WITHIN
            )
            progress(options, result.settled_line())
        session = await stack.enter_async_context(
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=CONNECTIONS, limit_per_host=0),
                timeout=aiohttp.ClientTimeout(total=60),
            )
        )
        load = Load(session, url, options)
        cpu_before = time.process_time()
        await load.run(slots, drivers)
        result.client_cpu_seconds = time.process_time() - cpu_before
        progress(options, "every request answered; reading the consumers and the bookings")
        if js is not None:
            result.consumers = await consumer_lag(js)
        else:
            result.consumers_not_measured = no_nats
        result.creates, result.renewals = load.outcomes("create"), load.outcomes("renew")
        result.launch_lag_ms_max = load.launch_lag * 1000
        result.client_in_flight_max = load.in_flight_max
        result.offered_creates_per_second = load.sent["create"] / options.seconds
        first = load.first_launch
        if first is not None and load.last_create_answer and load.last_create_answer > first:
            result.creates_per_second = load.statuses["create"]["201"] / (
                load.last_create_answer - first
            )
        result.races = load.races()
        listed = await all_bookings(http, owner["token"], lot_ids)
        result.bookings_checked = len(listed)
        # A renewal after its booking ended makes a new booking (`renewed_from`) answered
        # 200 to the renewal: not a create's.
        created = [b for b in listed if not b.get("renewed_from")]
        result.bookings_without_201 = len(created) - load.statuses["create"]["201"]
        found = double_bookings(listed)
        result.double_bookings = len(found)
        result.double_booking_examples = found[:5]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--url", help="a running Parkmate (default: start parkmate dev)")
    parser.add_argument("--rate", type=float, default=50.0, help="create requests per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the load")
    parser.add_argument("--contention", type=int, default=1, help="drivers racing per slot")
    parser.add_argument("--renew-after", type=float, default=5.0, help="s after a 201")
    parser.add_argument("--booking-seconds", type=int, default=30)
    parser.add_argument("--warning-seconds", type=int, default=10)
    parser.add_argument("--admin-email", default="admin@example.com")
    parser.add_argument("--admin-password", default="parkmate")
    parser.add_argument(
        "--processes",
        type=Path,
        default=processes.DEFAULT_PATH,
        help="parkmate dev's process list, for the NATS URL",
    )
    parser.add_argument("--nats-url", help="NATS of the system under test (consumer lag)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--check", action="store_true", help="exit 1 on a double booking")
    args = parser.parse_args()
    options = Options(
        url=args.url,
        rate=args.rate,
        seconds=args.seconds,
        contention=args.contention,
        renew_after=args.renew_after,
        booking_seconds=args.booking_seconds,
        warning_seconds=args.warning_seconds,
        admin_email=args.admin_email,
        admin_password=args.admin_password,
        processes=args.processes,
        nats_url=args.nats_url,
    )
    try:
        result = asyncio.run(run(options))
    except BenchmarkError as e:
        sys.exit(f"bookings: {e}")
    print("\n".join(result.lines()), flush=True)
    if args.json:
        args.json.write_text(json.dumps(dataclasses.asdict(result), indent=2) + "\n")
    if args.check and result.failures():
        sys.exit(1)


if __name__ == "__main__":
    main()

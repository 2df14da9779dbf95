"""A rolling update loses nothing (issue 11, point 4; docs/operations.md, "Rolling
restarts").

While drivers book, renew and let short bookings expire, and every driver and the lot's
owner keep a WebSocket open, each service is restarted the way Kubernetes rolls a
Deployment with maxSurge 1 and maxUnavailable 0 (deploy/k8s): a new process starts and
is ready, then the old one gets SIGTERM and its grace period, and must drain and exit 0.
timers is restarted in place instead (SIGTERM, exit, new process), since the NATS server
fires its schedules meanwhile. The api's replicas sit behind `Replicas`, a stand-in for
the Service that routes by /readyz; the old api's sockets must be closed with 1001 and
resume on the new one.

Then: every booking expired once, at or after its end; each driver's inbox has exactly
one booking.created, booking.renewed (if renewed), booking.expired, and one
booking.expiring per period that was not renewed before its warning; the owner one
booking.created and booking.expired per booking; every seq once, no gap; each socket
received exactly its user's inbox; nothing came before it was due, and warnings and
expiries were at most P99_LIMIT late at p99, both as stored (the notification's and the
booking's timestamps) and as received on the sockets.
"""

import asyncio
import statistics
import time
from collections import Counter

import pytest
import sqlalchemy as sa

from services.runtime.db import make_engine
from tests.faults.harness import Harness
from tests.faults.load import Driver, Replicas, Watcher, timestamp
from tests.support import eventually

pytestmark = pytest.mark.faults

DRIVERS = 16
BOOKING_SECONDS = 8
WARNING_SECONDS = 3
RENEW_AFTER = 1.0  # seconds into a booking its driver renews it: before the warning
DRAIN_SECONDS = 2  # the api's drain in this test (10 in deploy/k8s)
GRACE_SECONDS = 45  # terminationGracePeriodSeconds in deploy/k8s
LOAD_BETWEEN_ROLLS = 3.0  # seconds of load before, between and after the restarts
P99_LIMIT = 1.0
PASSWORD = "secret-pw"


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


async def _setup(h: Harness, replicas: Replicas) -> tuple[str, str, list[tuple[str, str]]]:
    """(owner token, owner id, [(driver token, slot id)]) of a new lot with one slot per
    driver."""
    await asyncio.to_thread(h.create_admin, "admin@example.com", PASSWORD)

    async def login(email: str) -> str:
        r = await replicas.request(
            "POST", "/auth/login", None, json={"email": email, "password": PASSWORD}
        )
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    admin = await login("admin@example.com")
    r = await replicas.request(
        "POST",
        "/admin/users",
        admin,
        json={
            "email": "owner@example.com",
            "password": PASSWORD,
            "full_name": "Owner",
            "roles": ["owner"],
        },
    )
    assert r.status_code == 201, r.text
    owner_id = r.json()["id"]
    owner = await login("owner@example.com")
    r = await replicas.request(
        "POST",
        "/lots",
        owner,
        json={
            "name": "Rolling Park",
            "address": "1 Restart Rd",
            "slot_count": DRIVERS,
            "booking_seconds": BOOKING_SECONDS,
            "warning_seconds": WARNING_SECONDS,
            "price_per_hour": {"amount": "2.40", "currency": "EUR"},
        },
    )
    assert r.status_code == 201, r.text
    slots = [s["id"] for s in r.json()["slots"]]
    drivers = []
    for i, slot in enumerate(slots):
        email = f"driver{i}@example.com"
        body = {"email": email, "password": PASSWORD, "full_name": f"Driver {i}"}
        r = await replicas.request("POST", "/auth/register", None, json=body)
        assert r.status_code == 201, r.text
        drivers.append((await login(email), slot))
    return owner, owner_id, drivers


async def _roll(h: Harness, replicas: Replicas) -> list[str]:
    """Restart every service once, with load running between; returns what was done."""
    done = []

    async def surge(service: str) -> None:
        new = await h.start_service(service, name=f"{service}-2")
        if service == "api":
            replicas.add(new.port)
            await eventually(lambda: replicas.ready.get(new.port), timeout=10)
        code = await asyncio.to_thread(h.terminate, service, GRACE_SECONDS)
        assert code == 0, f"{service} did not drain cleanly: {h.instances[service].log_tail()}"
        done.append(f"{service}: new process ready, then SIGTERM to the old one")

    await asyncio.sleep(LOAD_BETWEEN_ROLLS)  # on purpose: load runs between restarts
    await surge("bookings")
    await asyncio.sleep(LOAD_BETWEEN_ROLLS)
    fault = await h.restart("timers", hard=False, grace=GRACE_SECONDS)
    assert fault.extra["exit_code"] == 0, h.instances["timers"].log_tail()
    done.append(f"timers: SIGTERM, then a new process ({fault.outage:.1f} s without one)")
    await asyncio.sleep(LOAD_BETWEEN_ROLLS)
    await surge("notifier")
    await asyncio.sleep(LOAD_BETWEEN_ROLLS)
    await surge("api")
    await asyncio.sleep(LOAD_BETWEEN_ROLLS)
    return done


async def _inbox(database_url: str) -> dict[str, list[dict]]:
    """user id -> their notifications (seq, type, data, created_at as a timestamp)."""
    engine = make_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.text(
                        "SELECT user_id, seq, type, data, created_at FROM notifier.notifications "
                        "ORDER BY user_id, seq"
                    )
                )
            ).all()
            bookings = (
                await conn.execute(
                    sa.text("SELECT id, status, end_time, updated_at FROM bookings.bookings")
                )
            ).all()
    finally:
        await engine.dispose()
    inbox: dict[str, list[dict]] = {}
    for user_id, seq, type_, data, created_at in rows:
        inbox.setdefault(str(user_id), []).append(
            {"seq": seq, "type": type_, "data": data, "created_at": created_at.timestamp()}
        )
    inbox["_bookings"] = [
        {"id": str(i), "status": s, "end": e.timestamp(), "updated_at": u.timestamp()}
        for i, s, e, u in bookings
    ]
    return inbox


async def test_a_rolling_restart_of_every_service_loses_nothing(tmp_path):
    h = Harness(tmp_path, env={"PARKMATE_DRAIN_SECONDS": str(DRAIN_SECONDS)})
    replicas = Replicas([h.api_port])
    watchers: list[Watcher] = []
    try:
        await h.start()
        await replicas.start()
        owner_token, owner_id, people = await _setup(h, replicas)
        owner = Watcher(replicas, owner_token)
        drivers = [Driver(replicas, t, slot, Watcher(replicas, t)) for t, slot in people]
        watchers = [owner, *(d.watcher for d in drivers)]
        for w in watchers:
            await w.start()

        stop = asyncio.Event()
        started = time.monotonic()
        load = [
            asyncio.create_task(d.run(stop, RENEW_AFTER, expiry_timeout=2 * BOOKING_SECONDS + 10))
            for d in drivers
        ]
        rolled = asyncio.create_task(_roll(h, replicas))
        # Drivers run until the restarts are done; one failing ends the test at once.
        await asyncio.wait([rolled, *load], return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        for task in load:
            if task.done():
                rolled.cancel()
                task.result()
        done = await rolled  # raises what a restart found
        await asyncio.gather(*load)
        load_seconds = time.monotonic() - started
        await h.drained(timeout=30)

        # Every socket ends up with exactly its user's inbox.
        state = await _inbox(h.database_url)
        users = {owner_id: owner}
        me = {}
        for d in drivers:
            r = await replicas.request("GET", "/me", d.watcher.token)
            me[r.json()["id"]] = d
            users[r.json()["id"]] = d.watcher

        def sockets_caught_up() -> bool:
            return all(
                len(w.received) >= len(state.get(user_id, [])) for user_id, w in users.items()
            )

        await eventually(sockets_caught_up, timeout=15)
        for w in watchers:
            await w.stop()
    finally:
        await replicas.close()
        for w in watchers:
            if not w.stopping:
                w.stopping = True
        codes = await h.close()
    assert all(code == 0 for code in codes.values()), codes

    # The api's restart closed every socket once, with 1001, and each resumed.
    for w in watchers:
        assert w.closes == [1001], w.closes

    # Each booking exactly once in the database, expired, never before its end.
    booked = {b.id: b for d in drivers for b in d.bookings}
    rows = {b["id"]: b for b in state["_bookings"]}
    assert set(rows) == set(booked), "a booking lost or doubled"
    late = {"warning": [], "expiry": []}
    received_late = {"warning": [], "expiry": []}
    for booking_id, b in booked.items():
        row = rows[booking_id]
        assert row["status"] == "expired", row
        assert row["end"] == pytest.approx(b.ends[-1], abs=1e-3)
        assert row["updated_at"] >= row["end"], f"{booking_id} expired early"

    # Each inbox: every seq once, no gap, and exactly the expected notifications.
    for user_id, notes in ((u, state.get(u, [])) for u in users):
        assert [n["seq"] for n in notes] == list(range(1, len(notes) + 1)), user_id
    owner_counts = Counter((n["type"], n["data"]["booking_id"]) for n in state[owner_id])
    for booking_id in booked:
        assert owner_counts[("booking.created", booking_id)] == 1
        assert owner_counts[("booking.expired", booking_id)] == 1
    for user_id, d in me.items():
        notes = state[user_id]
        counts = Counter((n["type"], n["data"]["booking_id"]) for n in notes)
        assert sum(counts.values()) == len(notes)
        mine = {b.id for b in d.bookings}
        assert {booking_id for _, booking_id in counts} == mine
        for b in d.bookings:
            assert counts[("booking.created", b.id)] == 1
            assert counts[("booking.renewed", b.id)] == int(b.renewed)
            assert counts[("booking.expired", b.id)] == 1
            warned = [n for n in notes if n["type"] == "booking.expiring" and _of(n, b.id)]
            periods = [timestamp(n["data"]["end_time"]) for n in warned]
            assert len(set(periods)) == len(periods), f"a period of {b.id} warned twice"
            assert any(p == pytest.approx(b.ends[-1], abs=1e-3) for p in periods), b
            for n, end in zip(warned, periods, strict=True):
                due = end - WARNING_SECONDS
                assert n["created_at"] >= due, f"warning of {b.id} early"
                late["warning"].append(n["created_at"] - due)
            (expired,) = [n for n in notes if n["type"] == "booking.expired" and _of(n, b.id)]
            assert timestamp(expired["data"]["end_time"]) == pytest.approx(b.ends[-1], abs=1e-3)
            assert expired["created_at"] >= b.ends[-1], f"expiry of {b.id} early"
            late["expiry"].append(expired["created_at"] - b.ends[-1])

        # The socket got exactly the inbox: each seq once, nothing else.
        got = Counter(r.notification["seq"] for r in d.watcher.received)
        assert got == Counter(n["seq"] for n in notes), user_id
        for r in d.watcher.received:
            n = r.notification
            if n["type"] == "booking.expiring":
                due = timestamp(n["data"]["end_time"]) - WARNING_SECONDS
                kind = "warning"
            elif n["type"] == "booking.expired":
                due, kind = timestamp(n["data"]["end_time"]), "expiry"
            else:
                continue
            assert r.at >= due, f"{n['type']} received early"
            received_late[kind].append(r.at - due)
    got = Counter(r.notification["seq"] for r in owner.received)
    assert got == Counter(n["seq"] for n in state[owner_id])

    figures = {
        f"{how} {kind}": (len(values), p99(values), max(values))
        for how, table in (("stored", late), ("received", received_late))
        for kind, values in table.items()
    }
    print(
        f"\nrolling restart: {len(booked)} bookings "
        f"({sum(b.renewed for b in booked.values())} renewed) in {load_seconds:.0f} s of load, "
        f"{replicas.retries} requests retried; {'; '.join(done)}"
    )
    for name, (count, q99, worst) in figures.items():
        print(f"  {name} lateness: n={count} p99={q99 * 1000:.0f} ms max={worst * 1000:.0f} ms")
    for name, (_, q99, _) in figures.items():
        assert q99 < P99_LIMIT, f"{name} lateness p99 {q99:.3f} s"


def _of(notification: dict, booking_id: str) -> bool:
    return notification["data"]["booking_id"] == booking_id

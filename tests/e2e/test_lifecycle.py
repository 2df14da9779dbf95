"""End to end: a driver books, is warned, and the booking ends on the server, each step
arriving on the driver's socket; also with the timers process stopped."""

import asyncio
import json
import time

import pytest

from tests.e2e.conftest import System, auth

pytestmark = pytest.mark.e2e


async def setup_lot(system: System, http, booking_seconds=6, warning_seconds=3, slots=1):
    system.admin()
    login = await http.post(
        "/auth/login", json={"email": "admin@example.com", "password": "secret-pw"}
    )
    admin_token = login.json()["access_token"]
    _, owner = await system.user(http, "owner@example.com", ["owner"], admin_token)
    r = await http.post(
        "/lots",
        headers=auth(owner),
        json={
            "name": "Quick Park",
            "address": "1 Test Street",
            "slot_count": slots,
            "booking_seconds": booking_seconds,
            "warning_seconds": warning_seconds,
            "price_per_hour": {"amount": "3.60", "currency": "EUR"},
        },
    )
    assert r.status_code == 201, r.text
    return r.json(), owner


async def frames(ws, count: int, timeout: float) -> list[tuple[float, dict]]:
    """The next `count` notification frames with their arrival times (other frames, such
    as unread_count, are skipped)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        raw = await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic()))
        frame = json.loads(raw)
        if frame["type"] == "notification":
            out.append((time.monotonic(), frame))
        elif frame["type"] == "ping":
            await ws.send(json.dumps({"type": "pong"}))
    return out


async def book_and_watch(system: System, stop_timers: bool = False):
    async with system.http() as http:
        lot, owner = await setup_lot(system, http)
        driver_id, driver = await system.user(http, "driver@example.com")
        ws = await system.socket(driver)
        owner_ws = await system.socket(owner)
        t0 = time.monotonic()
        r = await http.post(
            "/bookings",
            headers=auth(driver) | {"Idempotency-Key": "b-1"},
            json={"slot_id": lot["slots"][0]["id"]},
        )
        assert r.status_code == 201, r.text
        booking = r.json()
        assert booking["status"] == "active" and booking["remaining_seconds"] == 6
        assert booking["price"] == {"amount": "0.01", "currency": "EUR"}  # 3.60/h for 6 s
        got = await frames(ws, 1, 5)
        if stop_timers:
            # timers acks booking.created once its schedules are on TIMERS.
            await system.consumer_caught_up("EVENTS", "timers")
            assert system.stop("timers") == 0
        got += await frames(ws, 2, 10)
        (owner_note,) = await frames(owner_ws, 1, 5)
        slots = (await http.get(f"/lots/{lot['id']}/slots", headers=auth(driver))).json()
        after = (await http.get(f"/bookings/{booking['id']}", headers=auth(driver))).json()
        await ws.close()
        await owner_ws.close()
    return t0, got, owner_note, slots, after, booking, driver_id


def check(t0, got, owner_note, slots, after, booking):
    kinds = [f["notification"]["type"] for _, f in got]
    assert kinds == ["booking.created", "booking.expiring", "booking.expired"]
    assert [f["notification"]["seq"] for _, f in got] == [1, 2, 3]
    created, warning, expired = (t - t0 for t, _ in got)
    assert created < 2
    assert 2.5 <= warning <= 5.0, warning  # warning_seconds=3 before the end
    assert 5.5 <= expired <= 8.0, expired  # booking_seconds=6
    assert got[1][1]["notification"]["level"] == "warning"
    assert got[1][1]["notification"]["data"]["booking_id"] == booking["id"]
    assert "renew" in got[1][1]["notification"]["body"]
    assert owner_note[1]["notification"]["title"] == "New booking"
    assert slots[0]["status"] == "free" and slots[0]["booked_until"] is None
    assert after["status"] == "expired" and after["remaining_seconds"] == 0


async def test_driver_is_confirmed_warned_and_expired_on_time(system):
    t0, got, owner_note, slots, after, booking, _ = await book_and_watch(system)
    check(t0, got, owner_note, slots, after, booking)


async def test_warning_and_expiry_arrive_with_the_timers_process_stopped(system):
    t0, got, owner_note, slots, after, booking, _ = await book_and_watch(system, stop_timers=True)
    check(t0, got, owner_note, slots, after, booking)


async def test_twenty_drivers_racing_for_one_slot_get_one_booking(system):
    async with system.http() as http:
        lot, _ = await setup_lot(system, http, booking_seconds=600, warning_seconds=60)
        tokens = [(await system.user(http, f"racer{i}@example.com"))[1] for i in range(20)]
        results = await asyncio.gather(
            *(
                http.post("/bookings", headers=auth(t), json={"slot_id": lot["slots"][0]["id"]})
                for t in tokens
            )
        )
        codes = sorted(r.status_code for r in results)
        assert codes == [201] + [409] * 19
        for r in results:
            if r.status_code == 409:
                assert (
                    r.json()["extra"]["booked_until"] and "pick a free slot" in r.json()["detail"]
                )
        lot_now = (await http.get(f"/lots/{lot['id']}", headers=auth(tokens[0]))).json()
        assert lot_now["free_slots"] == 0 and lot_now["total_slots"] == 1

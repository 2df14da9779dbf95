"""End to end: every parking flow of drivers, owners, employees and admins through HTTP
and WebSocket, each of the ten events on its recipients' sockets and in their inboxes,
never on a bystander's, and the authorization matrix over the real routes."""

import asyncio
import time
from dataclasses import dataclass

import pytest

from tests.e2e.conftest import System
from tests.e2e.people import Person, make_person

pytestmark = pytest.mark.e2e


@dataclass
class Cast:
    admin: Person
    owner: Person
    other_owner: Person
    employee: Person
    other_employee: Person
    driver: Person
    other_driver: Person
    bystander: Person
    lot: dict
    other_lot: dict

    def everyone(self) -> list[Person]:
        return [
            self.admin,
            self.owner,
            self.other_owner,
            self.employee,
            self.other_employee,
            self.driver,
            self.other_driver,
            self.bystander,
        ]


async def make_cast(system: System, http, **lot_settings) -> Cast:
    system.admin()
    login = await http.post(
        "/auth/login", json={"email": "admin@example.com", "password": "secret-pw"}
    )
    body = login.json()
    admin = await Person("admin", "", body["access_token"], system.port).connect()
    admin.id = (await http.get("/me", headers=admin.auth)).json()["id"]
    owner = await make_person(system, http, "owner", ["owner"], admin)
    other_owner = await make_person(system, http, "owner2", ["owner"], admin)
    employee = await make_person(system, http, "employee", ["employee"], admin)
    other_employee = await make_person(system, http, "employee2", ["employee"], admin)
    driver = await make_person(system, http, "driver", None)
    other_driver = await make_person(system, http, "driver2", None)
    bystander = await make_person(system, http, "bystander", None)
    settings = {
        "booking_seconds": 600,
        "warning_seconds": 60,
        "price_per_hour": {"amount": "2.40", "currency": "EUR"},
        "carwash_price": {"amount": "5.00", "currency": "EUR"},
    } | lot_settings
    lot = (
        await http.post(
            "/lots",
            headers=owner.auth,
            json={
                "name": "Main Street",
                "address": "1 Main St",
                "slot_labels": ["A1", "A2", "A3"],
                **settings,
            },
        )
    ).json()
    other_lot = (
        await http.post(
            "/lots",
            headers=other_owner.auth,
            json={"name": "Other Park", "address": "9 Side St", "slot_count": 2, **settings},
        )
    ).json()
    for boss, worker, where in ((owner, employee, lot), (other_owner, other_employee, other_lot)):
        r = await http.post(
            f"/lots/{where['id']}/staff", headers=boss.auth, json={"user_id": worker.id}
        )
        assert r.status_code == 201, r.text
    return Cast(
        admin,
        owner,
        other_owner,
        employee,
        other_employee,
        driver,
        other_driver,
        bystander,
        lot,
        other_lot,
    )


async def close_all(cast: Cast) -> None:
    for p in cast.everyone():
        await p.close()


async def book(http, who: Person, slot: dict, **extra) -> dict:
    r = await http.post("/bookings", headers=who.auth, json={"slot_id": slot["id"], **extra})
    assert r.status_code == 201, r.text
    return r.json()


async def test_staff_vehicles_booking_payment_carwash_renew_and_decline(system):
    async with system.http() as http:
        c = await make_cast(system, http)
        # 10: staff.assigned reaches the lot owner and the employee.
        n = await c.employee.wait_for("staff.assigned", lot_id=c.lot["id"])
        assert n["level"] == "info"
        await c.owner.wait_for("staff.assigned", lot_id=c.lot["id"])
        staff = (await http.get(f"/lots/{c.lot['id']}/staff", headers=c.employee.auth)).json()
        assert [s["user_id"] for s in staff["items"]] == [c.employee.id]
        not_employee = await http.post(
            f"/lots/{c.lot['id']}/staff", headers=c.owner.auth, json={"user_id": c.driver.id}
        )
        assert not_employee.status_code == 400 and "employee" in not_employee.json()["detail"]
        again = await http.post(
            f"/lots/{c.lot['id']}/staff", headers=c.owner.auth, json={"user_id": c.employee.id}
        )
        assert again.status_code == 409

        # Vehicles: normalised, unique per driver, private.
        v = await http.post(
            "/vehicles", headers=c.driver.auth, json={"plate": "ab-12 cd", "label": "Blue car"}
        )
        assert v.status_code == 201 and v.json()["plate"] == "AB12CD"
        dup = await http.post("/vehicles", headers=c.driver.auth, json={"plate": "AB12CD"})
        assert dup.status_code == 409
        vehicle = v.json()
        stolen = await http.post(
            "/bookings",
            headers=c.other_driver.auth,
            json={"slot_id": c.lot["slots"][0]["id"], "vehicle_id": vehicle["id"]},
        )
        assert stolen.status_code == 404
        assert (await http.get("/vehicles", headers=c.other_driver.auth)).json()["items"] == []

        # 8: booking.created: the driver is confirmed, the lot owner hears of it.
        b = await book(http, c.driver, c.lot["slots"][0], vehicle_id=vehicle["id"])
        assert b["vehicle_id"] == vehicle["id"] and b["price"]["amount"] == "0.40"
        assert b["payment"] == {
            "method": "cash",
            "status": "pending",
            "amount": {"amount": "0.40", "currency": "EUR"},
        }
        n = await c.driver.wait_for("booking.created", booking_id=b["id"])
        assert n["level"] == "success"
        n = await c.owner.wait_for("booking.created", booking_id=b["id"])
        assert n["level"] == "info"

        # 7: payment.verified by the lot's employee; other lots' staff cannot see it.
        url = f"/bookings/{b['id']}"
        assert (
            await http.post(url + "/payment/verify", headers=c.other_employee.auth)
        ).status_code == 404
        assert (await http.post(url + "/payment/verify", headers=c.driver.auth)).status_code == 403
        r = await http.post(url + "/payment/verify", headers=c.employee.auth)
        assert r.status_code == 200 and r.json()["payment"]["status"] == "verified"
        assert (
            await http.post(url + "/payment/verify", headers=c.employee.auth)
        ).status_code == 409
        n = await c.driver.wait_for("payment.verified", booking_id=b["id"])
        assert n["level"] == "success"

        # Car wash: requested (staff and owner hear it), started, 9: completed (driver).
        r = await http.post(url + "/carwash", headers=c.driver.auth)
        assert r.status_code == 201 and r.json()["status"] == "requested"
        order = r.json()
        await c.employee.wait_for("carwash.requested", order_id=order["id"])
        await c.owner.wait_for("carwash.requested", order_id=order["id"])
        wash = f"/carwash/{order['id']}"
        assert (await http.post(wash + "/start", headers=c.other_employee.auth)).status_code == 404
        assert (await http.post(wash + "/start", headers=c.driver.auth)).status_code == 403
        assert (await http.post(wash + "/complete", headers=c.employee.auth)).status_code == 409
        assert (await http.post(wash + "/start", headers=c.employee.auth)).json()[
            "status"
        ] == "in_progress"
        assert (await http.post(wash + "/complete", headers=c.owner.auth)).json()[
            "status"
        ] == "completed"
        n = await c.driver.wait_for("carwash.completed", order_id=order["id"])
        assert n["level"] == "success" and n["data"]["booking_id"] == b["id"]
        assert (await http.get(url, headers=c.driver.auth)).json()["carwash"] == {
            "id": order["id"],
            "status": "completed",
        }

        # 3: booking.renewed: the same booking, a later end.
        r = await http.post(url + "/renew", headers=c.driver.auth)
        assert r.status_code == 200, r.text
        renewed = r.json()
        assert renewed["id"] == b["id"] and renewed["renewals"] == 1
        assert renewed["price"]["amount"] == "0.80"
        assert _seconds_between(b["end_time"], renewed["end_time"]) == 600
        await c.driver.wait_for("booking.renewed", booking_id=b["id"])

        # 6: booking.declined with a reason; only the owner or an admin may.
        assert (
            await http.post(url + "/decline", headers=c.employee.auth, json={"reason": "x"})
        ).status_code == 403
        assert (
            await http.post(url + "/decline", headers=c.other_owner.auth, json={"reason": "x"})
        ).status_code == 404
        r = await http.post(
            url + "/decline", headers=c.owner.auth, json={"reason": "the lot closes for repairs"}
        )
        assert r.status_code == 200 and r.json()["status"] == "declined"
        n = await c.driver.wait_for("booking.declined", booking_id=b["id"])
        assert n["level"] == "warning" and "repairs" in n["body"]
        assert n["data"]["reason"] == "the lot closes for repairs"
        slots = (await http.get(f"/lots/{c.lot['id']}/slots", headers=c.driver.auth)).json()
        assert slots[0]["status"] == "free"

        await system.notifier_caught_up()
        assert c.bystander.notifications() == [] and await c.bystander.inbox() == []
        inbox = await c.driver.inbox()
        assert [x["type"] for x in inbox] == [
            "booking.created",
            "payment.verified",
            "carwash.completed",
            "booking.renewed",
            "booking.declined",
        ]
        assert [x["seq"] for x in inbox] == [1, 2, 3, 4, 5]
        assert {x["type"] for x in await c.employee.inbox()} == {
            "staff.assigned",
            "carwash.requested",
        }
        assert [x["type"] for x in await c.bystander.inbox()] == []
        await close_all(c)


def _seconds_between(a: str, b: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


async def test_cancel_online_payments_and_live_slot_updates(system):
    async with system.http() as http:
        c = await make_cast(system, http)
        await c.owner.send({"type": "subscribe", "topic": f"lot.{c.lot['id']}"})
        await c.bystander.send({"type": "subscribe", "topic": "lot.nonsense"})
        assert (await c.bystander.wait_frame("error"))["code"] == "bad_topic"
        await c.owner.handled()  # subscribed before the slots change
        slot = c.lot["slots"][1]

        # payment.failed: a declined token makes no booking and tells the driver.
        r = await http.post(
            "/bookings",
            headers=c.other_driver.auth,
            json={
                "slot_id": slot["id"],
                "payment_method": "online",
                "payment_token": "tok_decline_x",
            },
        )
        assert r.status_code == 402 and "declined" in r.json()["detail"]
        n = await c.other_driver.wait_for("payment.failed", slot_id=slot["id"])
        assert n["level"] == "error" and n["data"]["booking_id"] is None

        b = await book(
            http, c.other_driver, slot, payment_method="online", payment_token="tok_visa"
        )
        assert b["payment"]["status"] == "paid"
        update = await c.owner.wait_frame("slot_update", slot_id=slot["id"], status="booked")
        assert update["lot_id"] == c.lot["id"] and update["booked_until"] == b["end_time"]
        assert "user_id" not in update

        # Cancel: only its driver; the owner hears it; the slot is free at once.
        url = f"/bookings/{b['id']}"
        assert (await http.post(url + "/cancel", headers=c.driver.auth)).status_code == 404
        assert (await http.post(url + "/cancel", headers=c.owner.auth)).status_code == 403
        r = await http.post(url + "/cancel", headers=c.other_driver.auth)
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        assert (await http.post(url + "/cancel", headers=c.other_driver.auth)).status_code == 409
        await c.owner.wait_for("booking.cancelled", booking_id=b["id"])
        await c.owner.wait_frame("slot_update", slot_id=slot["id"], status="free")

        # Decline of an online booking refunds it.
        b2 = await book(http, c.driver, slot, payment_method="online")
        r = await http.post(
            f"/bookings/{b2['id']}/decline", headers=c.admin.auth, json={"reason": "maintenance"}
        )
        assert r.json()["payment"]["status"] == "refunded"
        await c.driver.wait_for("booking.declined", booking_id=b2["id"])

        # A lot without car wash, and a wash on a finished booking, are refused.
        r = await http.post(f"/bookings/{b2['id']}/carwash", headers=c.driver.auth)
        assert r.status_code == 409
        await system.notifier_caught_up()
        assert c.bystander.notifications() == [] and await c.bystander.inbox() == []
        await close_all(c)


async def test_expiry_owner_note_renewal_failed_and_renewal_after_expiry(system):
    async with system.http() as http:
        c = await make_cast(system, http, booking_seconds=3, warning_seconds=1)
        b = await book(http, c.driver, c.lot["slots"][0])
        # 1: booking.expiring, 2/5: booking.expired (driver; owner, low priority).
        n = await c.driver.wait_for("booking.expiring", booking_id=b["id"])
        assert n["level"] == "warning" and f"/bookings/{b['id']}/renew" in n["body"]
        n = await c.driver.wait_for("booking.expired", booking_id=b["id"])
        assert n["level"] == "info"
        n = await c.owner.wait_for("booking.expired", booking_id=b["id"])
        assert n["priority"] == "low"
        # Renewal after expiry, within the grace: a new booking from now.
        r = await http.post(f"/bookings/{b['id']}/renew", headers=c.driver.auth)
        assert r.status_code == 200, r.text
        fresh = r.json()
        assert fresh["id"] != b["id"] and fresh["renewed_from"] == b["id"]
        assert fresh["status"] == "active" and fresh["renewals"] == 1
        n = await c.driver.wait_for("booking.renewed", booking_id=fresh["id"])
        assert n["data"]["renewed_from"] == b["id"]
        # 4: booking.renewal_failed, with the reason: the lot caps renewals now.
        r = await http.patch(f"/lots/{c.lot['id']}", headers=c.owner.auth, json={"max_renewals": 1})
        assert r.status_code == 200 and r.json()["max_renewals"] == 1
        r = await http.post(f"/bookings/{fresh['id']}/renew", headers=c.driver.auth)
        assert r.status_code == 409 and "at most 1 renewals" in r.json()["detail"]
        n = await c.driver.wait_for("booking.renewal_failed", booking_id=fresh["id"])
        assert n["level"] == "error" and "at most 1" in n["body"]
        await system.notifier_caught_up()
        assert c.bystander.notifications() == [] and await c.bystander.inbox() == []
        await close_all(c)


async def test_lot_management_and_slot_removal(system):
    async with system.http() as http:
        c = await make_cast(system, http)
        url = f"/lots/{c.lot['id']}"
        r = await http.patch(
            url, headers=c.owner.auth, json={"name": "Main Street North", "carwash_price": None}
        )
        assert r.status_code == 200
        assert r.json()["name"] == "Main Street North" and r.json()["carwash_price"] is None
        assert (
            await http.patch(url, headers=c.other_owner.auth, json={"name": "x"})
        ).status_code == 403
        assert (
            await http.patch(url, headers=c.admin.auth, json={"warning_seconds": 600})
        ).status_code == 400
        r = await http.post(url + "/slots", headers=c.owner.auth, json={"count": 2})
        assert r.status_code == 201 and [s["label"] for s in r.json()] == ["4", "5"]
        assert (
            await http.post(url + "/slots", headers=c.owner.auth, json={"slot_labels": ["A1"]})
        ).status_code == 409
        b = await book(http, c.driver, c.lot["slots"][0])
        r = await http.delete(f"{url}/slots/{c.lot['slots'][0]['id']}", headers=c.owner.auth)
        assert r.status_code == 409 and r.json()["extra"]["booked_until"] == b["end_time"]
        assert (
            await http.delete(f"{url}/slots/{c.lot['slots'][1]['id']}", headers=c.employee.auth)
        ).status_code == 403
        r = await http.delete(f"{url}/slots/{c.lot['slots'][1]['id']}", headers=c.owner.auth)
        assert r.status_code == 204
        lot = (await http.get(url, headers=c.driver.auth)).json()
        assert lot["total_slots"] == 4 and lot["free_slots"] == 3
        gone = await http.post(
            "/bookings", headers=c.other_driver.auth, json={"slot_id": c.lot["slots"][1]["id"]}
        )
        assert gone.status_code == 404
        r = await http.delete(f"{url}/staff/{c.employee.id}", headers=c.owner.auth)
        assert r.status_code == 204
        assert (
            await http.post(f"/bookings/{b['id']}/payment/verify", headers=c.employee.auth)
        ).status_code == 404
        await close_all(c)


async def test_authorization_matrix_over_http(system):
    """Every booking endpoint by every kind of caller: 404 with no role, 403 with a role
    that may not act, success for the right one."""
    async with system.http() as http:
        c = await make_cast(system, http)
        callers = {
            "driver": c.driver,
            "other driver": c.other_driver,
            "lot owner": c.owner,
            "other owner": c.other_owner,
            "lot employee": c.employee,
            "other employee": c.other_employee,
            "admin": c.admin,
        }
        no_role = {"other driver", "other owner", "other employee"}
        b = await book(http, c.driver, c.lot["slots"][0])
        order = (await http.post(f"/bookings/{b['id']}/carwash", headers=c.driver.auth)).json()
        # (method, path, body, who may); each failure is checked before the success.
        endpoints = [
            ("get", f"/bookings/{b['id']}", None, {"driver", "lot owner", "lot employee", "admin"}),
            ("post", f"/carwash/{order['id']}/start", None, {"lot employee"}),
            ("post", f"/bookings/{b['id']}/payment/verify", None, {"lot employee"}),
            ("post", f"/bookings/{b['id']}/renew", None, {"driver"}),
            ("post", f"/bookings/{b['id']}/decline", {"reason": "r"}, {"lot owner"}),
        ]
        can_act = {
            f"/carwash/{order['id']}/start": {"lot owner", "lot employee", "admin"},
            f"/bookings/{b['id']}/payment/verify": {"lot owner", "lot employee", "admin"},
            f"/bookings/{b['id']}/renew": {"driver"},
            f"/bookings/{b['id']}/decline": {"lot owner", "admin"},
        }
        for method, path, body, winner in endpoints:
            for name, who in callers.items():
                if name in winner:
                    continue
                allowed = can_act.get(path, winner)
                expected = 404 if name in no_role else (403 if name not in allowed else None)
                if expected is None:
                    continue  # allowed too: not exercised, so the winner still can act
                kwargs = {"json": body} if body is not None else {}
                r = await getattr(http, method)(path, headers=who.auth, **kwargs)
                assert r.status_code == expected, (method, path, name, r.text)
            for name in winner:
                kwargs = {"json": body} if body is not None else {}
                r = await getattr(http, method)(path, headers=callers[name].auth, **kwargs)
                assert r.status_code == 200, (method, path, name, r.text)
        # Lots are visible to all: acting on another's lot is 403, not 404.
        for name in ("driver", "other owner", "lot employee", "other employee"):
            r = await http.patch(
                f"/lots/{c.lot['id']}", headers=callers[name].auth, json={"name": "x"}
            )
            assert r.status_code == 403, name
            r = await http.post(
                f"/lots/{c.lot['id']}/staff",
                headers=callers[name].auth,
                json={"user_id": c.other_employee.id},
            )
            assert r.status_code == 403, name
        assert (await http.get("/bookings/" + b["id"])).status_code == 401
        await close_all(c)


async def test_renew_racing_the_expiry_never_leaves_a_half_state(system):
    """Renew sent in the last moments of a booking: either the renewal wins (same booking,
    end moved, still active after the old end) or it is refused cleanly (expired, end
    unchanged). Never an expired booking with a moved end, never a stale expiry ending a
    renewed one."""
    async with system.http() as http:
        c = await make_cast(system, http, booking_seconds=2, warning_seconds=1)
        await http.patch(
            f"/lots/{c.lot['id']}", headers=c.owner.auth, json={"renew_grace_seconds": 0}
        )
        outcomes = []
        for offset in (0.30, 0.15, 0.05, 0.0, -0.05, -0.15):
            slot = c.lot["slots"][len(outcomes) % 3]
            b = await book(http, c.driver, slot)
            # Sleep until `offset` seconds before the end (negative: just after it).
            await asyncio.sleep(max(0.0, 2.0 - offset - 0.05))  # on purpose
            r = await http.post(f"/bookings/{b['id']}/renew", headers=c.driver.auth)
            await asyncio.sleep(1.5)  # on purpose: past the old end and any stale expiry
            now = (await http.get(f"/bookings/{b['id']}", headers=c.driver.auth)).json()
            if r.status_code == 200:
                assert now["status"] == "active", (offset, now)
                assert _seconds_between(b["end_time"], now["end_time"]) == 2
                outcomes.append("renewed")
            else:
                assert r.status_code == 409, r.text
                assert now["status"] == "expired" and now["end_time"] == b["end_time"]
                outcomes.append("refused")
            # Let this booking end for good before the next round.
            await _wait_status(http, c.driver, b["id"], "expired", timeout=6)
        assert "renewed" in outcomes, outcomes
        await close_all(c)


async def _wait_status(http, who, booking_id, status, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = (await http.get(f"/bookings/{booking_id}", headers=who.auth)).json()
        if now["status"] == status:
            return now
        await asyncio.sleep(0.1)
    raise AssertionError(f"booking {booking_id} not {status} within {timeout} s")

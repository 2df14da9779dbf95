"""Hostile input through the real api (bookings and notifier running, real NATS and
PostgreSQL): each input that once gave a 500 or blocked a service is a 400 naming the
field (or a WebSocket error frame), and what comes after it still works."""

import asyncio
import json
import time

import httpx
import pytest
import websockets

from services.api import identity
from services.contracts import bookings as c
from services.contracts import subjects
from services.contracts.ids import uuid7
from services.runtime.micro import RemoteError, call
from tests.integration.test_api import KEYS, api, auth  # noqa: F401 (fixture)
from tests.support import eventually, nats_client

MB = 1024 * 1024
LOT = {"name": "Quick Park", "address": "1 Main St", "slot_count": 2, "booking_seconds": 600}


def token(user_id: str, roles: list[str]) -> dict:
    """Headers with a token of `user_id` that outlives the fixture's 2 s logins."""
    return auth(identity.issue_token(KEYS, user_id, roles, 600))


def refused(r: httpx.Response, field: str) -> str:
    """Assert a 400 whose detail names `field`; return the detail."""
    assert r.status_code == 400, (r.status_code, r.text[:300])
    body = r.json()
    assert body["detail"].startswith(field), body
    assert body["extra"]["field"] == field, body
    return body["detail"]


async def register(http: httpx.AsyncClient, email: str, **extra) -> httpx.Response:
    return await http.post(
        "/auth/register",
        json={"email": email, "password": "secret-pw", "full_name": "Ann"} | extra,
    )


async def new_driver(http: httpx.AsyncClient, email: str) -> tuple[str, dict]:
    r = await register(http, email)
    assert r.status_code == 201, r.text
    user_id = r.json()["id"]
    return user_id, token(user_id, ["driver"])


async def new_lot(http: httpx.AsyncClient, owner: dict, **changes) -> dict:
    r = await http.post("/lots", headers=owner, json=LOT | changes)
    assert r.status_code == 201, r.text
    return r.json()


async def inbox(http: httpx.AsyncClient, who: dict) -> list[dict]:
    r = await http.get("/notifications", headers=who)
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def announced(http: httpx.AsyncClient, admin: dict, reader: dict, title: str) -> dict:
    """Announce `title` to everyone until `reader` (who may have just registered, and
    is known to the notifier only once user.registered got there) has it in the inbox."""

    async def arrived():
        r = await http.post(
            "/admin/notifications",
            headers=admin,
            json={"audience": {"all": True}, "title": title, "body": "b"},
        )
        assert r.status_code == 202, r.text
        return next((x for x in await inbox(http, reader) if x["title"] == title), None)

    return await eventually(arrived, timeout=15, interval=0.3)


async def test_a_one_megabyte_full_name_is_refused_and_later_users_still_register(api):  # noqa: F811
    r = await register(api, "huge@example.com", full_name="x" * MB)
    refused(r, "full_name")
    # The same through the admin's routes.
    admin = token(str(uuid7()), ["admin"])
    r = await api.post(
        "/admin/users",
        headers=admin,
        json={"email": "a@example.com", "password": "secret-pw", "full_name": "x" * MB}
        | {"roles": ["owner"]},
    )
    refused(r, "full_name")
    r = await api.post(
        "/admin/users/bulk",
        headers=admin,
        json={"users": [{"email": "b@example.com", "full_name": "x" * 201}]},
    )
    refused(r, "users[0].full_name")
    # Nothing was stored for them: their emails are free, and the identity outbox goes on.
    assert (await register(api, "huge@example.com")).status_code == 201
    _, later = await new_driver(api, "later@example.com")
    got = await announced(api, admin, later, "Welcome")
    assert got["type"] == "announcement"


async def test_a_600_kb_lot_name_is_refused_and_the_inbox_keeps_working(api):  # noqa: F811
    owner = token(str(uuid7()), ["owner"])
    refused(await api.post("/lots", headers=owner, json=LOT | {"name": "x" * 600_000}), "name")
    _, driver = await new_driver(api, "dora@example.com")
    lot = await new_lot(api, owner)
    async with websockets.connect(f"{api.ws_url}?token={driver['Authorization'][7:]}") as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
        booked = await api.post(
            "/bookings", headers=driver, json={"slot_id": lot["slots"][0]["id"]}
        )
        assert booked.status_code == 201, booked.text
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert frame["type"] == "notification"
        assert frame["notification"]["title"] == "Booking confirmed"
    items = await inbox(api, driver)
    assert [n["type"] for n in items] == ["booking.created"]
    assert "Quick Park" in items[0]["body"]


async def test_a_one_megabyte_lot_name_is_a_400_and_the_service_refuses_it_too(
    api,  # noqa: F811
    nats_url,
):
    owner_id = str(uuid7())
    owner = token(owner_id, ["owner"])
    refused(await api.post("/lots", headers=owner, json=LOT | {"name": "x" * MB}), "name")
    refused(
        await api.patch(f"/lots/{uuid7()}", headers=owner, json={"address": "y" * MB}), "address"
    )
    # The second line: bookings checks a request that did not come through the api.
    actor = c.Actor(user_id=owner_id, roles=["owner"])
    async with nats_client(nats_url) as nc:
        with pytest.raises(RemoteError) as e:
            await call(
                nc,
                subjects.BOOKINGS_LOT_CREATE,
                c.CreateLot(actor=actor, name="x" * 300_000, address="a", slot_count=1),
                c.LotView,
            )
        assert e.value.code == "invalid" and e.value.detail.startswith("name must be at most")
        # Larger than a NATS message may be: refused before it is sent.
        with pytest.raises(RemoteError) as e:
            await call(
                nc,
                subjects.BOOKINGS_LOT_CREATE,
                c.CreateLot(actor=actor, name="x" * 2 * MB, address="a", slot_count=1),
                c.LotView,
            )
        assert e.value.code == "invalid" and "bytes" in e.value.detail
    lot = await new_lot(api, owner)
    assert lot["name"] == "Quick Park"


@pytest.mark.parametrize("seconds", [10**12, 10**30])
async def test_huge_booking_seconds_are_refused_and_booking_still_works(api, seconds):  # noqa: F811
    owner = token(str(uuid7()), ["owner"])
    r = await api.post("/lots", headers=owner, json=LOT | {"booking_seconds": seconds})
    assert "at most 2592000" in refused(r, "booking_seconds")
    lot = await new_lot(api, owner)
    r = await api.patch(f"/lots/{lot['id']}", headers=owner, json={"booking_seconds": seconds})
    refused(r, "booking_seconds")
    r = await api.patch(f"/lots/{lot['id']}", headers=owner, json={"renew_grace_seconds": seconds})
    refused(r, "renew_grace_seconds")
    _, driver = await new_driver(api, "bea@example.com")
    booked = await api.post("/bookings", headers=driver, json={"slot_id": lot["slots"][0]["id"]})
    assert booked.status_code == 201 and booked.json()["remaining_seconds"] > 590


async def test_nul_bytes_in_names_and_labels_are_refused(api):  # noqa: F811
    r = await register(api, "nul@example.com", full_name="Ann\u0000Smith")
    assert "control characters" in refused(r, "full_name")
    owner = token(str(uuid7()), ["owner"])
    refused(await api.post("/lots", headers=owner, json=LOT | {"name": "Lot\u0000"}), "name")
    refused(
        await api.post("/lots", headers=owner, json=LOT | {"slot_labels": ["A\u0000"]}),
        "slot_labels[0]",
    )
    _, driver = await new_driver(api, "nul@example.com")  # the email was not taken
    r = await api.post("/vehicles", headers=driver, json={"plate": "AB12CD", "label": "Blue\u0000"})
    refused(r, "label")
    admin = token(str(uuid7()), ["admin"])
    r = await api.post(
        "/admin/vehicles/bulk",
        headers=admin,
        json={"vehicles": [{"user_id": str(uuid7()), "plate": "AB12CD", "label": "\u0000"}]},
    )
    refused(r, "vehicles[0].label")
    r = await api.post("/vehicles", headers=driver, json={"plate": "AB12CD", "label": "Blue car"})
    assert r.status_code == 201 and r.json()["label"] == "Blue car"
    lot = await new_lot(api, owner, name="Lot\ttab".replace("\t", " "))
    assert lot["name"] == "Lot tab"


async def test_a_price_with_31_digits_is_refused(api):  # noqa: F811
    owner = token(str(uuid7()), ["owner"])
    price = {"amount": "1" * 31, "currency": "EUR"}
    refused(
        await api.post("/lots", headers=owner, json=LOT | {"price_per_hour": price}),
        "price_per_hour.amount",
    )
    lot = await new_lot(api, owner, price_per_hour={"amount": "9999999.99", "currency": "EUR"})
    r = await api.patch(f"/lots/{lot['id']}", headers=owner, json={"carwash_price": price})
    refused(r, "carwash_price.amount")
    r = await api.patch(
        f"/lots/{lot['id']}",
        headers=owner,
        json={"carwash_price": {"amount": "12345678", "currency": "EUR"}},
    )
    assert 'like "4.50"' in refused(r, "carwash_price.amount")
    _, driver = await new_driver(api, "rich@example.com")
    booked = await api.post("/bookings", headers=driver, json={"slot_id": lot["slots"][0]["id"]})
    # 600 s at 9999999.99 an hour, rounded half-up to the cent.
    assert booked.status_code == 201 and booked.json()["price"]["amount"] == "1666666.67"


async def test_numbers_as_strings_and_unknown_currencies_are_refused(api):  # noqa: F811
    owner = token(str(uuid7()), ["owner"])
    r = await api.post("/lots", headers=owner, json=LOT | {"slot_count": "3"})
    assert "an integer or null, not a string" in refused(r, "slot_count")
    r = await api.post(
        "/lots", headers=owner, json=LOT | {"price_per_hour": {"amount": "2", "currency": "XXXX"}}
    )
    assert "ISO 4217" in refused(r, "price_per_hour.currency")
    r = await api.post(
        "/lots",
        headers=owner,
        json=LOT
        | {
            "price_per_hour": {"amount": "2.00", "currency": "EUR"},
            "carwash_price": {"amount": "5.00", "currency": "USD"},
        },
    )
    refused(r, "carwash_price.currency")
    _, driver = await new_driver(api, "str@example.com")
    r = await api.post("/bookings", headers=driver, json={"slot_id": str(uuid7()), "carwash": "1"})
    refused(r, "carwash")
    lot = await new_lot(api, owner, price_per_hour={"amount": "2", "currency": "CHF"})
    assert lot["price_per_hour"] == {"amount": "2.00", "currency": "CHF"}
    assert lot["total_slots"] == 2


async def test_query_and_path_parameters_are_bounded(api):  # noqa: F811
    _, driver = await new_driver(api, "q@example.com")
    refused(await api.get("/lots", headers=driver, params={"cursor": "c" * 101}), "cursor")
    refused(await api.get("/lots", headers=driver, params={"limit": 10**30}), "limit")
    refused(await api.get(f"/lots/{'x' * 37}", headers=driver), "lot_id")
    refused(await api.get("/notifications", headers=driver, params={"type": "t" * 65}), "type")
    assert (await api.get("/lots/not-a-uuid", headers=driver)).status_code == 404
    assert (await api.get("/lots", headers=driver, params={"limit": "5"})).status_code == 200


async def test_the_openapi_schema_shows_the_limits(api):  # noqa: F811
    root = f"http://{api.base_url.host}:{api.base_url.port}"
    schema = (await api.get(root + "/schema/openapi.json")).json()
    lot_in = schema["components"]["schemas"]["LotIn"]["properties"]
    assert lot_in["name"]["maxLength"] == 200 and "pattern" in lot_in["name"]
    booking_seconds = lot_in["booking_seconds"]
    assert booking_seconds["maximum"] == 2_592_000 and booking_seconds["minimum"] == 1


async def test_subscribing_to_an_unknown_lot_gets_an_error_frame(api):  # noqa: F811
    owner = token(str(uuid7()), ["owner"])
    lot = await new_lot(api, owner)
    _, driver = await new_driver(api, "ws@example.com")
    url = f"{api.ws_url}?token={driver['Authorization'][7:]}"
    async with websockets.connect(url) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
        ghost = str(uuid7())
        await ws.send(json.dumps({"type": "subscribe", "topic": f"lot.{ghost}"}))
        error = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert error["type"] == "error" and error["code"] == "not_found", error
        assert ghost in error["detail"] and error["topic"] == f"lot.{ghost}"
        for frame, field in (
            ({"type": "ack", "seq": 2**64}, "seq"),
            ({"type": "resume", "after_seq": "3"}, "after_seq"),
            ({"type": "x" * 33}, "type"),
            ({"type": "mark_read", "id": "i" * 37}, "id"),
            ({"type": "subscribe", "topic": "lot." + "0" * 100}, "topic"),
        ):
            await ws.send(json.dumps(frame))
            error = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert error["type"] == "error" and error["code"] == "bad_frame", error
            assert error["detail"].startswith(field), error
        # The socket is still open, and a real lot's topic works.
        await ws.send(json.dumps({"type": "subscribe", "topic": f"lot.{lot['id']}"}))
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "pong"}
        slot = lot["slots"][1]["id"]
        booked = await api.post("/bookings", headers=driver, json={"slot_id": slot})
        assert booked.status_code == 201
        deadline = time.monotonic() + 10
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
            if frame["type"] == "slot_update":
                break
        assert frame["slot_id"] == slot and frame["status"] == "booked"


async def test_bulk_vehicles_too_large_for_one_message_are_refused_before_anything_is_stored(
    api,  # noqa: F811
):
    admin = token(str(uuid7()), ["admin"])
    people = [{"email": f"d{i}@bulk.example", "full_name": f"D{i}"} for i in range(3000)]
    made = await api.post("/admin/users/bulk", headers=admin, json={"users": people})
    assert made.status_code == 201, made.text[:300]
    users = made.json()["items"]
    label = "\U0001f697" * 64  # the longest label, 4 bytes a character
    wanted = [{"user_id": u["id"], "plate": "AB", "label": label} for u in users]
    # The request fits in one NATS message (1 MiB) but the answer, with ids and
    # times, would not: refused before the insert.
    r = await api.post("/admin/vehicles/bulk", headers=admin, json={"vehicles": wanted})
    assert "register fewer vehicles per call" in refused(r, "vehicles")
    # Half as many again do not even fit in the request: refused before it is sent.
    more = wanted + wanted[:1500]
    r = await api.post("/admin/vehicles/bulk", headers=admin, json={"vehicles": more})
    assert r.status_code == 400 and "send less in one call" in r.json()["detail"]
    first = auth(users[0]["access_token"])
    assert (await api.get("/vehicles", headers=first)).json()["items"] == []
    r = await api.post("/admin/vehicles/bulk", headers=admin, json={"vehicles": wanted[:1000]})
    assert r.status_code == 201, r.text[:300]
    assert [v["label"] for v in (await api.get("/vehicles", headers=first)).json()["items"]] == [
        label
    ]

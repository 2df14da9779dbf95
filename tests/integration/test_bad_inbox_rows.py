"""One bad row never breaks an inbox (issue 14, point 3).

Rows the limits no longer let in are written straight into PostgreSQL, as rows stored
before the limits existed would be: a title and body larger than a NATS message, `data`
that is not an object or far too large, a level and priority no client knows, a lot
whose name makes a notification larger than a NATS message. Each is still served at its
seq, cut to the limits and flagged `truncated`, by listing, resume (`after_seq`) and the
gateway's gap fill, and the user's next notification still arrives live.
"""

import asyncio
import json
import time
from datetime import UTC, datetime

import msgspec
import pytest
import sqlalchemy as sa
import websockets

from services.api import identity
from services.contracts import notifier as n
from services.contracts.ids import uuid7
from services.contracts.limits import BODY_MAX, DATA_MAX_BYTES, TITLE_MAX
from services.notifier import storage
from services.runtime.db import make_engine
from tests.integration.test_api import KEYS, api, auth  # noqa: F401 (fixture)
from tests.support import eventually, nats_client

MB = 1024 * 1024


def token(user_id: str, roles: list[str]) -> dict:
    """Headers with a token that outlives the fixture's 2 s logins."""
    return auth(identity.issue_token(KEYS, user_id, roles, 600))


async def new_driver(http, email: str) -> tuple[str, dict]:
    r = await http.post(
        "/auth/register", json={"email": email, "password": "secret-pw", "full_name": "Dee"}
    )
    assert r.status_code == 201, r.text
    user_id = r.json()["id"]
    return user_id, token(user_id, ["driver"])


async def send(http, admin: dict, user_id: str, title: str) -> None:
    """An admin message to `user_id`, retried until the notifier knows the user (it
    learns of a registration from user.registered, a moment after the 201)."""

    async def sent():
        r = await http.post(
            "/admin/notifications",
            headers=admin,
            json={"audience": {"user_ids": [user_id]}, "title": title, "body": "b"},
        )
        if r.status_code == 400 and "unknown user" in r.json()["detail"]:
            return False
        assert r.status_code == 202, r.text
        return True

    await eventually(sent, timeout=15, interval=0.1)


async def insert_row(database_url: str, user_id: str, **fields) -> tuple[str, int]:
    """Insert a notification for `user_id` at their next seq, as a row written before the
    limits existed would be (the inbox counters moved with it); (id, seq)."""
    engine = make_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            seq = (
                await conn.execute(
                    sa.text(
                        "UPDATE notifier.inbox_state SET last_seq = last_seq + 1, "
                        "version = version + 1, unread = unread + 1 WHERE user_id = :u "
                        "RETURNING last_seq"
                    ),
                    {"u": user_id},
                )
            ).scalar_one()
            id_ = str(uuid7())
            values = {
                "type": "booking.created",
                "level": "info",
                "priority": "normal",
                "title": "t",
                "body": "b",
                "data": "{}",
            } | fields
            await conn.execute(
                sa.text(
                    "INSERT INTO notifier.notifications (id, user_id, seq, type, level, "
                    "priority, title, body, data, created_at) VALUES (:id, :u, :seq, :type, "
                    ":level, :priority, :title, :body, CAST(:data AS jsonb), :now)"
                ),
                {"id": id_, "u": user_id, "seq": seq, "now": datetime.now(UTC)} | values,
            )
    finally:
        await engine.dispose()
    return id_, seq


async def notifications(ws, count: int, timeout: float = 10) -> list[dict]:
    """The next `count` notification frames' notifications (other frames skipped)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        frame = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        if frame["type"] == "notification":
            out.append(frame["notification"])
    return out


def assert_safe(item: dict) -> None:
    """Within the limits every client may rely on, and flagged."""
    assert item["truncated"] is True, item
    assert len(item["title"]) <= TITLE_MAX and len(item["body"]) <= BODY_MAX
    assert item["level"] in ("success", "info", "warning", "error")
    assert item["priority"] in ("low", "normal", "high", "urgent")
    assert isinstance(item["data"], dict)
    assert len(msgspec.json.encode(item["data"])) <= DATA_MAX_BYTES


BAD_ROWS = {
    # Together larger than a NATS message: no reply could carry the row as it is.
    "title and body over a MiB": {"title": "T" * (MB // 2), "body": "B" * (MB // 2 + 10)},
    "data over a MiB": {
        "data": json.dumps({"booking_id": str(uuid7()), "lot_name": "L" * (MB + 10)})
    },
    "data with a thousand keys": {"data": json.dumps({f"k{i}": i for i in range(1000)})},
    "data that is an array": {"data": "[1, 2, 3]"},
    "data that is null": {"data": "null"},
    "data that is a string": {"data": '"not an object"'},
    "unknown level and priority": {"level": "critical", "priority": "asap"},
}


@pytest.mark.parametrize("fields", BAD_ROWS.values(), ids=BAD_ROWS.keys())
async def test_a_bad_row_is_served_cut_everywhere_and_the_inbox_goes_on(
    api,  # noqa: F811
    database_url,
    fields,
):
    user_id, driver = await new_driver(api, "dee@example.com")
    admin = token(str(uuid7()), ["admin"])
    url = f"{api.ws_url}?token={driver['Authorization'][7:]}"
    async with websockets.connect(url, max_size=None) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
        await send(api, admin, user_id, "first")
        assert [x["seq"] for x in await notifications(ws, 1)] == [1]
        bad_id, bad_seq = await insert_row(database_url, user_id, **fields)
        assert bad_seq == 2
        # seq 3 arrives live; the gateway sees 2 missing and fills it from the inbox.
        await send(api, admin, user_id, "third")
        got = await notifications(ws, 2)
        assert [x["seq"] for x in got] == [2, 3]
        assert got[0]["id"] == bad_id
        assert_safe(got[0])
        assert got[1]["title"] == "third" and got[1]["truncated"] is False

        # Listing serves it at its seq too.
        r = await api.get("/notifications", headers=driver)
        assert r.status_code == 200, r.text[:300]
        items = r.json()["items"]
        assert [x["seq"] for x in items] == [3, 2, 1]
        assert_safe(items[1])
        assert items[1] == got[0]
        r = await api.post(f"/notifications/{bad_id}/read", headers=driver)
        assert r.status_code == 200, r.text[:300]
        assert_safe(r.json())

        # Resuming, on connect and with a `resume` frame.
        async with websockets.connect(f"{url}&after_seq=0", max_size=None) as again:
            assert json.loads(await again.recv())["type"] == "hello"
            resumed = await notifications(again, 3)
            assert [x["seq"] for x in resumed] == [1, 2, 3]
            assert_safe(resumed[1])
        async with websockets.connect(url, max_size=None) as later:
            assert json.loads(await later.recv())["type"] == "hello"
            await later.send(json.dumps({"type": "resume", "after_seq": 1}))
            assert [x["seq"] for x in await notifications(later, 2)] == [2, 3]

        # The next notification still arrives live.
        await send(api, admin, user_id, "fourth")
        assert [(x["seq"], x["title"]) for x in await notifications(ws, 1)] == [(4, "fourth")]


async def test_a_notification_too_large_for_a_live_message_arrives_cut(
    api,  # noqa: F811
    database_url,
    nats_url,
):
    """A lot named before the limits existed, so long that booking it makes a
    notification (its name in `data`, the body clipped) larger than a NATS message,
    while the event itself still fits: the live publish carries the cut form, and the
    inbox goes on."""
    async with nats_client(nats_url) as nc:
        max_payload = nc.max_payload
    owner = token(str(uuid7()), ["owner"])
    r = await api.post(
        "/lots",
        headers=owner,
        json={"name": "Old Park", "address": "1 Main St", "slot_count": 2},
    )
    assert r.status_code == 201, r.text
    lot = r.json()
    # The event carries the name once, with about 1 KB of other fields; the notification
    # carries it in `data` plus a 2,000-character body with it.
    name = "N" * (max_payload - 1800)
    engine = make_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE bookings.lots SET name = :name WHERE id = :id"),
                {"name": name, "id": lot["id"]},
            )
    finally:
        await engine.dispose()
    user_id, driver = await new_driver(api, "lee@example.com")
    admin = token(str(uuid7()), ["admin"])
    url = f"{api.ws_url}?token={driver['Authorization'][7:]}"
    async with websockets.connect(url, max_size=None) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
        r = await api.post("/bookings", headers=driver, json={"slot_id": lot["slots"][0]["id"]})
        assert r.status_code == 201, r.text[:300]
        [live] = await notifications(ws, 1, timeout=20)
        assert live["seq"] == 1 and live["title"] == "Booking confirmed"
        assert_safe(live)
        assert live["data"]["lot_id"] == lot["id"]
        assert live["data"]["booking_id"] == r.json()["id"]

        # As stored, the live message would not have fitted in a NATS message.
        engine = make_engine(database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                row = (
                    await conn.execute(
                        sa.select(storage.notifications).where(
                            storage.notifications.c.id == live["id"]
                        )
                    )
                ).one()
        finally:
            await engine.dispose()
        raw = n.LiveNotification(notification=storage.to_notification(row), unread_count=1)
        assert len(msgspec.json.encode(raw)) > max_payload

        r = await api.get("/notifications", headers=driver)
        assert r.status_code == 200, r.text[:300]
        assert r.json()["items"] == [live]
        await send(api, admin, user_id, "next")
        assert [(x["seq"], x["title"]) for x in await notifications(ws, 1)] == [(2, "next")]
    async with websockets.connect(f"{url}&after_seq=0", max_size=None) as again:
        assert json.loads(await again.recv())["type"] == "hello"
        assert [x["seq"] for x in await notifications(again, 2)] == [1, 2]


async def test_a_live_message_that_cannot_be_published_does_not_stop_the_others(nats_url):
    """The net below the cut form: a message over the max payload is logged and skipped,
    and the ones after it are still published (the gateway fills the skipped seq)."""
    from services.notifier import handlers

    now = datetime.now(UTC)

    def live(seq: int, body: str) -> n.LiveNotification:
        return n.LiveNotification(
            notification=n.Notification(
                id=str(uuid7()),
                seq=seq,
                type="announcement",
                level="info",
                priority="normal",
                title="t",
                body=body,
                data={},
                created_at=now,
            )
        )

    user_id = str(uuid7())
    async with nats_client(nats_url) as sub_nc, nats_client(nats_url) as nc:
        sub = await sub_nc.subscribe(f"notify.user.{user_id}")
        await sub_nc.flush()
        deps = handlers.Deps(engine=None, nc=nc)
        await handlers.publish(deps, user_id, live(1, "x" * nc.max_payload), live(2, "small"))
        # The server has routed what was published once it answers the flush's PING; the
        # generous timeouts are for a loaded CI machine (a 5 s wait once ran out there).
        await nc.flush(timeout=15)
        msg = await sub.next_msg(timeout=15)
        assert msgspec.json.decode(msg.data)["notification"]["seq"] == 2

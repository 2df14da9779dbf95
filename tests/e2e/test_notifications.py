"""End to end: the notification center through the real edges (HTTP and WebSocket) of
the services running as processes: inbox paging and changes, unread counts on two
devices, mutes, quiet hours and urgent, template overrides across two notifier
replicas, announcements, resume and its races, ack, heartbeat, bad frames, rate limit
and token expiry."""

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import websockets

from services.runtime.embedded import free_port
from tests.e2e.conftest import SERVICES, System, auth
from tests.support import eventually

pytestmark = pytest.mark.e2e


@contextlib.asynccontextmanager
async def launched(nats_url, database_url, log_dir, **env: str) -> AsyncIterator[System]:
    """The whole system with extra PARKMATE_* settings (e.g. WS_PING_SECONDS="0.5")."""
    s = System(nats_url, database_url, log_dir)
    s.env.update({f"PARKMATE_{k}": v for k, v in env.items()})
    for name in SERVICES:
        s.start(name)
    try:
        await s.wait_ready()
        yield s
    finally:
        codes = s.shutdown()
    assert all(code == 0 for code in codes.values()), codes


class Socket:
    """A client socket whose frames are collected in the background; answers the
    server's pings unless told not to."""

    def __init__(self, ws, hello: dict, answer_pings: bool = True):
        self.ws = ws
        self.hello = hello
        self.answer_pings = answer_pings
        self.frames: list[dict] = []
        self.closed: websockets.ConnectionClosed | None = None
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, system: System, token: str, query: str = "", **kw) -> "Socket":
        ws = await websockets.connect(
            f"ws://127.0.0.1:{system.port}/ws?token={token}{query}", max_size=None
        )
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello", hello
        return cls(ws, hello, **kw)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                self.frames.append(frame)
                if frame["type"] == "ping" and self.answer_pings:
                    await self.send({"type": "pong"})
        except websockets.ConnectionClosed as e:
            self.closed = e

    async def send(self, frame: Any) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    def of(self, type_: str) -> list[dict]:
        return [f for f in self.frames if f["type"] == type_]

    def seqs(self) -> list[int]:
        return [f["notification"]["seq"] for f in self.of("notification")]

    async def until(self, check: Callable[["Socket"], Any], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = check(self)
            if result:
                return result
            if self.closed is not None:
                break
            await asyncio.sleep(0.02)
        raise AssertionError(f"not met within {timeout} s; frames: {self.frames[-12:]}")

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(Exception):
            await self._reader

    async def close_code(self, timeout: float = 10.0) -> int:
        await asyncio.wait_for(self._reader, timeout)
        assert self.closed is not None
        return self.closed.rcvd.code


def last_count(sock: Socket) -> int | None:
    """The unread count a client shows: from the latest `unread_count` frame or
    notification frame that carries one."""
    for frame in reversed(sock.frames):
        if frame["type"] == "unread_count":
            return frame["count"]
        if frame["type"] == "notification" and "unread_count" in frame:
            return frame["unread_count"]
    return None


async def handled(sock: Socket) -> None:
    """Wait until the server has handled every frame sent on `sock` and sent what it had
    queued for it: the pong of a ping sent now comes after all that."""
    pongs = len(sock.of("pong"))
    await sock.send({"type": "ping"})
    await sock.until(lambda s: len(s.of("pong")) > pongs)


async def admin_token(system: System, http) -> str:
    system.admin()
    r = await http.post("/auth/login", json={"email": "admin@example.com", "password": "secret-pw"})
    return r.json()["access_token"]


async def known_to_notifier(system: System, users: int) -> None:
    """Wait until the notifier has consumed `users` user.registered events."""
    nc = await nats.connect(system.nats_url)
    try:
        deadline = time.monotonic() + 15
        while True:
            info = await nc.jetstream().consumer_info("EVENTS", "notifier-users")
            if (
                info.delivered.consumer_seq >= users
                and info.num_pending == 0
                and info.num_ack_pending == 0
            ):
                return
            assert time.monotonic() < deadline, info
            await asyncio.sleep(0.1)
    finally:
        await nc.close()


async def send(http, admin: str, status: int = 202, **body) -> dict:
    body.setdefault("title", "Hello")
    body.setdefault("body", "From the admin")
    r = await http.post("/admin/notifications", headers=auth(admin), json=body)
    assert r.status_code == status, r.text
    return r.json()


async def to(http, admin: str, user_id: str, **body) -> dict:
    return await send(http, admin, audience={"user_ids": [user_id]}, **body)


async def count(http, token: str) -> int:
    r = await http.get("/notifications/unread-count", headers=auth(token))
    assert r.status_code == 200, r.text
    return r.json()["count"]


async def test_inbox_pages_stay_stable_while_notifications_arrive(system):
    async with system.http() as http:
        admin = await admin_token(system, http)
        uid, token = await system.user(http, "ann@example.com")
        await known_to_notifier(system, 2)
        for i in range(25):
            await to(http, admin, uid, title=f"m{i}")
        seen: list[int] = []
        cursor = None
        pages = 0
        while True:
            params = {"limit": 10} | ({"cursor": cursor} if cursor else {})
            r = await http.get("/notifications", headers=auth(token), params=params)
            assert r.status_code == 200, r.text
            body = r.json()
            seen += [x["seq"] for x in body["items"]]
            pages += 1
            if pages == 1:  # new ones arrive between the pages
                for i in range(7):
                    await to(http, admin, uid, title=f"late{i}")
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == list(range(25, 0, -1)) and pages == 3  # no duplicate, no skip
        first = (await http.get("/notifications", headers=auth(token))).json()
        assert [x["seq"] for x in first["items"]] == list(range(32, 0, -1))
        item = first["items"][0]
        assert set(item) >= {
            "id",
            "seq",
            "type",
            "level",
            "priority",
            "title",
            "body",
            "data",
            "created_at",
            "read_at",
            "delivered_at",
        }
        assert item["type"] == "admin.message" and item["created_at"].endswith("Z")

        r = await http.post(f"/notifications/{item['id']}/read", headers=auth(token))
        assert r.status_code == 200 and r.json()["read_at"]
        unread = await http.get("/notifications", headers=auth(token), params={"unread": "true"})
        assert len(unread.json()["items"]) == 31
        typed = await http.get(
            "/notifications", headers=auth(token), params={"type": "announcement"}
        )
        assert typed.json() == {"items": [], "next_cursor": None}
        for params in ({"limit": 0}, {"limit": 201}, {"cursor": "bogus"}):
            r = await http.get("/notifications", headers=auth(token), params=params)
            assert r.status_code == 400, (params, r.text)
        assert (await http.get("/notifications")).status_code == 401


async def test_unread_counts_after_each_change_on_two_devices(system):
    async with system.http() as http:
        admin = await admin_token(system, http)
        uid, token = await system.user(http, "ann@example.com")
        await known_to_notifier(system, 2)
        phone, laptop = await Socket.open(system, token), await Socket.open(system, token)
        devices = (phone, laptop)

        async def both(expected: int) -> None:
            for d in devices:
                await d.until(lambda s: last_count(s) == expected)
            assert await count(http, token) == expected

        for i in range(3):
            await to(http, admin, uid, title=f"n{i}")
            await both(i + 1)
        for d in devices:
            await d.until(lambda s: s.seqs() == [1, 2, 3])
        ids = [f["notification"]["id"] for f in phone.of("notification")]

        r = await http.post(f"/notifications/{ids[0]}/read", headers=auth(token))
        assert r.status_code == 200
        await both(2)
        await phone.send({"type": "mark_read", "id": ids[1]})
        await both(1)
        r = await http.delete(f"/notifications/{ids[2]}", headers=auth(token))
        assert r.status_code == 204
        await both(0)
        for d in devices:
            updates = await d.until(lambda s: len(s.of("notification_update")) >= 3 and s)
            got = [(u["id"], u["deleted"]) for u in updates.of("notification_update")]
            assert got == [(ids[0], False), (ids[1], False), (ids[2], True)]
            assert updates.of("notification_update")[0]["read_at"]

        await to(http, admin, uid)
        await to(http, admin, uid)
        await both(2)
        await laptop.send({"type": "mark_all_read"})
        await both(0)
        r = await http.delete("/notifications", headers=auth(token), params={"read": "true"})
        assert r.status_code == 200 and r.json() == {"deleted": 4, "unread_count": 0}
        for d in devices:
            await d.until(
                lambda s: [u["up_to_seq"] for u in s.of("notification_update")][-2:] == [5, 5]
            )
        assert (await http.get("/notifications", headers=auth(token))).json()["items"] == []
        await to(http, admin, uid)
        await both(1)
        r = await http.post("/notifications/read-all", headers=auth(token))
        assert r.json() == {"marked": 1, "unread_count": 0}
        await both(0)
        assert (await http.delete("/notifications", headers=auth(token))).status_code == 400
        missing = "01a2082c-5d45-7950-9861-32487e89739a"
        assert (
            await http.post(f"/notifications/{missing}/read", headers=auth(token))
        ).status_code == 404
        await phone.send({"type": "mark_read", "id": missing})
        err = await phone.until(lambda s: s.of("error") and s.of("error")[-1])
        assert err["code"] == "not_found"
        before = len(phone.of("unread_count"))
        await phone.send({"type": "get_unread_count"})  # answered even when unchanged
        await phone.until(lambda s: len(s.of("unread_count")) == before + 1)
        for d in devices:
            await d.close()


def hhmm(t: datetime) -> str:
    return t.strftime("%H:%M")


async def test_mutes_quiet_hours_and_urgent_bypass(system):
    async with system.http() as http:
        admin = await admin_token(system, http)
        uid, token = await system.user(http, "ann@example.com")
        await known_to_notifier(system, 2)
        r = await http.get("/notifications/preferences", headers=auth(token))
        assert r.json() == {"muted_types": [], "quiet_hours": None, "websocket": True}
        sock = await Socket.open(system, token)

        r = await http.put(
            "/notifications/preferences",
            headers=auth(token),
            json={"muted_types": ["admin.message"]},
        )
        assert r.status_code == 200, r.text
        await to(http, admin, uid, title="muted")
        await sock.until(lambda s: last_count(s) == 1)
        await to(http, admin, uid, title="urgent", priority="urgent")
        await sock.until(lambda s: last_count(s) == 2)
        await sock.until(lambda s: s.of("notification"))
        assert [f["notification"]["title"] for f in sock.of("notification")] == ["urgent"]

        # Quiet hours around the real current time, in UTC (no waiting for the night).
        now = datetime.now(UTC)
        quiet = {
            "start": hhmm(now - timedelta(hours=1)),
            "end": hhmm(now + timedelta(hours=1)),
            "timezone": "UTC",
        }
        r = await http.put(
            "/notifications/preferences", headers=auth(token), json={"quiet_hours": quiet}
        )
        assert r.json() == {"muted_types": [], "quiet_hours": quiet, "websocket": True}
        await send(http, admin, audience={"all": True}, title="quiet")
        await sock.until(lambda s: last_count(s) == 3)
        await send(http, admin, audience={"all": True}, title="loud", priority="urgent")
        await sock.until(lambda s: len(s.of("notification")) == 2)
        assert [f["notification"]["title"] for f in sock.of("notification")] == [
            "urgent",
            "loud",
        ]
        inbox = (await http.get("/notifications", headers=auth(token))).json()["items"]
        assert [(x["title"], x["silent"], x["read_at"]) for x in inbox] == [
            ("loud", False, None),
            ("quiet", True, None),
            ("urgent", False, None),
            ("muted", True, None),
        ]
        assert await count(http, token) == 4

        for body, field in (
            ({"quiet_hours": quiet | {"timezone": "Mars/Base"}}, "quiet_hours.timezone"),
            ({"quiet_hours": quiet | {"start": "24:00"}}, "quiet_hours.start"),
            ({"quiet_hours": quiet | {"end": "7"}}, "quiet_hours.end"),
            ({"muted_types": ["booking.nope"]}, "muted_types"),
        ):
            r = await http.put("/notifications/preferences", headers=auth(token), json=body)
            assert r.status_code == 400, r.text
            assert r.json()["extra"]["field"] == field and field in r.json()["detail"]
        r = await http.put(
            "/notifications/preferences", headers=auth(token), json={"websocket": "maybe"}
        )
        assert r.status_code == 400
        await sock.close()


def spawn(system: System, name: str, log_path: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start `parkmate run name` with the system's settings plus `env`, logging to log_path."""
    log = open(log_path, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "run", name],
        env=system.env | env,
        stdout=log,
        stderr=log,
    )


@contextlib.asynccontextmanager
async def replica(system: System, name: str, timeout: float = 60) -> AsyncIterator[None]:
    """One more process of service `name` for the block, entered once its /readyz (on a
    probe port of its own) answers 200, i.e. its consumers and micro endpoints are up;
    stopped with SIGTERM after, and it must exit 0."""
    port = free_port()
    log_path = system.log_dir / f"{name}-2.log"
    proc = spawn(system, name, log_path, {"PARKMATE_PROBE_PORT": str(port)})
    try:

        async def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} replica exited: {log_path.read_text()}")
            try:
                async with httpx.AsyncClient() as http:
                    r = await http.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
            except httpx.TransportError:
                return False
            return r.status_code == 200

        await eventually(ready, timeout=timeout, interval=0.1)
        yield
    finally:
        proc.terminate()
        assert proc.wait(20) == 0


async def test_template_override_shows_on_the_next_event_on_any_replica(system):
    async with system.http() as http:
        admin = await admin_token(system, http)
        _, owner = await system.user(http, "owner@example.com", ["owner"], admin)
        _, driver = await system.user(http, "driver@example.com")
        lot = await http.post(
            "/lots",
            headers=auth(owner),
            json={"name": "Quick Park", "address": "1 Test St", "slot_count": 3},
        )
        assert lot.status_code == 201, lot.text
        async with replica(system, "notifier"):
            await override_and_book(system, http, admin, driver, lot.json())


async def override_and_book(system: System, http, admin: str, driver: str, lot: dict) -> None:
    listed = await http.get("/admin/notification-templates", headers=auth(admin))
    assert listed.status_code == 200
    created = [t for t in listed.json()["items"] if t["type"] == "booking.created"]
    assert created[0]["audience"] == "driver" and "slot_label" in created[0]["placeholders"]
    assert (
        await http.get("/admin/notification-templates", headers=auth(driver))
    ).status_code == 403

    bad = await http.put(
        "/admin/notification-templates/booking.created",
        headers=auth(admin),
        json={"title": "Parked {nickname}", "body": "b"},
    )
    assert bad.status_code == 400 and "{nickname}" in bad.json()["detail"]
    assert bad.json()["extra"]["placeholder"] == "nickname"
    r = await http.put(
        "/admin/notification-templates/booking.created",
        headers=auth(admin),
        json={"title": "Parked in {slot_label}", "body": "At {lot_name} until {end_time_hm}."},
    )
    assert r.status_code == 200 and r.json()["overridden"] is True, r.text
    unknown = await http.put(
        "/admin/notification-templates/booking.nope",
        headers=auth(admin),
        json={"title": "t", "body": "b"},
    )
    assert unknown.status_code == 404

    sock = await Socket.open(system, driver)
    for slot in lot["slots"]:
        r = await http.post("/bookings", headers=auth(driver), json={"slot_id": slot["id"]})
        assert r.status_code == 201, r.text
    await sock.until(lambda s: len(s.of("notification")) == 3)
    titles = {f["notification"]["title"] for f in sock.of("notification")}
    labels = {f"Parked in {slot['label']}" for slot in lot["slots"]}
    assert titles == labels
    assert all(
        f["notification"]["body"].startswith("At Quick Park until ")
        for f in sock.of("notification")
    )
    reset = await http.delete("/admin/notification-templates/booking.created", headers=auth(admin))
    assert reset.status_code == 200 and reset.json()["title"] == "Booking confirmed"
    await sock.close()


async def test_announcement_to_all_reaches_every_socket_and_inbox(system):
    async with system.http() as http:
        admin = await admin_token(system, http)
        _, ann = await system.user(http, "ann@example.com")
        _, bob = await system.user(http, "bob@example.com")
        await known_to_notifier(system, 3)
        socks = [await Socket.open(system, t) for t in (ann, bob)]
        expires = (datetime.now(UTC) + timedelta(days=1)).isoformat().replace("+00:00", "Z")
        result = await send(
            http,
            admin,
            audience={"all": True},
            title="Maintenance",
            body="Tonight 22:00",
            level="warning",
            expires_at=expires,
        )
        assert result["recipients"] == 3 and result["type"] == "announcement"
        for sock, token in zip(socks, (ann, bob), strict=True):
            frame = await sock.until(lambda s: s.of("notification") and s.of("notification")[0])
            assert frame["notification"]["title"] == "Maintenance"
            assert frame["notification"]["expires_at"] is not None
            await sock.until(lambda s: last_count(s) == 1)
            inbox = (await http.get("/notifications", headers=auth(token))).json()["items"]
            assert [x["type"] for x in inbox] == ["announcement"]
            assert await count(http, token) == 1
            await sock.close()
        _, driver = await system.user(http, "carl@example.com")
        r = await http.post(
            "/admin/notifications",
            headers=auth(driver),
            json={"audience": {"all": True}, "title": "x", "body": "y"},
        )
        assert r.status_code == 403
        await send(http, admin, 400, audience={}, title="x")
        await send(http, admin, 400, audience={"roles": ["pilot"]})
        await send(http, admin, 400, audience={"all": True}, expires_at="2001-01-01T00:00:00Z")
        alert = await send(http, admin, audience={"roles": ["admin"]}, level="error")
        assert alert == alert | {"type": "admin.alert", "recipients": 1}


async def test_resume_after_a_disconnect_gets_exactly_what_was_missed(system):
    async with system.http() as http:
        admin = await admin_token(system, http)
        uid, token = await system.user(http, "ann@example.com")
        await known_to_notifier(system, 2)
        await to(http, admin, uid, title="before")
        sock = await Socket.open(system, token)
        last = sock.hello["last_seq"]
        assert last == 1
        await sock.close()
        for i in range(3):  # produced while the client is away
            await to(http, admin, uid, title=f"missed {i}")
        sock = await Socket.open(system, token)
        assert sock.hello["last_seq"] == 4 and sock.hello["unread_count"] == 4
        await sock.send({"type": "resume", "after_seq": last})
        await sock.until(lambda s: len(s.of("notification")) == 3)
        assert sock.seqs() == [2, 3, 4]
        assert [f["notification"]["title"] for f in sock.of("notification")] == [
            "missed 0",
            "missed 1",
            "missed 2",
        ]
        await to(http, admin, uid, title="live")
        await sock.until(lambda s: s.seqs() == [2, 3, 4, 5])
        await sock.close()
        # The same through the URL: the replay comes right after hello, before live ones.
        sock = await Socket.open(system, token, "&after_seq=2")
        await sock.until(lambda s: s.seqs() == [3, 4, 5])
        await sock.close()


async def test_resume_racing_live_notifications_has_no_gap_and_no_duplicate(system):
    async with system.http() as http:
        admin = await admin_token(system, http)
        uid, token = await system.user(http, "ann@example.com")
        await known_to_notifier(system, 2)
        for i in range(30):
            await to(http, admin, uid, title=f"old {i}")
        for round_ in range(3):
            sock = await Socket.open(system, token)
            hello = sock.hello["last_seq"]
            burst = [to(http, admin, uid, title=f"race {round_}.{i}") for i in range(10)]
            await asyncio.gather(sock.send({"type": "resume", "after_seq": 0}), *burst)
            total = hello + 10
            await sock.until(lambda s, t=total: len(set(s.seqs())) == t, timeout=15)
            await handled(sock)  # any duplicate queued behind them is here too
            seqs = sock.seqs()
            assert sorted(seqs) == list(range(1, total + 1)), seqs  # no gap, no duplicate
            replayed = [s for s in seqs if s <= hello]
            assert replayed == sorted(replayed)
            live = [s for s in seqs if s > hello]
            assert live == sorted(live)
            await sock.close()
        # Resuming at connect time is atomic: strictly increasing from the first frame.
        sock = await Socket.open(system, token, "&after_seq=0")
        burst = [to(http, admin, uid, title=f"atomic {i}") for i in range(10)]
        await asyncio.gather(*burst)
        await sock.until(lambda s: len(s.seqs()) == 70, timeout=15)
        assert sock.seqs() == list(range(1, 71))
        await sock.close()


async def test_ack_records_delivery_in_the_inbox(system):
    async with system.http() as http:
        admin = await admin_token(system, http)
        uid, token = await system.user(http, "ann@example.com")
        await known_to_notifier(system, 2)
        sock = await Socket.open(system, token)
        await to(http, admin, uid, title="one")
        await to(http, admin, uid, title="two")
        await sock.until(lambda s: s.seqs() == [1, 2])
        await sock.send({"type": "ack", "seq": 2})

        async def delivered():
            items = (await http.get("/notifications", headers=auth(token))).json()["items"]
            return {x["seq"]: x["delivered_at"] for x in items}

        async def delivered_at(seq: int) -> str | None:
            return (await delivered())[seq]

        await eventually(lambda: delivered_at(2))
        assert (await delivered())[1] is None  # stored, not acknowledged
        await sock.send({"type": "ack", "seq": 99})
        err = await sock.until(lambda s: s.of("error") and s.of("error")[-1])
        assert err["code"] == "not_found"
        await sock.send({"type": "ack"})
        await sock.until(lambda s: len(s.of("error")) == 2)
        assert sock.of("error")[-1]["code"] == "bad_frame"
        await sock.close()


async def test_heartbeat_closes_a_client_that_stops_answering(nats_url, database_url, tmp_path):
    async with launched(nats_url, database_url, tmp_path, WS_PING_SECONDS="0.4") as system:
        async with system.http() as http:
            _, token = await system.user(http, "ann@example.com")
            polite = await Socket.open(system, token)
            silent = await Socket.open(system, token, answer_pings=False)
            started = time.monotonic()
            assert await silent.close_code(timeout=10) == 4408
            assert time.monotonic() - started >= 0.8  # two missed pings, not one
            assert len(silent.of("ping")) >= 2
            await polite.until(lambda s: len(s.of("ping")) >= 4)
            assert polite.closed is None
            await polite.send({"type": "ping"})
            await polite.until(lambda s: s.of("pong"))
            await polite.close()


async def test_bad_frames_rate_limit_and_token_expiry(nats_url, database_url, tmp_path):
    async with launched(
        nats_url, database_url, tmp_path, WS_RATE="5", WS_BURST="5", TOKEN_SECONDS="8"
    ) as system:
        async with system.http() as http:
            _, token = await system.user(http, "ann@example.com")
            issued = time.time()
            sock = await Socket.open(system, token)
            for frame in ("not json", "[1, 2]", {"type": "dance"}, {"type": "resume"}):
                await sock.send(frame)
            await sock.until(lambda s: len(s.of("error")) == 4)
            codes = [e["code"] for e in sock.of("error")]
            assert codes == ["bad_frame", "bad_frame", "unknown_type", "bad_frame"]
            await asyncio.sleep(1.2)  # on purpose: the bucket refills
            await sock.send({"type": "ping"})
            await sock.until(lambda s: s.of("pong"))  # still open

            # A short burst over the limit: dropped with a warning, the socket stays.
            await asyncio.sleep(1.2)  # on purpose: the bucket refills
            for _ in range(8):
                await sock.send({"type": "ping"})
            await sock.until(lambda s: s.of("error")[-1]["code"] == "rate_limited")
            await asyncio.sleep(1.5)  # on purpose: the dropped frames drain, the bucket refills
            await sock.send({"type": "ping"})
            await sock.until(lambda s: len(s.of("pong")) >= 7)
            assert sock.closed is None

            # A flood that does not stop: closed with 1008.
            fresh = await http.post(
                "/auth/login", json={"email": "ann@example.com", "password": "secret-pw"}
            )
            token = fresh.json()["access_token"]
            flood = await Socket.open(system, token)
            with contextlib.suppress(websockets.ConnectionClosed):
                for _ in range(200):
                    await flood.send({"type": "ping"})
            assert await flood.close_code() == 1008
            assert flood.of("error")[0]["code"] == "rate_limited"

            big = await Socket.open(system, token)
            with contextlib.suppress(websockets.ConnectionClosed):
                await big.send(json.dumps({"type": "ping", "pad": "x" * 70_000}))
            assert await big.close_code() == 1009

            # The first token expires 8 s after it was issued: closed with 4401 then.
            assert await sock.close_code(timeout=10) == 4401
            assert time.time() - issued >= 7

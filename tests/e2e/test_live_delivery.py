"""End to end: live delivery keeps its promise when the live path loses messages.

A nats-server of the test's own is killed and restarted while notifications are being
sent to open sockets on two api processes; then notifications are stored without ever
being published (as when a publisher dies after its commit) right before a NATS
restart, and right before a notifier restart, so no later message reveals the loss.
Every socket still gets every seq of its inbox, once and in order, with no resume by
the client. Also: `hello` comes first while notifications arrive during the connect,
`resume` sent twice repeats nothing, and a bad ?after_seq is refused with 4400.
"""

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import websockets

from services.runtime import embedded
from tests.e2e.conftest import SERVICES, System, auth
from tests.e2e.test_notifications import Socket, admin_token, known_to_notifier
from tests.support import eventually, store_unpublished

pytestmark = pytest.mark.e2e


@contextlib.asynccontextmanager
async def two_apis(nats_url: str, database_url: str, log_dir: Path) -> AsyncIterator[list[System]]:
    """The whole system plus a second api process on its own port (same NATS and
    PostgreSQL), as Kubernetes runs replicas."""
    first = System(nats_url, database_url, log_dir)
    second = System(nats_url, database_url, log_dir / "second")
    second.log_dir.mkdir()
    second.env["PARKMATE_JWT_SECRET"] = first.env["PARKMATE_JWT_SECRET"]
    for name in SERVICES:
        first.start(name)
    second.start("api")
    try:
        await first.wait_ready()
        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(second.base + "/readyz")).status_code == 200:
                        break
                assert time.monotonic() < deadline, (log_dir / "second" / "api.log").read_text()
                await asyncio.sleep(0.2)
        yield [first, second]
    finally:
        codes = {**second.shutdown(), **{f"first {k}": v for k, v in first.shutdown().items()}}
    assert all(code == 0 for code in codes.values()), codes


async def inbox_seqs(http: httpx.AsyncClient, token: str) -> list[int]:
    """Every seq in the user's inbox, ascending (all pages)."""
    seqs: list[int] = []
    params: dict = {"limit": 200}
    deadline = time.monotonic() + 30
    while True:
        r = await http.get("/notifications", headers=auth(token), params=params)
        if r.status_code == 503 and time.monotonic() < deadline:  # still reconnecting
            await asyncio.sleep(0.2)
            continue
        assert r.status_code == 200, r.text
        page = r.json()
        seqs += [item["seq"] for item in page["items"]]
        if not page["next_cursor"]:
            return sorted(seqs)
        params["cursor"] = page["next_cursor"]


async def test_every_seq_arrives_once_in_order_across_a_nats_restart(database_url, tmp_path):
    port = embedded.free_port()
    nats_dir = tmp_path / "nats"
    server = embedded.start_nats(nats_dir, port=port)
    try:
        async with two_apis(server.url, database_url, tmp_path) as apis:
            async with apis[0].http() as http:
                admin = await admin_token(apis[0], http)
                users = [await apis[0].user(http, f"u{i}@example.com") for i in range(12)]
                await known_to_notifier(apis[0], len(users) + 1)
                # Users 0-5 on the first api, 6-11 on the second, 0-2 on both.
                sockets: list[tuple[str, Socket]] = []
                for i, (_, token) in enumerate(users):
                    replicas = [apis[0], apis[1]] if i < 3 else [apis[i // 6]]
                    for api in replicas:
                        sockets.append((token, await Socket.open(api, token)))
                ids = [uid for uid, _ in users]

                accepted: list[int] = []

                async def send(round_: int) -> None:
                    # During the outage the api answers 503; try again, as a client would.
                    for _ in range(200):
                        with contextlib.suppress(httpx.HTTPError):
                            r = await http.post(
                                "/admin/notifications",
                                headers=auth(admin),
                                json={
                                    "audience": {"user_ids": ids},
                                    "title": f"round {round_}",
                                    "body": "b",
                                },
                            )
                            if r.status_code == 202:
                                accepted.append(round_)
                                return
                        await asyncio.sleep(0.1)
                    raise AssertionError(f"round {round_} was never accepted")

                async def rounds() -> None:
                    for round_ in range(40):
                        await send(round_)
                        await asyncio.sleep(0.02)  # on purpose: rounds spread over the outage

                async def all_delivered(minimum: int) -> None:
                    for token, sock in sockets:
                        expected = await inbox_seqs(http, token)
                        assert len(expected) >= minimum
                        await sock.until(lambda s, e=expected: s.seqs()[-1:] == e[-1:], timeout=30)
                        assert sock.seqs() == expected, (sock.seqs(), expected)
                        assert sock.closed is None

                def kill_nats() -> None:
                    server.proc.send_signal(signal.SIGKILL)
                    server.proc.wait()

                # 1. NATS dies while rounds are being sent, and comes back.
                sender = asyncio.create_task(rounds())
                await eventually(lambda: len(accepted) >= 5, timeout=30)
                kill_nats()
                await asyncio.sleep(1.0)  # on purpose: NATS stays down a while
                server = embedded.start_nats(nats_dir, port=port)
                await sender
                await all_delivered(40)

                # 2. The last notifications were never published, then NATS restarts:
                # no later message shows the gap; the api's reconnect must.
                await store_unpublished(database_url, ids, "lost before a NATS restart")
                kill_nats()
                await asyncio.sleep(0.5)  # on purpose: NATS stays down a while
                server = embedded.start_nats(nats_dir, port=port)
                await all_delivered(41)

                # 3. The same, then the notifier restarts: its notify.sync must.
                await store_unpublished(database_url, ids, "lost before a notifier restart")
                assert apis[0].stop("notifier") == 0
                apis[0].start("notifier")
                await all_delivered(42)
                for _, sock in sockets:
                    await sock.close()
    finally:
        server.stop()


async def test_hello_first_while_notifications_arrive_and_resume_twice(system):
    async with system.http() as http:
        admin = await admin_token(system, http)
        uid, token = await system.user(http, "ann@example.com")
        await known_to_notifier(system, 2)
        stop = asyncio.Event()

        async def stream() -> None:
            while not stop.is_set():
                r = await http.post(
                    "/admin/notifications",
                    headers=auth(admin),
                    json={"audience": {"user_ids": [uid]}, "title": "t", "body": "b"},
                )
                assert r.status_code == 202, r.text

        senders = [asyncio.create_task(stream()) for _ in range(3)]
        try:
            for attempt in range(15):
                query = "&after_seq=0" if attempt % 2 else ""
                ws = await websockets.connect(f"ws://127.0.0.1:{system.port}/ws?token={token}")
                first = json.loads(await ws.recv())
                assert first["type"] == "hello", (attempt, first)
                await ws.close()
                if query:  # with a replay: seqs 1.. with no gap and no repeat
                    sock = await Socket.open(system, token, query)
                    head = sock.hello["last_seq"]
                    await sock.until(lambda s, h=head: len(s.seqs()) >= h)
                    seqs = sock.seqs()
                    assert seqs == list(range(1, len(seqs) + 1)), seqs
                    await sock.close()
        finally:
            stop.set()
            await asyncio.gather(*senders)

        sock = await Socket.open(system, token)
        head = sock.hello["last_seq"]
        await sock.send({"type": "resume", "after_seq": head - 5})
        await sock.until(lambda s: len(s.seqs()) == 5)
        await sock.send({"type": "resume", "after_seq": head - 5})
        await sock.send({"type": "resume", "after_seq": head - 8})
        await sock.until(lambda s: len(s.seqs()) == 8)
        await sock.send({"type": "ping"})
        await sock.until(lambda s: s.of("pong"))
        seqs = sock.seqs()
        assert sorted(seqs) == list(range(head - 7, head + 1)) and len(set(seqs)) == len(seqs)
        await sock.close()


async def test_a_bad_after_seq_is_refused_with_4400(system):
    async with system.http() as http:
        _, token = await system.user(http, "bob@example.com")
    for value in ("-1", "abc", "1.5", "", "%C2%B2", "99999999999999999999"):
        ws = await websockets.connect(
            f"ws://127.0.0.1:{system.port}/ws?token={token}&after_seq={value}"
        )
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd.code == 4400, value
        assert "after_seq" in closed.value.rcvd.reason

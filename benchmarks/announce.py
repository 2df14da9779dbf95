"""Announcement fan-out: one announcement to every user, stored set-based, pushed live.

    .venv/bin/python -m benchmarks.announce [--users 10000] [--sockets 1000]

Starts nats-server and PostgreSQL of its own (or uses PARKMATE_NATS_URL /
PARKMATE_DATABASE_URL), applies migrations, registers `--users` users in the
notifier's own table, runs the notifier and the api as processes, opens `--sockets`
WebSockets (one per user), then:

1. store: the set-based insert of one notification per user (one statement that
   allocates every user's next seq), timed on its own, against a baseline in the same
   run: the same notifications stored by a per-user loop of single inserts;
2. fan-out: POST /api/v1/admin/notifications to everyone, timed to the 202 (store,
   unread counts and one NATS message per recipient) and until every open socket has
   its `notification` frame.

Prints the figures; asserts nothing about time (machines differ, and are noisy).
"""

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import sqlalchemy as sa
import websockets

from services.api import identity
from services.contracts.ids import uuid7
from services.notifier import storage
from services.runtime import embedded
from services.runtime.db import make_engine
from services.runtime.migrate import upgrade_all

SECRET = "benchmark-secret-that-is-32-bytes-long!"
KEYS = identity.Keyring.of(SECRET)


async def register_users(engine, count: int) -> list[str]:
    """`count` users in notifier.users with one set-based insert; their ids, ascending."""
    ids = sorted(str(uuid7()) for _ in range(count))
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO notifier.users (user_id, roles, registered_at) "
                "SELECT u, ARRAY['driver'], now() FROM unnest(CAST(:ids AS uuid[])) AS u"
            ),
            {"ids": ids},
        )
    return ids


async def store_set_based(engine, ids: list[str]) -> float:
    """Seconds for one set-based insert of a notification for each of `ids`."""
    started = time.perf_counter()
    async with engine.begin() as conn:
        rows = await storage.bulk_store(
            conn,
            user_ids=ids,
            silent=[],
            event_id=str(uuid7()),
            type="announcement",
            level="info",
            priority="normal",
            title="Set-based",
            body="One statement",
            data="{}",
            now=datetime.now(UTC),
            expires_at=None,
        )
    assert len(rows) == len(ids)
    return time.perf_counter() - started


async def store_loop(engine, ids: list[str]) -> float:
    """Seconds for the baseline: the same notifications, one `storage.store` per user
    (seq allocation and insert: two round trips each) in one transaction."""
    event_id = str(uuid7())
    started = time.perf_counter()
    async with engine.begin() as conn:
        for user_id in ids:
            await storage.store(
                conn,
                id=str(uuid7()),
                user_id=user_id,
                event_id=event_id,
                type="announcement",
                level="info",
                priority="normal",
                title="Loop",
                body="One insert per user",
                data={},
                created_at=datetime.now(UTC),
            )
    return time.perf_counter() - started


def start(service: str, env: dict, log_dir: Path) -> subprocess.Popen:
    log = open(log_dir / f"{service}.log", "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "run", service], env=env, stdout=log, stderr=log
    )


async def wait_http(url: str, procs: list[subprocess.Popen], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while True:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a service exited while starting; see its log")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout} s")
            await asyncio.sleep(0.2)


async def open_sockets(port: int, ids: list[str]) -> list:
    async def one(user_id: str):
        token = identity.issue_token(KEYS, user_id, ["driver"], 3600)
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws?token={token}", max_size=None)
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello"
        return ws

    sockets = []
    for i in range(0, len(ids), 100):  # in batches, not to flood the accept queue
        sockets += await asyncio.gather(*(one(u) for u in ids[i : i + 100]))
    return sockets


async def first_notification(ws, title: str) -> float:
    while True:
        frame = json.loads(await ws.recv())
        if frame["type"] == "notification" and frame["notification"]["title"] == title:
            return time.perf_counter()
        if frame["type"] == "ping":
            await ws.send('{"type":"pong"}')


async def run(args, nats_url: str, db_url: str, log_dir: Path) -> None:
    await asyncio.to_thread(upgrade_all, db_url)
    engine = make_engine(db_url)
    ids = await register_users(engine, args.users)
    print(f"users: {len(ids):,}; sockets: {min(args.sockets, len(ids)):,}")

    set_based = await store_set_based(engine, ids)
    loop = await store_loop(engine, ids)
    print(
        f"store, set-based: {set_based * 1000:,.0f} ms "
        f"({len(ids) / set_based:,.0f} rows/s)\n"
        f"store, per-user loop (baseline): {loop * 1000:,.0f} ms "
        f"({len(ids) / loop:,.0f} rows/s)\n"
        f"set-based is {loop / set_based:,.1f}x faster"
    )

    port = embedded.free_port()
    env = {
        **os.environ,
        "PARKMATE_NATS_URL": nats_url,
        "PARKMATE_DATABASE_URL": db_url,
        "PARKMATE_PORT": str(port),
        "PARKMATE_JWT_SECRET": SECRET,
        "PARKMATE_WS_SEND_QUEUE": "1024",
        "PARKMATE_WS_PING_SECONDS": "3600",  # idle sockets wait while the others open
    }
    procs = [start(s, env, log_dir) for s in ("notifier", "api")]
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz", procs)
        await asyncio.sleep(1.0)  # the notifier's consumers and micro service
        t0 = time.perf_counter()
        sockets = await open_sockets(port, ids[: args.sockets])
        print(f"opened {len(sockets):,} sockets in {time.perf_counter() - t0:.1f} s")
        admin = identity.issue_token(KEYS, str(uuid7()), ["admin"], 3600)
        title = "Announcement to everyone"
        waiters = [asyncio.create_task(first_notification(ws, title)) for ws in sockets]
        async with httpx.AsyncClient(timeout=120) as http:
            started = time.perf_counter()
            r = await http.post(
                f"http://127.0.0.1:{port}/api/v1/admin/notifications",
                headers={"Authorization": f"Bearer {admin}"},
                json={"audience": {"all": True}, "title": title, "body": "Fan-out benchmark"},
            )
            answered = time.perf_counter() - started
        assert r.status_code == 202, r.text
        arrivals = sorted(t - started for t in await asyncio.gather(*waiters))
        recipients = r.json()["recipients"]
        print(
            f"POST /admin/notifications (all): 202 after {answered * 1000:,.0f} ms for "
            f"{recipients:,} recipients ({recipients / answered:,.0f} notifications/s "
            "stored and published)\n"
            f"sockets with the frame: first {arrivals[0] * 1000:,.0f} ms, "
            f"median {statistics.median(arrivals) * 1000:,.0f} ms, "
            f"all {len(arrivals):,} by {arrivals[-1] * 1000:,.0f} ms"
        )
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--sockets", type=int, default=1_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="parkmate-bench-") as tmp:
        tmp_path = Path(tmp)
        started = []
        try:
            nats_url = os.environ.get("PARKMATE_NATS_URL")
            if not nats_url:
                started.append(embedded.start_nats(tmp_path / "nats"))
                nats_url = started[-1].url
            db_url = os.environ.get("PARKMATE_DATABASE_URL")
            if not db_url:
                started.append(embedded.start_postgres(tmp_path / "pg"))
                db_url = started[-1].url
            asyncio.run(run(args, nats_url, db_url, tmp_path))
        finally:
            for proc in reversed(started):
                proc.stop()


if __name__ == "__main__":
    main()

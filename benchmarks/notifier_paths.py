"""Cost of the notifier's hot path: PostgreSQL round trips and CPU per fetched batch.

    .venv/bin/python -m benchmarks.notifier_paths [--database-url URL] [--n 400]
        [--batch 20] [--json PATH]

Calls `services.notifier.handlers.on_events` in this process (no consumer), against a
real PostgreSQL (as in `benchmarks.bookings_paths`: a new database of `--database-url`,
else one started with pgserver) and a real nats-server started here, which takes the
live publishes. Each booking event notifies its driver and the lot's owner, as in a
replay: `--n` drivers renew one after another, first one event per batch (what the
consumer hands over when traffic is light), then `--batch` events per batch; both as
first deliveries (no check for stored rows, what the consumer does with fresh events)
and then "checked" (as for a redelivery), so the two compare within one run. Before
them, the drivers' user.registered events are handled in batches of `--batch`; after
them, each driver acks a notification, one request each and then in batches of
`--batch`. The "registrations" and "ack" rows are per registration or ack, not per
batch.

Prints, per path and per batch (per call): statements, BEGIN and COMMIT/ROLLBACK, their sum
(round trips), and this process's CPU milliseconds (`time.process_time`, the handler's
Python side including its publishes; PostgreSQL's and nats-server's own CPU are not in
it). Round trips are exact; CPU is from one noisy run. Asserts nothing.
"""

import argparse
import asyncio
import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import nats

from benchmarks.bookings_paths import Cost, Counting, print_rows, with_database
from services.contracts import notifier as c
from services.contracts import subjects
from services.contracts.bookings import BookingEventData, Money
from services.contracts.envelope import new_event
from services.contracts.identity import UserRegisteredData
from services.contracts.ids import uuid7
from services.notifier import handlers
from services.runtime import embedded
from services.runtime.db import make_engine


def renewed(driver: str, owner: str, booking_id: str, version: int) -> bytes:
    """A booking.renewed event of `booking_id` (JSON bytes, as the consumer gets it)."""
    end = datetime.now(UTC) + timedelta(hours=version)
    data = BookingEventData(
        booking_id=booking_id,
        lot_id=owner,
        lot_name="Bench Street",
        slot_id=booking_id,
        slot_label="A1",
        driver_id=driver,
        owner_id=owner,
        status="active",
        start_time=end - timedelta(hours=1),
        end_time=end,
        version=version,
        renewals=version - 1,
        booking_seconds=3600,
        warning_seconds=600,
        price=Money("2.00"),
        payment_method="cash",
        payment_status="pending",
    )
    return msgspec.json.encode(new_event(subjects.BOOKING_RENEWED, "bench", data, booking_id))


def registered(user_id: str) -> bytes:
    """A user.registered event of a driver (JSON bytes)."""
    data = UserRegisteredData(
        user_id=user_id, email=f"{user_id}@example.com", full_name="Bench", roles=["driver"]
    )
    return msgspec.json.encode(new_event(subjects.USER_REGISTERED, "bench", data, user_id))


async def run(database_url: str, nats_url: str, n: int, batch: int) -> dict[str, dict]:
    engine = make_engine(database_url, pool_size=4)
    counting = Counting(engine)
    nc = await nats.connect(nats_url)
    deps = handlers.Deps(engine=engine, nc=nc)
    owner = str(uuid7())
    drivers = [(str(uuid7()), str(uuid7())) for _ in range(n)]
    costs = {"registrations": Cost()}

    for start in range(0, n, batch):  # user.registered, as the users consumer fetches it
        part = [registered(d) for d, _ in drivers[start : start + batch]]

        async def register(part=part):
            await handlers.on_user_events(deps, part)

        await counting.measure(costs["registrations"], len(part), register)

    # Warm-up (prepared statements, compiled cache, every inbox made): not counted.
    for driver, booking in drivers:
        await handlers.on_events(deps, [renewed(driver, owner, booking, 1)])
    version = 1
    for first, how in [(True, "first delivery"), (False, "checked")]:
        version += 1
        costs[f"1 per batch, {how}"] = cost = Cost()
        for driver, booking in drivers:
            payload = renewed(driver, owner, booking, version)

            async def one(payload=payload, first=first):
                await handlers.on_events(deps, [payload], first_delivery=first)

            await counting.measure(cost, 1, one)
        version += 1
        costs[f"{batch} per batch, {how}"] = cost = Cost()
        for start in range(0, n, batch):
            payloads = [renewed(d, owner, b, version) for d, b in drivers[start : start + batch]]

            async def many(payloads=payloads, first=first):
                await handlers.on_events(deps, payloads, first_delivery=first)

            await counting.measure(cost, 1, many)
    # Acks of every driver's last notification: one per request (notifier.inbox.ack),
    # then as the api gathers them (notifier.inbox.ack_batch).
    costs["ack, one each"] = Cost()
    costs["ack, batched"] = Cost()
    for driver, _ in drivers:

        async def ack(driver=driver):
            await handlers.ack(deps, c.AckRequest(user_id=driver, seq=2))

        await counting.measure(costs["ack, one each"], 1, ack)
    for start in range(0, n, batch):
        part = [c.AckRequest(user_id=d, seq=3) for d, _ in drivers[start : start + batch]]

        async def acks(part=part):
            await handlers.ack_batch(deps, c.AckBatch(items=part))

        await counting.measure(costs["ack, batched"], len(part), acks)
    await nc.drain()
    await engine.dispose()
    return {name: cost.row() for name, cost in costs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL where we may CREATE DATABASE")
    parser.add_argument("--n", type=int, default=400, help="drivers (one booking each)")
    parser.add_argument("--batch", type=int, default=20, help="events per batch")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    server = embedded.start_nats(Path(tempfile.mkdtemp(prefix="bench-nats-")))
    try:
        rows = asyncio.run(
            with_database(args.database_url, lambda url: run(url, server.url, args.n, args.batch))
        )
    finally:
        server.stop()
    print_rows(rows, "batches")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()

"""Cost of each hot path of the bookings service: PostgreSQL round trips and CPU per call.

    .venv/bin/python -m benchmarks.bookings_paths [--database-url URL] [--n 500]
        [--batch 50] [--json PATH]

Calls the bookings handlers in this process (no NATS, no HTTP), each against a real
PostgreSQL: the given `--database-url` (a database where we may CREATE DATABASE; a new
one is made and dropped), else PostgreSQL started with pgserver in a temporary folder.
For `--n` bookings of one lot it runs, in turn: create, renew (an active booking), renew
again `--batch` at once (as a busy service gets them), fire the warnings and the expiries
(batches of `--batch`, as the timer consumer hands them over), renew an expired booking
within grace (a rebook), and cancel.

Prints, per path and per call: statements sent, BEGIN and COMMIT/ROLLBACK (each one
more round trip), their sum (round trips), and this process's CPU milliseconds
(`time.process_time`, the handlers' Python side), and PostgreSQL's CPU milliseconds
(its processes on this host, read with psutil, counted in clock ticks of 10 ms: give
paths hundreds of calls, as the default `--n` does). Round trips are exact; CPU is from
one noisy run, so compare runs made in the same sitting. Asserts nothing.
"""

import argparse
import asyncio
import contextlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import psutil
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.bookings.handlers import bookings as booking_handlers
from services.bookings.handlers import lots as lot_handlers
from services.bookings.handlers import timers as timer_handlers
from services.bookings.handlers.common import Deps, utcnow
from services.bookings.payments import SimulatedProvider
from services.contracts import bookings as c
from services.contracts.ids import uuid7
from services.contracts.timers import TimerFired
from services.runtime.db import async_url, make_engine
from services.runtime.migrate import upgrade_all


@dataclass
class Cost:
    """Round trips and CPU of one path over `calls` calls."""

    calls: int = 0
    statements: int = 0
    begins: int = 0
    ends: int = 0
    cpu_seconds: float = 0.0
    server_cpu_seconds: float = 0.0

    def row(self) -> dict:
        n = max(1, self.calls)
        return {
            "calls": self.calls,
            "statements_per_call": round(self.statements / n, 2),
            "begin_per_call": round(self.begins / n, 2),
            "commit_or_rollback_per_call": round(self.ends / n, 2),
            "round_trips_per_call": round((self.statements + self.begins + self.ends) / n, 2),
            "cpu_ms_per_call": round(self.cpu_seconds * 1000 / n, 3),
            "server_cpu_ms_per_call": round(self.server_cpu_seconds * 1000 / n, 3),
        }


class Counting:
    """Counts the queries an engine's connections send: SQLAlchemy's statements (its
    cursor events), and through asyncpg's query logger everything else (BEGIN, COMMIT
    and statements on a raw connection; the logger does not see the prepared statements
    SQLAlchemy executes, so nothing is counted twice)."""

    def __init__(self, engine: AsyncEngine):
        self.counts: Counter = Counter()
        sync = engine.sync_engine
        event.listen(sync, "connect", self._watch)
        event.listen(sync, "before_cursor_execute", self._statement)

    def _statement(self, conn, cursor, statement, parameters, context, executemany):
        self.counts["statement"] += 1

    def _watch(self, dbapi_connection, record) -> None:
        dbapi_connection.driver_connection.add_query_logger(self._query)

    def _query(self, record) -> None:
        query = record.query.strip().rstrip(";").upper()
        if query.startswith("BEGIN"):
            self.counts["begin"] += 1
        elif query in ("COMMIT", "ROLLBACK"):
            self.counts["end"] += 1
        else:
            self.counts["statement"] += 1

    async def measure(self, cost: Cost, calls: int, work: Callable[[], Awaitable]) -> None:
        before = self.counts.copy()
        server = server_cpu()
        started = time.process_time()
        await work()
        cost.cpu_seconds += time.process_time() - started
        cost.server_cpu_seconds += server_cpu() - server
        cost.calls += calls
        diff = self.counts - before
        cost.statements += diff["statement"]
        cost.begins += diff["begin"]
        cost.ends += diff["end"]


def server_cpu() -> float:
    """CPU seconds (user + system) of this host's PostgreSQL processes so far: the
    server's side of the calls when it runs here (other databases' work on the same
    server counts too, so run it on a quiet one)."""
    total = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "postgres":
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
    return total


async def run(database_url: str, n: int, batch: int) -> dict[str, dict]:
    engine = make_engine(database_url, pool_size=4)
    counting = Counting(engine)
    clock_offset = timedelta(0)

    def clock():
        return utcnow() + clock_offset

    deps = Deps(engine=engine, payments=SimulatedProvider(), clock=clock)
    owner = c.Actor(user_id=str(uuid7()), roles=["owner"])
    lot = await lot_handlers.create_lot(
        deps,
        c.CreateLot(
            actor=owner,
            name="Bench",
            address="1 Bench Street",
            slot_count=n,
            booking_seconds=3600,
            warning_seconds=600,
            price_per_hour=c.Money("2.00"),
        ),
    )
    slots = await lot_handlers.list_slots(deps, c.ListSlots(actor=owner, lot_id=lot.id))
    drivers = [c.Actor(user_id=str(uuid7()), roles=["driver"]) for _ in range(n)]
    costs = {
        name: Cost()
        for name in (
            "create",
            "renew",
            "renew together",
            "warning",
            "expiry",
            "rebook",
            "cancel",
            "decline",
        )
    }
    views: list[c.BookingView] = []

    async def one(path: str, fn, req):
        async def work():
            views_out.append(await fn(deps, req))

        views_out: list = []
        await counting.measure(costs[path], 1, work)
        return views_out[0]

    # Warm the prepared-statement caches and SQLAlchemy's compiled cache first.
    for k, (driver, slot) in enumerate(zip(drivers, slots.items, strict=True)):
        req = c.CreateBooking(actor=driver, slot_id=slot.id)
        view = await one("create", booking_handlers.create_booking, req)
        views.append(view)
        if k == 0:
            costs["create"] = Cost()
    for k, (driver, view) in enumerate(zip(drivers, views, strict=True)):
        req = c.RenewBooking(actor=driver, booking_id=view.id)
        views[k] = await one("renew", booking_handlers.renew_booking, req)
    # The same renewals again, `batch` at once, as a busy service gets them.
    for start in range(0, n, batch):
        reqs = [
            c.RenewBooking(actor=driver, booking_id=view.id)
            for driver, view in zip(
                drivers[start : start + batch], views[start : start + batch], strict=True
            )
        ]

        async def together(reqs=reqs, start=start):
            done = await asyncio.gather(*(booking_handlers.renew_booking(deps, r) for r in reqs))
            views[start : start + len(done)] = done

        await counting.measure(costs["renew together"], len(reqs), together)
    # Fire warnings and expiries as the TIMERS consumer would, in batches.
    for kind in ("warning", "expiry"):
        if kind == "expiry":
            clock_offset = timedelta(hours=4)  # two renewals: the end is 3 hours on
        for start in range(0, n, batch):
            part = views[start : start + batch]
            fired = [
                TimerFired(
                    booking_id=v.id,
                    kind=kind,
                    version=v.renewals + 1,
                    end_time=v.end_time,
                    fire_at=v.end_time
                    - (timedelta(minutes=10) if kind == "warning" else timedelta(0)),
                )
                for v in part
            ]

            async def work(fired=fired):
                await timer_handlers.on_timers_fired(deps, fired)

            await counting.measure(costs[kind], len(part), work)
    clock_offset = timedelta(hours=3, minutes=5)  # expired 5 minutes ago: within grace
    for k, (driver, view) in enumerate(zip(drivers, views, strict=True)):
        req = c.RenewBooking(actor=driver, booking_id=view.id)
        views[k] = await one("rebook", booking_handlers.renew_booking, req)
    half = n // 2
    for driver, view in zip(drivers[:half], views[:half], strict=True):
        req = c.CancelBooking(actor=driver, booking_id=view.id)
        await one("cancel", booking_handlers.cancel_booking, req)
    for view in views[half:]:
        req = c.DeclineBooking(actor=owner, booking_id=view.id, reason="benchmark")
        await one("decline", booking_handlers.decline_booking, req)
    await engine.dispose()
    return {name: cost.row() for name, cost in costs.items()}


async def with_database(
    admin_url: str | None, work: Callable[[str], Awaitable[dict[str, dict]]]
) -> dict[str, dict]:
    """`work(database_url)` on a new, migrated database (dropped afterwards) of the
    PostgreSQL at `admin_url`, or of one started with pgserver when it is None."""
    server = None
    if admin_url is None:
        import tempfile
        from pathlib import Path

        from services.runtime import embedded

        server = embedded.start_postgres(Path(tempfile.mkdtemp(prefix="bench-pg-")))
        admin_url = server.url
    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(async_url(admin_url), isolation_level="AUTOCOMMIT")
    base = admin_url.rpartition("/")[0]
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        await asyncio.to_thread(upgrade_all, f"{base}/{name}")
        return await work(f"{base}/{name}")
    finally:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
        if server is not None:
            server.stop()


def print_rows(rows: dict[str, dict], calls: str) -> None:
    """Print `Cost.row()`s, one line per path; `calls` names what a call is."""
    width = max(len(name) for name in rows)
    print(
        f"{'path':{width}} {calls:>7} {'stmts':>6} {'BEGIN':>6} {'END':>6} {'RTs':>6} "
        f"{'CPU ms':>8} {'PG CPU ms':>9}"
    )
    for name, r in rows.items():
        print(
            f"{name:{width}} {r['calls']:>7} {r['statements_per_call']:>6} "
            f"{r['begin_per_call']:>6} {r['commit_or_rollback_per_call']:>6} "
            f"{r['round_trips_per_call']:>6} {r['cpu_ms_per_call']:>8} "
            f"{r['server_cpu_ms_per_call']:>9}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL where we may CREATE DATABASE")
    parser.add_argument("--n", type=int, default=500, help="bookings (and slots)")
    parser.add_argument("--batch", type=int, default=50, help="fired timers per batch")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    rows = asyncio.run(with_database(args.database_url, lambda url: run(url, args.n, args.batch)))
    print_rows(rows, "calls")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()

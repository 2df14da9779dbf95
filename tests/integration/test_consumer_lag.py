"""parkmate_consumer_pending_messages: a durable's lag as Prometheus sees it, against a
real JetStream (what the Grafana dashboard's consumer-lag panel shows)."""

import asyncio

from prometheus_client import REGISTRY

from services.runtime.consumer import run_pull_consumer
from tests.support import eventually


def pending(durable: str) -> float | None:
    return REGISTRY.get_sample_value("parkmate_consumer_pending_messages", {"durable": durable})


async def test_pending_counts_down_as_batches_are_fetched_and_is_zero_when_caught_up(nc):
    js = nc.jetstream()
    for i in range(30):
        await js.publish("user.lagtest", str(i).encode())
    seen: list[float | None] = []

    async def handle(msg) -> None:
        seen.append(pending("lag-test"))

    stop = asyncio.Event()
    task = asyncio.create_task(
        run_pull_consumer(
            js, "EVENTS", "lag-test", ["user.lagtest"], handle, stop, batch=10, service="test"
        )
    )
    try:
        await eventually(lambda: asyncio.sleep(0, len(seen) == 30))
        # While each batch is handled, the gauge holds what was still undelivered
        # behind it. A batch holds at most 10 but may hold fewer (the loop takes what
        # has arrived), so message i's batch ends somewhere in i..i+9.
        assert all(20 - i <= left <= 29 - i for i, left in enumerate(seen)), seen
        assert seen == sorted(seen, reverse=True) and seen[-1] == 0, seen
        await js.publish("user.lagtest", b"late")
        await eventually(lambda: asyncio.sleep(0, len(seen) == 31))
        await eventually(lambda: asyncio.sleep(0, pending("lag-test") == 0))
    finally:
        stop.set()
        await task

"""ConnectionEvents against a real nats-server: what core NATS may have lost is
reported to the listeners the gateway relies on (services/api/gateway.py)."""

import asyncio

from services.runtime import natsconn
from tests.support import eventually


async def test_a_slow_consumer_drop_reaches_the_listener_with_its_subscription(nats_url):
    events = natsconn.ConnectionEvents()
    dropped = []
    events.slow_consumer.append(dropped.append)
    nc = await natsconn.connect(nats_url, "test-slow-consumer", events)
    try:
        release = asyncio.Event()

        async def stuck(msg) -> None:
            await release.wait()

        sub = await nc.subscribe("test.slow", cb=stuck, pending_msgs_limit=2)
        for i in range(10):
            await nc.publish("test.slow", str(i).encode())
        await nc.flush()
        await eventually(lambda: dropped)
        assert dropped and all(s is sub for s in dropped)
        release.set()
    finally:
        await nc.close()

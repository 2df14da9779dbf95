"""A durable's short ack wait: applied to an existing consumer at start, and kept from
redelivering a batch that is slow but alive (progress acks)."""

import asyncio

from nats.js.api import AckPolicy, ConsumerConfig

from services.runtime.consumer import ACK_WAIT_SECONDS, run_pull_consumer
from tests.support import consumed, eventually


async def test_an_existing_durable_gets_the_short_ack_wait_at_start(nc):
    js = nc.jetstream()
    await js.add_consumer(
        "EVENTS",
        ConsumerConfig(
            durable_name="ackwait-old",
            ack_policy=AckPolicy.EXPLICIT,
            filter_subjects=["user.ackwait"],
            ack_wait=30.0,
        ),
    )
    stop, ready = asyncio.Event(), asyncio.Event()

    async def handle(msg) -> None:
        return None

    task = asyncio.create_task(
        run_pull_consumer(
            js, "EVENTS", "ackwait-old", ["user.ackwait"], handle, stop, ready=ready, service="t"
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), 10)
        info = await js.consumer_info("EVENTS", "ackwait-old")
        assert info.config.ack_wait == ACK_WAIT_SECONDS
    finally:
        stop.set()
        await task


async def test_a_batch_slower_than_ack_wait_is_delivered_once(nc):
    """Two replicas of the durable: without progress acks the second one would get the
    first one's batch again after the 1 s ack wait."""
    js = nc.jetstream()
    for i in range(5):
        await js.publish("user.slowbatch", str(i).encode())
    deliveries: list[tuple[bytes, int]] = []

    async def handle_batch(msgs) -> list[None]:
        deliveries.extend((m.data, m.metadata.num_delivered) for m in msgs)
        await asyncio.sleep(2.5)  # on purpose: a batch that outlasts the 1 s ack wait
        return [None] * len(msgs)

    async def handle(msg) -> None:
        deliveries.append((msg.data, msg.metadata.num_delivered))

    stop = asyncio.Event()
    replicas = [
        asyncio.create_task(
            run_pull_consumer(
                js,
                "EVENTS",
                "slow-batch",
                ["user.slowbatch"],
                handle,
                stop,
                ack_wait=1.0,
                service="t",
                batch_handler=handle_batch,
            )
        )
        for _ in range(2)
    ]
    try:
        await eventually(lambda: len(deliveries) >= 5, timeout=15)
        await consumed(js, "EVENTS", "slow-batch")
        assert sorted(deliveries) == [(str(i).encode(), 1) for i in range(5)], deliveries
    finally:
        stop.set()
        await asyncio.gather(*replicas)

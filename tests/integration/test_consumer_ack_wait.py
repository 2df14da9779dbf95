"""A durable's short ack wait: applied to an existing consumer at start, and kept from
redelivering a batch that is slow but alive (progress acks)."""

import asyncio

from nats.js.api import AckPolicy, ConsumerConfig

from services.runtime.consumer import ACK_WAIT_SECONDS, run_pull_consumer
from tests.support import consumed, eventually, nats_client


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


async def test_a_batch_held_by_a_dead_process_comes_back_within_the_ack_wait(nc, nats_url):
    """A process fetched a batch and died without a word (kill -9): the server gives the
    batch to the consumer that runs next after ACK_WAIT_SECONDS, not half a minute."""
    js = nc.jetstream()
    stop, ready = asyncio.Event(), asyncio.Event()
    handled: list[tuple[bytes, int]] = []

    async def handle(msg) -> None:
        handled.append((msg.data, msg.metadata.num_delivered))

    def consumer() -> asyncio.Task:
        return asyncio.create_task(
            run_pull_consumer(
                js, "EVENTS", "held", ["user.held"], handle, stop, ready=ready, service="t"
            )
        )

    first = consumer()  # makes the durable with the service's own config
    await asyncio.wait_for(ready.wait(), 10)
    stop.set()
    await first
    for i in range(3):
        await js.publish("user.held", str(i).encode())
    async with nats_client(nats_url) as doomed:
        sub = await doomed.jetstream().pull_subscribe_bind("held", "EVENTS")
        assert len(await sub.fetch(3, timeout=5)) == 3
        # The connection closes without an ack or a nak: what a killed process leaves.
    stop.clear()
    second = consumer()
    try:
        await eventually(lambda: len(handled) == 3, timeout=ACK_WAIT_SECONDS + 3)
        assert sorted(handled) == [(str(i).encode(), 2) for i in range(3)]
    finally:
        stop.set()
        await second

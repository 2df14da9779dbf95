"""A durable consumer asks for its messages ahead of need (services/runtime/consumer.py,
`Puller`): one pull request for many messages, nothing lost when it stops with
messages delivered ahead, and the pull asked again after the server forgot it."""

import asyncio

import nats
from nats.aio.msg import Msg

from services.runtime import embedded
from services.runtime.consumer import run_pull_consumer
from services.runtime.natsconn import ensure_streams
from tests.support import consumed, eventually


def consumer(js, durable: str, subject: str, handle, stop: asyncio.Event, **kw) -> asyncio.Task:
    return asyncio.create_task(
        run_pull_consumer(js, "EVENTS", durable, [subject], handle, stop, service="t", **kw)
    )


async def test_a_consumer_that_keeps_up_sends_no_pull_request_per_message(nc):
    """Messages one at a time, each handled before the next is published: nats-py's
    fetch sent a pull request per message (and the server a status back); pulling
    ahead asks once per half batch."""
    js = nc.jetstream()
    requests: list[Msg] = []

    async def count(msg: Msg) -> None:
        requests.append(msg)

    await nc.subscribe("$JS.API.CONSUMER.MSG.NEXT.EVENTS.ahead", cb=count)
    handled: list[bytes] = []

    async def handle(msg: Msg) -> None:
        handled.append(msg.data)

    stop, ready = asyncio.Event(), asyncio.Event()
    task = consumer(js, "ahead", "user.ahead", handle, stop, batch=64, ready=ready)
    try:
        await asyncio.wait_for(ready.wait(), 10)
        for i in range(100):
            await js.publish("user.ahead", str(i).encode())
            await eventually(lambda n=i: len(handled) == n + 1)
        assert handled == [str(i).encode() for i in range(100)]
        # 100 deliveries, a request each time 32 of the 64 asked for have come.
        assert 1 <= len(requests) <= 100 // 32 + 2, len(requests)
    finally:
        stop.set()
        await task


async def test_messages_delivered_ahead_go_back_at_once_when_the_consumer_stops(nc):
    """The first message is in hand, four more wait in the puller's queue when the
    consumer is told to stop. They are nak'd, not left to the 30 s ack wait: the next
    consumer of the durable gets them, each handled exactly once in all."""
    js = nc.jetstream()
    release = asyncio.Event()
    first: list[tuple[bytes, int]] = []

    async def slow(msg: Msg) -> None:
        first.append((msg.data, msg.metadata.num_delivered))
        await release.wait()

    stop, ready = asyncio.Event(), asyncio.Event()
    task = consumer(js, "ahead-stop", "user.aheadstop", slow, stop, ack_wait=30.0, ready=ready)
    await asyncio.wait_for(ready.wait(), 10)
    await js.publish("user.aheadstop", b"0")
    await eventually(lambda: first)  # "0" alone is the batch in hand
    for i in range(1, 5):
        await js.publish("user.aheadstop", str(i).encode())

    async def all_delivered() -> bool:
        info = await js.consumer_info("EVENTS", "ahead-stop")
        return info.num_pending == 0 and info.num_ack_pending == 5

    await eventually(all_delivered)
    assert first == [(b"0", 1)]
    stop.set()
    release.set()
    await task

    later: list[tuple[bytes, int]] = []

    async def handle(msg: Msg) -> None:
        later.append((msg.data, msg.metadata.num_delivered))

    stop = asyncio.Event()
    task = consumer(js, "ahead-stop", "user.aheadstop", handle, stop, ack_wait=30.0)
    try:
        await eventually(lambda: len(later) == 4, timeout=15)
        assert sorted(later) == [(str(i).encode(), 2) for i in range(1, 5)]
        await consumed(js, "EVENTS", "ahead-stop")
    finally:
        stop.set()
        await task


async def test_the_pull_is_asked_again_when_the_server_restarted(tmp_path):
    """A restarted nats-server has forgotten the waiting pull requests: the consumer
    asks again and gets what is published after the restart."""
    server = embedded.start_nats(tmp_path / "nats")
    port = int(server.url.rsplit(":", 1)[1])
    nc = await nats.connect(server.url, reconnect_time_wait=0.5, max_reconnect_attempts=-1)
    handled: list[bytes] = []

    async def handle(msg: Msg) -> None:
        handled.append(msg.data)

    stop = asyncio.Event()
    task = None
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        task = consumer(js, "ahead-restart", "user.aheadrestart", handle, stop)
        await js.publish("user.aheadrestart", b"before")
        await eventually(lambda: handled == [b"before"])
        server.proc.kill()
        server.proc.wait()
        server = embedded.start_nats(tmp_path / "nats", port=port)
        await eventually(lambda: nc.is_connected and nc.stats["reconnects"] == 1, timeout=20)
        await js.publish("user.aheadrestart", b"after")
        await eventually(lambda: handled == [b"before", b"after"], timeout=20)
    finally:
        stop.set()
        if task is not None:
            await task
        await nc.close()
        server.stop()

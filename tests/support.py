"""Helpers shared by integration and end-to-end tests."""

import asyncio
import contextlib
import inspect
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import msgspec
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, ConsumerInfo, DeliverPolicy
from nats.js.errors import NotFoundError

from services.runtime.lifecycle import started


@contextlib.asynccontextmanager
async def running(
    serve: Callable[..., Awaitable[None]], settings: Any, timeout: float = 30.0
) -> AsyncIterator[None]:
    """Run a service's `serve(settings, stop, ready)` in this loop for the block."""
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(settings, stop, ready))
    await asyncio.wait_for(started(ready, task), timeout)
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def stored_messages(js: JetStreamContext, subject: str) -> list[Msg]:
    """Every message a stream holds on `subject` (wildcards allowed), in stream order.

    It counts them first (stream info filtered by the subject), then reads exactly that
    many through an ordered consumer: reading until a short silence took a slow first
    delivery on a loaded machine for the end of the stream."""
    stream = await js.find_stream_name_by_subject(subject)
    info = await js.stream_info(stream, subjects_filter=subject)
    count = sum((info.state.subjects or {}).values())
    if not count:
        return []
    sub = await js.subscribe(
        subject,
        stream=stream,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    try:
        return [await sub.next_msg(timeout=15) for _ in range(count)]
    finally:
        await sub.unsubscribe()


@contextlib.asynccontextmanager
async def nats_client(url: str) -> AsyncIterator[Client]:
    nc = await nats.connect(url)
    try:
        yield nc
    finally:
        await nc.close()


async def eventually(
    check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05
) -> Any:
    """Call `check` (plain or async) every `interval` s until it returns a truthy value,
    and return that value; raise AssertionError with the last value after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s; last value: {last!r}")


async def consumed(
    js: JetStreamContext, stream: str, durable: str, timeout: float = 10.0
) -> ConsumerInfo:
    """Wait until the durable consumer `durable` of `stream` has settled every message
    of the stream it takes (acked or terminated; none pending, none awaiting an ack),
    and return its info. A message published before the call, with JetStream's ack, is
    then handled: the way to wait before a check that something did NOT happen.
    Raises AssertionError after `timeout` s (also while the consumer does not exist)."""

    async def settled() -> ConsumerInfo | None:
        try:
            info = await js.consumer_info(stream, durable)
        except NotFoundError:
            return None
        # num_pending counts the stream's messages past the consumer's position that
        # match its filter, so 0 of both means its ack floor is the last of them.
        return None if info.num_pending or info.num_ack_pending else info

    return await eventually(settled, timeout)


class Collector:
    """Collects messages on a core NATS subject, decoded as JSON, with arrival times."""

    def __init__(self) -> None:
        self.items: list[tuple[float, str, Any]] = []
        self.sub = None

    async def start(self, nc: Client, subject: str) -> "Collector":
        async def cb(msg):
            self.items.append((time.monotonic(), msg.subject, msgspec.json.decode(msg.data)))

        self.sub = await nc.subscribe(subject, cb=cb)
        return self

    async def caught_up(self, nc: Client, subject: str, timeout: float = 10.0) -> None:
        """Wait until everything `nc` published before this call has arrived here: publish
        a marker on `subject` (one this collector hears) and wait for it, since NATS keeps
        one publisher's order; the marker is then dropped from `items`."""
        marker = {"marker": uuid.uuid4().hex}
        await nc.publish(subject, msgspec.json.encode(marker))
        await eventually(lambda: any(body == marker for _, _, body in self.items), timeout)
        self.items = [item for item in self.items if item[2] != marker]


async def store_unpublished(database_url: str, user_ids: list[str], title: str) -> None:
    """One notification per user, committed to the inbox and never published live (as
    when the notifier dies between its commit and its publish)."""
    from datetime import UTC, datetime

    from services.contracts.ids import uuid7
    from services.notifier import storage
    from services.runtime.db import make_engine

    engine = make_engine(database_url, pool_size=1)
    now = datetime.now(UTC)
    try:
        async with engine.begin() as conn:
            await storage.store_many(
                (await conn.get_raw_connection()).driver_connection,
                [
                    storage.NewNotification(
                        id=str(uuid7()),
                        user_id=user_id,
                        event_id=None,
                        type="admin.message",
                        level="info",
                        priority="normal",
                        title=title,
                        body="b",
                        data={},
                        created_at=now,
                    )
                    for user_id in user_ids
                ],
                now,
            )
    finally:
        await engine.dispose()


@contextlib.contextmanager
def json_logs(service: str) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Set logging up as a service does (JSON lines) into a buffer for the block; yields
    a function returning the lines logged so far, decoded. Undoes the set-up after."""
    import io
    import json

    from services.runtime import logs

    buffer = io.StringIO()
    logs.setup(service, fmt="json", stream=buffer)
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    finally:
        reset_logging()


def reset_logging() -> None:
    """Undo `services.runtime.logs.setup`: structlog's defaults, no handler of ours."""
    import logging

    import structlog

    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.name == "parkmate"]:
        root.removeHandler(handler)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()

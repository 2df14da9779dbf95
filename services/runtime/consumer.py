"""Durable JetStream pull consumers for services: ack after your commit, nak to retry.

A handler gets the message and returns None (done: ack) or a number of seconds
(not yet: redeliver after that delay). A message that cannot be decoded is a poison
message: logged and terminated, never retried. Any other exception is logged and the
message redelivered after a short pause, up to `max_deliver` times.
"""

import asyncio
from collections.abc import Awaitable, Callable

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.runtime.metrics import MESSAGES

log = structlog.get_logger()

Handler = Callable[[Msg], Awaitable[float | None]]


async def run_pull_consumer(
    js: JetStreamContext,
    stream: str,
    durable: str,
    filter_subjects: list[str],
    handler: Handler,
    stop: asyncio.Event,
    batch: int = 64,
    ack_wait: float = 30.0,
    max_deliver: int = 50,
    ready: asyncio.Event | None = None,
) -> None:
    """Fetch and handle messages of the durable consumer `durable` until `stop` is set.

    Stops fetching when `stop` is set and returns after the batch in hand is handled
    and acked, so a SIGTERM loses nothing (NATS-NOTES.md, drain trap).
    """
    config = ConsumerConfig(
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        filter_subjects=filter_subjects,
        ack_wait=ack_wait,
        max_deliver=max_deliver,
        max_ack_pending=1000,
    )
    await js.add_consumer(stream, config)
    sub = await js.pull_subscribe_bind(durable, stream)
    if ready is not None:
        ready.set()
    while not stop.is_set():
        try:
            msgs = await sub.fetch(batch, timeout=1.0)
        except (NatsTimeout, TimeoutError):
            continue
        except Exception:
            if stop.is_set():
                break
            log.exception("fetch failed", durable=durable)
            await asyncio.sleep(1.0)
            continue
        for msg in msgs:
            await _handle(msg, handler, durable)
    await sub.unsubscribe()


async def _handle(msg: Msg, handler: Handler, durable: str) -> None:
    try:
        delay = await handler(msg)
    except (msgspec.ValidationError, msgspec.DecodeError):
        log.error("poison message terminated", durable=durable, subject=msg.subject, exc_info=True)
        await msg.term()
        MESSAGES.labels(durable, "poison").inc()
        return
    except Exception:
        log.exception("handler failed; will retry", durable=durable, subject=msg.subject)
        await msg.nak(delay=1.0)
        MESSAGES.labels(durable, "failed").inc()
        return
    if delay is None:
        await msg.ack()
        MESSAGES.labels(durable, "done").inc()
    else:
        await msg.nak(delay=max(delay, 0.05))
        MESSAGES.labels(durable, "later").inc()

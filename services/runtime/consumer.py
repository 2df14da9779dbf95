"""Durable JetStream pull consumers for services: ack after your commit, nak to retry.

A handler gets the message and returns None (done: ack) or a number of seconds
(not yet: redeliver after that delay). A message that cannot be decoded is a poison
message: logged and terminated, never retried. Any other exception is logged and the
message redelivered after a short pause, up to `max_deliver` times.

Two ways to do more than one message at a time, both keeping the order that matters:
- `key`: messages of a fetched batch with the same key (a booking id, say) are handled
  in order, different keys concurrently, so round trips of independent messages
  overlap.
- `batch_handler`: the whole fetched batch in one call (one transaction for many
  events), returning one outcome per message. If it raises, the batch is handled again
  one message at a time with `handler`, so one bad message cannot hold up the others.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.runtime.metrics import CONSUMER_PENDING, MESSAGES

log = structlog.get_logger()

Handler = Callable[[Msg], Awaitable[float | None]]
BatchHandler = Callable[[list[Msg]], Awaitable[list[float | None]]]


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
    *,
    key: Callable[[Msg], str] | None = None,
    batch_handler: BatchHandler | None = None,
) -> None:
    """Fetch and handle messages of the durable consumer `durable` until `stop` is set.

    `handler` returns None (ack) or seconds before redelivery; `key` and
    `batch_handler` are described in the module docstring (give at most one).
    Stops fetching when `stop` is set and returns after the batch in hand is handled
    and acked, so a SIGTERM loses nothing (docs/nats.md, the drain trap).
    """
    if key is not None and batch_handler is not None:
        raise ValueError("give key or batch_handler, not both")
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
    pending = CONSUMER_PENDING.labels(durable)
    while not stop.is_set():
        try:
            msgs = await sub.fetch(batch, timeout=1.0)
        except (NatsTimeout, TimeoutError):
            # Usually nothing is pending now, but a consumer at max_ack_pending gets
            # nothing either: ask the server, as only an idle consumer does.
            with contextlib.suppress(Exception):
                pending.set((await sub.consumer_info()).num_pending)
            continue
        except Exception:
            if stop.is_set():
                break
            log.exception("fetch failed", durable=durable)
            await asyncio.sleep(1.0)
            continue
        # Each delivered message says how many were still undelivered behind it.
        pending.set(msgs[-1].metadata.num_pending)
        if batch_handler is not None and len(msgs) > 1:
            await _handle_batch(msgs, batch_handler, handler, durable)
        elif key is not None and len(msgs) > 1:
            await _handle_by_key(msgs, key, handler, durable)
        else:
            for msg in msgs:
                await _handle(msg, handler, durable)
    await sub.unsubscribe()


async def _handle_by_key(
    msgs: list[Msg], key: Callable[[Msg], str], handler: Handler, durable: str
) -> None:
    groups: dict[str, list[Msg]] = {}
    for msg in msgs:
        try:
            k = key(msg)
        except Exception:  # undecodable: its own group, where the handler terms it
            k = f"\0{id(msg)}"
        groups.setdefault(k, []).append(msg)

    async def in_order(group: list[Msg]) -> None:
        for msg in group:
            await _handle(msg, handler, durable)

    await asyncio.gather(*(in_order(g) for g in groups.values()))


async def _handle_batch(
    msgs: list[Msg], batch_handler: BatchHandler, handler: Handler, durable: str
) -> None:
    try:
        outcomes = await batch_handler(msgs)
        if len(outcomes) != len(msgs):
            raise RuntimeError(f"batch handler gave {len(outcomes)} outcomes for {len(msgs)}")
    except Exception:
        log.warning("batch failed; handling it one by one", durable=durable, exc_info=True)
        for msg in msgs:
            await _handle(msg, handler, durable)
        return
    for msg, delay in zip(msgs, outcomes, strict=True):
        await _settle(msg, delay, durable)


async def _handle(msg: Msg, handler: Handler, durable: str) -> None:
    # The outbox publishes each event with Nats-Msg-Id = its CloudEvent id: reading the
    # header costs nothing, decoding the event here would cost a second decode.
    event_id = (msg.headers or {}).get("Nats-Msg-Id")
    with structlog.contextvars.bound_contextvars(**({"event_id": event_id} if event_id else {})):
        try:
            delay = await handler(msg)
        except (msgspec.ValidationError, msgspec.DecodeError):
            log.error(
                "poison message terminated", durable=durable, subject=msg.subject, exc_info=True
            )
            await msg.term()
            MESSAGES.labels(durable, "poison").inc()
            return
        except Exception:
            log.exception("handler failed; will retry", durable=durable, subject=msg.subject)
            await msg.nak(delay=1.0)
            MESSAGES.labels(durable, "failed").inc()
            return
    await _settle(msg, delay, durable)


async def _settle(msg: Msg, delay: float | None, durable: str) -> None:
    if delay is None:
        await msg.ack()
        MESSAGES.labels(durable, "done").inc()
    else:
        await msg.nak(delay=max(delay, 0.05))
        MESSAGES.labels(durable, "later").inc()

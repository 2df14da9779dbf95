"""Durable JetStream pull consumers for services: ack after your commit, nak to retry.

A handler gets the message and returns None (done: ack) or a number of seconds
(not yet: redeliver after that delay). Any exception is logged and the message
redelivered after a backoff (`retry_seconds` doubled per delivery, at most
`max_retry_seconds`), while the messages behind it go on.

A message that cannot be handled becomes a dead letter (docs/failure-modes.md): one
that cannot be decoded at once, any other when its delivery number `max_deliver - 1`
fails or is still "not yet". It is published to stream DEAD on `dead.<durable>` with
headers saying where it came from and why (DEAD_* below), logged once, counted in
`parkmate_dead_letters_total`, then terminated. If DEAD cannot take it, the message is
redelivered and dead-lettered again; at the last delivery NATS allows it is terminated
anyway, left where it is in its own stream, and the log line gives its stream sequence.

A consumer's `ack_wait` is short (ACK_WAIT_SECONDS): when a process dies with a batch
in hand (kill -9, a lost node), the server redelivers that batch to another replica, or
to the restarted process, within seconds rather than half a minute. A batch that takes
longer to handle than that is kept by progress acks (`in_progress`, every third of
`ack_wait`) for each of its messages not yet settled, so a slow batch is not delivered
twice meanwhile. The config is applied at every start, so an existing durable made
with another ack wait is updated (docs/failure-modes.md, "Faults").

Two ways to do more than one message at a time, both keeping the order that matters:
- `key`: messages of a fetched batch with the same key (a booking id, say) are handled
  in order, different keys concurrently, so round trips of independent messages
  overlap.
- `batch_handler`: the whole fetched batch in one call (one transaction for many
  events), returning one outcome per message. If it raises, the batch is handled again
  one message at a time with `handler`, so one bad message cannot hold up the others.
"""

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext, api
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.contracts import subjects
from services.runtime.metrics import CONSUMER_PENDING, DEAD_LETTERS, MESSAGES, subject_label
from services.runtime.natsconn import message_size, publish_each
from services.runtime.startup import describe

log = structlog.get_logger()

Handler = Callable[[Msg], Awaitable[float | None]]
BatchHandler = Callable[[list[Msg]], Awaitable[list[float | None]]]

# Headers of a dead letter on DEAD: where the message was and why it was given up.
DEAD_SUBJECT = "Parkmate-Dead-Subject"
DEAD_STREAM = "Parkmate-Dead-Stream"
DEAD_SEQUENCE = "Parkmate-Dead-Sequence"
DEAD_CONSUMER = "Parkmate-Dead-Consumer"
DEAD_SERVICE = "Parkmate-Dead-Service"
DEAD_DELIVERIES = "Parkmate-Dead-Deliveries"
DEAD_ERROR = "Parkmate-Dead-Error"
DEAD_MSG_ID = "Parkmate-Dead-Msg-Id"

# Seconds the server waits for an ack before it redelivers a message: the longest a
# batch held by a dead process stays stuck. Progress acks keep a live one.
ACK_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class _Consumer:
    js: JetStreamContext
    durable: str
    service: str
    max_deliver: int
    retry_seconds: float
    max_retry_seconds: float

    def retry_delay(self, delivered: int) -> float:
        return min(self.retry_seconds * 2 ** (delivered - 1), self.max_retry_seconds)


async def run_pull_consumer(
    js: JetStreamContext,
    stream: str,
    durable: str,
    filter_subjects: list[str],
    handler: Handler,
    stop: asyncio.Event,
    batch: int = 64,
    ack_wait: float = ACK_WAIT_SECONDS,
    max_deliver: int = 50,
    ready: asyncio.Event | None = None,
    *,
    service: str,
    key: Callable[[Msg], str] | None = None,
    batch_handler: BatchHandler | None = None,
    retry_seconds: float = 1.0,
    max_retry_seconds: float = 30.0,
) -> None:
    """Pull and handle messages of the durable consumer `durable` until `stop` is set,
    up to `batch` at a time (`Puller`).

    `handler` returns None (ack) or seconds before redelivery; `key` and
    `batch_handler` are described in the module docstring (give at most one). A
    message is handled at most `max_deliver - 1` times (at least 2) before it is a
    dead letter; `service` labels the dead-letter metric and header.
    Stops taking messages when `stop` is set and returns after the batch in hand is
    handled and acked; messages delivered ahead of need are nak'd, so a SIGTERM loses
    nothing (docs/nats.md, the drain trap). Messages held longer than `ack_wait / 3` s
    get a progress ack every `ack_wait / 3` s until they are settled.
    """
    if key is not None and batch_handler is not None:
        raise ValueError("give key or batch_handler, not both")
    if max_deliver < 3:
        raise ValueError("max_deliver must be at least 3 (two tries and a spare)")
    c = _Consumer(js, durable, service, max_deliver, retry_seconds, max_retry_seconds)
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
    puller = Puller(js, stream, durable, batch)
    await puller.open(stop)
    if ready is not None:
        ready.set()
    pending = CONSUMER_PENDING.labels(durable)
    keeper = asyncio.create_task(_keep_in_progress(puller, ack_wait / 3))
    try:
        while not stop.is_set():
            msgs = await puller.take(IDLE_SECONDS)
            if not msgs:
                if not stop.is_set():
                    # Usually nothing is pending now, but a consumer at max_ack_pending
                    # gets nothing either: ask the server, as only an idle consumer does.
                    with contextlib.suppress(Exception):
                        pending.set((await js.consumer_info(stream, durable)).num_pending)
                continue
            # Each delivered message says how many were still undelivered behind it.
            pending.set(msgs[-1].metadata.num_pending)
            if batch_handler is not None and len(msgs) > 1:
                await _handle_batch(msgs, batch_handler, handler, c)
            elif key is not None and len(msgs) > 1:
                await _handle_by_key(msgs, key, handler, c)
            else:
                for msg in msgs:
                    await _handle(msg, handler, c)
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        await puller.close()


# Seconds without a message before the loop asks the server for the consumer's lag.
IDLE_SECONDS = 1.0
# A pull request waits this long on the server for messages (then a 408 says how many
# it did not get, and it is asked again), with an idle heartbeat every PULL_HEARTBEAT.
PULL_EXPIRES = 30.0
PULL_HEARTBEAT = 5.0


class Puller:
    """A durable pull consumer's messages, asked for ahead of need.

    nats-py's `fetch` sends a pull request per batch and gets a status message back
    with it: a consumer that keeps up, whose batches hold one or two messages, paid a
    request, a delivery, a status and an ack per message, each a loopback write in two
    processes (py-spy: 41% of the timers service's samples in socket writes). This
    keeps pull requests for up to `batch` messages waiting on the server (JetStream's
    pull protocol, `$JS.API.CONSUMER.MSG.NEXT`, as nats.go's `Consume` does) and asks
    again when half are delivered, so a steady stream costs a delivery and an ack.

    Accounting: `outstanding` is how many messages the waiting requests may still
    deliver. A delivery takes one off; a 408 (request expired) or a 409 carrying
    `Nats-Pending-Messages` takes off what its request did not deliver; any other 409
    or error means the requests are gone (0). A reconnect, or no word from the server
    (message or idle heartbeat) for two heartbeats, also counts as gone (a restarted
    server forgets pull requests). Queued and outstanding messages together never
    exceed `batch`; with the batch in hand, at most twice `batch` are delivered and
    unsettled, and `held` lists them for the progress acks.
    """

    def __init__(self, js: JetStreamContext, stream: str, durable: str, batch: int) -> None:
        self._nc = js._nc
        self._subject = f"{js._prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._durable = durable
        self._batch = batch
        self._queue: collections.deque[tuple[Msg, float]] = collections.deque()
        self._in_hand: list[tuple[Msg, float]] = []
        self._arrived = asyncio.Event()
        self._outstanding = 0
        self._heard = time.monotonic()
        self._paused_until = 0.0
        self._reconnects = self._nc.stats["reconnects"]
        self._inbox = ""
        self._sub: Subscription | None = None
        self._stop = asyncio.Event()

    async def open(self, stop: asyncio.Event) -> None:
        """Subscribe the inbox the server delivers to (the first request goes with the
        first `take`); once `stop` is set, `take` hands out nothing more. A `take`
        already waiting still waits out its timeout, as a fetch did: a worker stays
        visibly not ready (503 on /readyz) for that long while it drains."""
        self._inbox = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(self._inbox, cb=self._on_message)
        self._stop = stop

    async def _on_message(self, msg: Msg) -> None:
        self._heard = time.monotonic()
        if msg.reply:  # a stream message: its reply subject is its $JS.ACK one
            self._outstanding = max(self._outstanding - 1, 0)
            self._queue.append((msg, self._heard))
            self._arrived.set()
            return
        headers = msg.headers or {}
        status = headers.get(api.Header.STATUS)
        if status == api.StatusCode.CONTROL_MESSAGE:  # idle heartbeat
            return
        left = headers.get("Nats-Pending-Messages")
        if status in (api.StatusCode.REQUEST_TIMEOUT, api.StatusCode.CONFLICT) and left:
            self._outstanding = max(self._outstanding - int(left), 0)
            return
        # The requests were refused or dropped (consumer deleted, leadership change,
        # a limit): ask again after a pause, so a lasting refusal is no busy loop.
        log.warning(
            "pull request ended",
            durable=self._durable,
            status=status,
            description=headers.get(api.Header.DESCRIPTION),
        )
        self._outstanding = 0
        self._paused_until = self._heard + 1.0
        self._arrived.set()

    async def _ask(self) -> None:
        now = time.monotonic()
        reconnects = self._nc.stats["reconnects"]
        if reconnects != self._reconnects:
            self._reconnects = reconnects
            self._outstanding = 0
        elif self._outstanding and now - self._heard > 2 * PULL_HEARTBEAT + 1:
            log.info("no word on pull requests; asking again", durable=self._durable)
            self._outstanding = 0
        if now < self._paused_until:
            return
        want = self._batch - self._outstanding - len(self._queue)
        if want <= 0 or (self._outstanding and want < self._batch // 2):
            return
        request = {
            "batch": want,
            "expires": int(PULL_EXPIRES * 1e9),
            "idle_heartbeat": int(PULL_HEARTBEAT * 1e9),
        }
        try:
            await self._nc.publish(self._subject, _encode(request), reply=self._inbox)
        except Exception:  # closed or draining: the loop is stopping, or tries again
            log.warning("pull request not sent", durable=self._durable, exc_info=True)
            self._paused_until = now + 1.0
            return
        self._outstanding += want
        self._heard = now

    async def take(self, timeout: float) -> list[Msg]:
        """Up to `batch` delivered messages, in stream order; [] when none came within
        `timeout` seconds or `open`'s `stop` is set. The previous batch counts as
        settled."""
        self._in_hand = []
        await self._ask()
        if not self._queue:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._arrived.wait()
        if self._stop.is_set() or not self._queue:
            return []
        count = min(len(self._queue), self._batch)
        self._in_hand = [self._queue.popleft() for _ in range(count)]
        await self._ask()  # the next messages come in while these are handled
        return [msg for msg, _ in self._in_hand]

    def held(self) -> list[tuple[Msg, float]]:
        """Delivered messages not handed back yet, with the monotonic time each came."""
        return [*self._in_hand, *self._queue]

    async def close(self) -> None:
        """Stop the deliveries (the server drops requests nobody listens to) and give
        back what came and was not handled: nak'd, so another replica, or this one
        when it starts again, gets it at once instead of after the ack wait."""
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.drain()
        left = [msg for msg, _ in self._queue]
        self._queue.clear()
        for msg in left:
            with contextlib.suppress(Exception):
                await msg.nak()


_encode = msgspec.json.encode


async def _keep_in_progress(puller: Puller, every: float) -> None:
    """Every `every` s, tell the server each message `puller` holds that came more
    than `every` s ago and is not settled yet is still being worked on, so its ack
    wait starts again; runs until cancelled."""
    while True:
        await asyncio.sleep(every)
        came_before = time.monotonic() - every
        for msg, came in puller.held():
            if not msg.is_acked and came <= came_before:
                # NATS away: nothing to do; the server redelivers after ack_wait, and
                # the handlers are idempotent.
                with contextlib.suppress(Exception):
                    await msg.in_progress()


async def _handle_by_key(
    msgs: list[Msg], key: Callable[[Msg], str], handler: Handler, c: _Consumer
) -> None:
    groups: dict[str, list[Msg]] = {}
    for msg in msgs:
        try:
            k = key(msg)
        except Exception:  # undecodable: its own group, where the handler dead-letters it
            k = f"\0{id(msg)}"
        groups.setdefault(k, []).append(msg)

    async def in_order(group: list[Msg]) -> None:
        for msg in group:
            await _handle(msg, handler, c)

    await asyncio.gather(*(in_order(g) for g in groups.values()))


async def _handle_batch(
    msgs: list[Msg], batch_handler: BatchHandler, handler: Handler, c: _Consumer
) -> None:
    try:
        outcomes = await batch_handler(msgs)
        if len(outcomes) != len(msgs):
            raise RuntimeError(f"batch handler gave {len(outcomes)} outcomes for {len(msgs)}")
    except Exception:
        log.warning("batch failed; handling it one by one", durable=c.durable, exc_info=True)
        for msg in msgs:
            await _handle(msg, handler, c)
        return
    for msg, delay in zip(msgs, outcomes, strict=True):
        await _settle(msg, delay, c)


async def _handle(msg: Msg, handler: Handler, c: _Consumer) -> None:
    # The outbox publishes each event with Nats-Msg-Id = its CloudEvent id: reading the
    # header costs nothing, decoding the event here would cost a second decode.
    event_id = (msg.headers or {}).get("Nats-Msg-Id")
    with structlog.contextvars.bound_contextvars(**({"event_id": event_id} if event_id else {})):
        try:
            delay = await handler(msg)
        except (msgspec.ValidationError, msgspec.DecodeError) as e:
            MESSAGES.labels(c.durable, "poison").inc()
            await _dead_letter(msg, f"undecodable: {e}", c)
            return
        except Exception as e:
            delivered = msg.metadata.num_delivered
            if delivered >= c.max_deliver - 1:
                MESSAGES.labels(c.durable, "failed").inc()
                await _dead_letter(msg, f"{type(e).__name__}: {e}", c)
                return
            log.exception(
                "handler failed; will retry",
                durable=c.durable,
                subject=msg.subject,
                delivered=delivered,
            )
            await msg.nak(delay=c.retry_delay(delivered))
            MESSAGES.labels(c.durable, "failed").inc()
            return
        await _settle(msg, delay, c)


async def _settle(msg: Msg, delay: float | None, c: _Consumer) -> None:
    if delay is None:
        await msg.ack()
        MESSAGES.labels(c.durable, "done").inc()
    elif msg.metadata.num_delivered >= c.max_deliver - 1:
        # NATS would stop delivering it after the next one, silently.
        await _dead_letter(msg, f"still not ready after {msg.metadata.num_delivered} tries", c)
    else:
        await msg.nak(delay=max(delay, 0.05))
        MESSAGES.labels(c.durable, "later").inc()


def _dead_letter_headers(msg: Msg, error: str, c: _Consumer) -> dict[str, str]:
    """The headers of `msg`'s dead letter: its own, except the server's `Nats-*` ones
    (a schedule or TTL header would act again on DEAD), and where it came from."""
    meta = msg.metadata
    own = msg.headers or {}
    headers = {k: v for k, v in own.items() if not k.startswith("Nats-")}
    headers |= {
        # One dead letter per message and consumer, even if this one is delivered again.
        "Nats-Msg-Id": f"{meta.stream}:{meta.sequence.stream}:{c.durable}",
        DEAD_SUBJECT: msg.subject,
        DEAD_STREAM: meta.stream,
        DEAD_SEQUENCE: str(meta.sequence.stream),
        DEAD_CONSUMER: c.durable,
        DEAD_SERVICE: c.service,
        DEAD_DELIVERIES: str(meta.num_delivered),
        DEAD_ERROR: " ".join(error.split())[:300],
    }
    if "Nats-Msg-Id" in own:
        headers[DEAD_MSG_ID] = own["Nats-Msg-Id"]
    return headers


async def _dead_letter(msg: Msg, error: str, c: _Consumer) -> None:
    """Publish `msg` to DEAD and terminate it (see the module docstring)."""
    meta = msg.metadata
    headers = _dead_letter_headers(msg, error, c)
    fields = {
        "service": c.service,
        "durable": c.durable,
        "subject": msg.subject,
        "stream": meta.stream,
        "stream_seq": meta.sequence.stream,
        "deliveries": meta.num_delivered,
        "error": headers[DEAD_ERROR],
    }
    size = message_size(msg.data, headers)
    if size > c.js._nc.max_payload:
        problem = f"dead letter of {size} bytes is over max_payload"
    else:
        try:
            (refused,) = await publish_each(
                c.js, [(subjects.dead_letter_subject(c.durable), msg.data, headers)]
            )
            problem = None if refused is None else describe(refused)
        except Exception as e:  # a timeout or a lost connection
            problem = repr(e)
    if problem is not None and meta.num_delivered < c.max_deliver:
        log.warning("could not dead-letter; delivered once more", problem=problem, **fields)
        await msg.nak(delay=c.retry_delay(meta.num_delivered))
        return
    await msg.term()
    DEAD_LETTERS.labels(c.service, subject_label(msg.subject)).inc()
    if problem is None:
        log.error("dead letter: message given up, kept on DEAD", **fields)
    else:
        log.error(
            "dead letter: message given up, left in its stream at stream_seq",
            problem=problem,
            **fields,
        )

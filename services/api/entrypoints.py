"""Run the api: connect NATS and PostgreSQL, serve HTTP and WebSocket with uvicorn."""

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import timedelta

import uvicorn

from services.api import idempotency, logins, storage
from services.api.app import create_app
from services.api.config import Settings
from services.api.gateway import CLOSE_GOING_AWAY
from services.api.requestids import RequestIds
from services.api.ws import MAX_FRAME, WebSocketFront
from services.runtime import logs, natsconn
from services.runtime.connect import connect_all
from services.runtime.lifecycle import every, freeze_startup_objects, stop_event, until_stopped
from services.runtime.limits import raise_open_file_limit
from services.runtime.outbox import OutboxRelay
from services.runtime.startup import Stopping

# After the drain: seconds for requests in flight to finish once the api stops listening
# (then they are cancelled), and for sockets to send their close frame.
GRACEFUL_SECONDS = 5
SOCKET_CLOSE_SECONDS = 3


async def purge(engine, settings: Settings) -> None:
    """Delete idempotency keys older than `idempotency_key_hours` and login-throttling
    rows that limit nothing any more (both safe on every replica at once)."""
    keys = await idempotency.purge_expired(engine, timedelta(hours=settings.idempotency_key_hours))
    throttling = await logins.purge_expired(engine)
    if keys or throttling:
        logs.get("api").info("purged", idempotency_keys=keys, login_attempts=throttling)


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers: our stop event decides when the
    drain starts. uvicorn's own (installed with signal.signal, over asyncio's) would
    close every socket with 1012 and stop listening the moment SIGTERM arrives."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def drain(state, front: WebSocketFront, seconds: float, server_task: asyncio.Task) -> None:
    """The first part of a stop: /readyz answers 503 at once, HTTP and WebSocket are
    served as before for `seconds` (load balancers see the 503, or the endpoint's
    removal, and send new traffic elsewhere meanwhile; HTTP answers say
    `Connection: close`), then every socket is closed with 1001 so its client resumes on
    another replica. Ends early if the server dies. What follows (serve()): stop
    listening, finish requests in flight (up to GRACEFUL_SECONDS), drain NATS."""
    state.draining = True
    log = logs.get("api")
    log.info("draining", seconds=seconds, sockets=front.sockets)
    if seconds > 0:
        # Waiting out the drain time is the point: traffic moves away meanwhile.
        await asyncio.wait([server_task], timeout=seconds)
    left = await front.close_sockets(CLOSE_GOING_AWAY, SOCKET_CLOSE_SECONDS)
    if left:
        log.warning("sockets still open after the drain; uvicorn closes them", sockets=left)


async def serve(
    settings: Settings, stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    """Serve until `stop`; then drain (see `drain`), stop taking connections, finish
    requests in flight, stop the outbox relay, drain NATS."""
    log = logs.get("api")
    events = natsconn.ConnectionEvents()
    try:
        nc, engine = await connect_all(settings.common, "parkmate-api", stop, events)
    except Stopping:
        log.info("stopped before it was ready")
        return
    js = nc.jetstream()
    await natsconn.ensure_streams(js)
    relay = OutboxRelay(engine, js, storage.outbox, service="api")
    app = create_app(settings, nc, engine, relay.wake)
    # What core NATS may have lost on the way to the sockets is caught up from the inbox.
    events.reconnected.append(app.state.gateway.on_reconnected)
    events.slow_consumer.append(app.state.gateway.on_slow_consumer)
    front = WebSocketFront(app, app.state)
    server = _Server(
        uvicorn.Config(
            RequestIds(front),
            host=settings.host,
            port=settings.port,
            log_level="warning",
            lifespan="on",
            ws_max_size=MAX_FRAME,
            # The gateway's own `ping` frames keep sockets alive and find dead ones; a
            # protocol-level ping per socket as well would cost a timer each.
            ws_ping_interval=None,
            ws="websockets-sansio",
            timeout_graceful_shutdown=GRACEFUL_SECONDS,
            # The client address (login throttling) comes from X-Forwarded-For only when
            # the peer is one of these proxies.
            forwarded_allow_ips=list(settings.trusted_proxies),
            # No logging set-up of uvicorn's own: its lines go through ours (logs.py).
            log_config=None,
        )
    )
    relay_task = asyncio.create_task(relay.run(), name="identity-outbox")
    purge_task = asyncio.create_task(
        every(settings.purge_seconds, stop, lambda: purge(engine, settings), "purge"),
        name="purge",
    )
    server_task = asyncio.create_task(server.serve(), name="uvicorn")
    while not server.started:
        if server_task.done():
            server_task.result()
            raise RuntimeError(f"the api could not listen on {settings.host}:{settings.port}")
        await asyncio.sleep(0.05)
    freeze_startup_objects()
    log.info(
        "ready",
        host=settings.host,
        port=settings.port,
        signing_kid=settings.keys.signing,
        verifying_kids=sorted(settings.keys.secrets),
    )
    if ready is not None:
        ready.set()
    try:
        await until_stopped(stop, [relay_task, server_task, purge_task])
        await drain(app.state, front, settings.drain_seconds, server_task)
    finally:
        stop.set()
        log.info("stopping")
        server.should_exit = True
        await asyncio.gather(server_task, return_exceptions=True)
        relay.stop()
        await asyncio.gather(relay_task, purge_task, return_exceptions=True)
        await nc.drain()
        await engine.dispose()


async def main() -> None:
    settings = Settings.from_env()  # before anything else: a bad setting stops us here
    logs.setup("api")
    # Every WebSocket is a file descriptor; shells often start at 1,024.
    logs.get("api").info("open-file limit", nofile=raise_open_file_limit())
    await serve(settings, stop_event())

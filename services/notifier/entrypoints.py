"""The notifier's edges: a durable consumer of every event on EVENTS, one of
user.registered (the audience of alerts and announcements), the micro service
`notifier` answering inbox, preferences, template and admin-send requests, and the
periodic retention purge."""

import asyncio
from collections.abc import Callable
from datetime import datetime

import msgspec
from nats.aio.msg import Msg

from services.contracts import notifier as n
from services.contracts import subjects
from services.contracts.ids import uuid7
from services.notifier import admin, handlers, retention
from services.notifier.config import Settings
from services.notifier.handlers import Deps
from services.runtime import logs, natsconn
from services.runtime.connect import connect_all
from services.runtime.consumer import run_pull_consumer
from services.runtime.lifecycle import (
    every,
    freeze_startup_objects,
    started,
    stop_event,
    until_stopped,
)
from services.runtime.micro import Endpoint, MicroServer
from services.runtime.probes import start_probes
from services.runtime.startup import Stopping

VERSION = "0.2.0"
_encoder = msgspec.json.Encoder()
USERS_DURABLE = subjects.DURABLE_NOTIFIER_USERS


def endpoints(deps: Deps) -> list[Endpoint]:
    """Every request subject of the micro service `notifier`: request type, handler and
    reply type (the handler's return annotation, for the AsyncAPI document)."""

    def ep(subject: str, request_type: type, fn) -> Endpoint:
        async def handle(req):
            return await fn(deps, req)

        return Endpoint(subject, request_type, handle, fn.__annotations__["return"])

    h = handlers
    return [
        ep(subjects.NOTIFIER_INBOX_SUMMARY, n.InboxSummaryRequest, h.inbox_summary),
        ep(subjects.NOTIFIER_INBOX_LIST, n.InboxAfterRequest, h.inbox_after),
        ep(subjects.NOTIFIER_INBOX_QUERY, n.InboxQuery, h.inbox_query),
        ep(subjects.NOTIFIER_INBOX_READ, n.NotificationRef, h.mark_read),
        ep(subjects.NOTIFIER_INBOX_READ_ALL, n.UserRef, h.mark_all_read),
        ep(subjects.NOTIFIER_INBOX_DELETE, n.NotificationRef, h.delete),
        ep(subjects.NOTIFIER_INBOX_CLEAR_READ, n.UserRef, h.clear_read),
        ep(subjects.NOTIFIER_INBOX_ACK, n.AckRequest, h.ack),
        ep(subjects.NOTIFIER_INBOX_ACK_BATCH, n.AckBatch, h.ack_batch),
        ep(subjects.NOTIFIER_INBOX_SUMMARIES, n.InboxSummariesRequest, h.inbox_summaries),
        ep(subjects.NOTIFIER_PREFS_GET, n.PreferencesRequest, h.get_preferences),
        ep(subjects.NOTIFIER_PREFS_PUT, n.PutPreferences, h.put_preferences),
        ep(subjects.NOTIFIER_TEMPLATES_LIST, n.ListTemplates, admin.list_templates),
        ep(subjects.NOTIFIER_TEMPLATES_PUT, n.PutTemplate, admin.put_template),
        ep(subjects.NOTIFIER_TEMPLATES_RESET, n.ResetTemplate, admin.reset_template),
        ep(subjects.NOTIFIER_ADMIN_SEND, n.AdminSend, admin.admin_send),
    ]


async def purge(deps: Deps, settings: Settings) -> None:
    """One round of retention (see retention.purge)."""
    old, expired = await retention.purge(deps, settings.retention_days)
    if old or expired:
        logs.get("notifier").info("purged", old_read=old, expired=expired)


async def serve(
    settings: Settings,
    stop: asyncio.Event,
    ready: asyncio.Event | None = None,
    clock: Callable[[], datetime] = handlers.utcnow,
) -> None:
    """Run until `stop`. `clock` (aware datetimes) is for tests that fix the time."""
    log = logs.get("notifier")
    events = natsconn.ConnectionEvents()
    try:
        nc, engine = await connect_all(settings.common, "parkmate-notifier", stop, events)
    except Stopping:
        log.info("stopped before it was ready")
        return
    instance = str(uuid7())

    async def announce(reason: str) -> None:
        # Live messages published around a (re)connect may be lost; the gateways
        # check their sockets against the inbox when they hear this.
        await nc.publish(
            subjects.NOTIFY_SYNC,
            _encoder.encode(n.SyncAnnouncement(instance=instance, reason=reason)),
        )

    events.reconnected.append(lambda: announce("reconnected"))
    js = nc.jetstream()
    await natsconn.ensure_streams(js)
    deps = Deps(engine=engine, nc=nc, clock=clock)

    # A message at its first delivery cannot have been stored by an earlier try, so
    # the notifier leaves out its check for stored rows (handlers.on_events).
    async def handle(msg: Msg) -> None:
        first = msg.metadata.num_delivered == 1
        await handlers.on_events(deps, [msg.data], first_delivery=first)

    async def handle_batch(msgs: list[Msg]) -> list[None]:
        first = all(m.metadata.num_delivered == 1 for m in msgs)
        await handlers.on_events(deps, [m.data for m in msgs], first_delivery=first)
        return [None] * len(msgs)

    async def handle_user(msg: Msg) -> None:
        await handlers.on_user_event(deps, msg.data)

    async def handle_users(msgs: list[Msg]) -> list[None]:
        await handlers.on_user_events(deps, [m.data for m in msgs])
        return [None] * len(msgs)

    server = MicroServer(
        nc,
        subjects.NOTIFIER_SERVICE,
        VERSION,
        "Notification inbox, preferences, templates and admin sends",
        endpoints(deps),
    )
    events_ready, users_ready = asyncio.Event(), asyncio.Event()
    tasks = [
        asyncio.create_task(
            run_pull_consumer(
                js,
                subjects.EVENTS_STREAM,
                subjects.DURABLE_NOTIFIER,
                subjects.EVENTS_SUBJECTS,
                handle,
                stop,
                ready=events_ready,
                service="notifier",
                batch_handler=handle_batch,
            ),
            name="notifier-events",
        ),
        # A durable of its own: on first start it reads every user.registered the
        # stream holds, so users who registered before this consumer existed are known.
        asyncio.create_task(
            run_pull_consumer(
                js,
                subjects.EVENTS_STREAM,
                USERS_DURABLE,
                [subjects.USER_REGISTERED],
                handle_user,
                stop,
                ready=users_ready,
                service="notifier",
                batch_handler=handle_users,
            ),
            name="notifier-users",
        ),
    ]
    await server.start()
    await started(events_ready, tasks[0])
    await started(users_ready, tasks[1])
    purger = asyncio.create_task(
        every(settings.purge_seconds, stop, lambda: purge(deps, settings), "retention purge"),
        name="notifier-purge",
    )
    probes = await start_probes(settings.probe_port)
    if probes:
        probes.ready = True
    await announce("started")
    freeze_startup_objects()
    log.info("ready")
    if ready is not None:
        ready.set()
    try:
        await until_stopped(stop, [*tasks, purger])
    finally:
        stop.set()
    log.info("stopping")
    if probes:
        probes.ready = False
    await server.stop()
    await asyncio.gather(*tasks, purger)
    await nc.drain()
    await engine.dispose()
    if probes:
        await probes.stop()


async def main() -> None:
    settings = Settings.from_env()  # before anything else: a bad setting stops us here
    logs.setup("notifier")
    await serve(settings, stop_event())

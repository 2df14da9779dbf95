"""The timers service's edge: a durable consumer of booking events on EVENTS."""

import asyncio

from nats.aio.msg import Msg

from services.contracts import subjects
from services.runtime import logs, natsconn
from services.runtime.consumer import run_pull_consumer
from services.runtime.lifecycle import freeze_startup_objects, started, stop_event, until_stopped
from services.runtime.probes import start_probes
from services.runtime.startup import Startup, Stopping
from services.timers import domain, handlers
from services.timers.config import Settings


async def serve(
    settings: Settings, stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    """Run until `stop`; the consumer finishes its batch before the connection drains."""
    log = logs.get("timers")
    startup = Startup.begin(stop, settings.startup_timeout)
    try:
        nc = await natsconn.connect(
            settings.nats_url, "parkmate-timers", startup=startup, auth=settings.nats_auth
        )
    except Stopping:
        log.info("stopped before it was ready")
        return
    js = nc.jetstream()
    await natsconn.ensure_streams(js)

    book = domain.ScheduleBook()

    async def handle(msg: Msg) -> None:
        await handlers.on_booking_event(js, msg.data, settings.fired_ttl, book)

    consumer_ready = asyncio.Event()
    task = asyncio.create_task(
        run_pull_consumer(
            js,
            subjects.EVENTS_STREAM,
            subjects.DURABLE_TIMERS,
            [*domain.SCHEDULING_EVENTS, *domain.REMOVING_EVENTS],
            handle,
            stop,
            ready=consumer_ready,
            service="timers",
            key=lambda msg: handlers.booking_of(msg.data),
        )
    )
    await started(consumer_ready, task)
    probes = await start_probes(settings.probe_port)
    if probes:
        probes.ready = True
    freeze_startup_objects()
    log.info("ready")
    if ready is not None:
        ready.set()
    try:
        await until_stopped(stop, [task])
    finally:
        stop.set()
    log.info("stopping")
    if probes:
        probes.ready = False
    await task
    await nc.drain()
    if probes:
        await probes.stop()


async def main() -> None:
    settings = Settings.from_env()  # before anything else: a bad setting stops us here
    logs.setup("timers")
    await serve(settings, stop_event())

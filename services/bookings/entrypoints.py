"""The bookings service's edges: its NATS micro endpoints and its timer consumer."""

import asyncio

import msgspec
from nats.aio.msg import Msg

from services.bookings import storage
from services.bookings.config import Settings
from services.bookings.handlers import (
    bookings,
    carwash,
    lots,
    payments,
    staff,
    timers,
    vehicles,
)
from services.bookings.handlers.common import Deps
from services.bookings.payments import SimulatedProvider
from services.contracts import bookings as c
from services.contracts import subjects
from services.contracts.timers import TimerFired
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
from services.runtime.outbox import OutboxRelay
from services.runtime.probes import start_probes
from services.runtime.startup import Stopping

VERSION = "0.1.0"


def endpoints(deps: Deps) -> list[Endpoint]:
    """Subject -> (request type, handler) for every request bookings answers."""

    def ep(subject: str, request_type: type, fn) -> Endpoint:
        async def handle(req):
            return await fn(deps, req)

        return Endpoint(subject, request_type, handle, fn.__annotations__["return"])

    return [
        ep(subjects.BOOKINGS_LOT_CREATE, c.CreateLot, lots.create_lot),
        ep(subjects.BOOKINGS_LOT_LIST, c.ListLots, lots.list_lots),
        ep(subjects.BOOKINGS_LOT_GET, c.GetLot, lots.get_lot),
        ep(subjects.BOOKINGS_LOT_UPDATE, c.UpdateLot, lots.update_lot),
        ep(subjects.BOOKINGS_SLOT_LIST, c.ListSlots, lots.list_slots),
        ep(subjects.BOOKINGS_SLOT_ADD, c.AddSlots, lots.add_slots),
        ep(subjects.BOOKINGS_SLOT_REMOVE, c.RemoveSlot, lots.remove_slot),
        ep(subjects.BOOKINGS_STAFF_ASSIGN, c.StaffRequest, staff.assign),
        ep(subjects.BOOKINGS_STAFF_UNASSIGN, c.StaffRequest, staff.unassign),
        ep(subjects.BOOKINGS_STAFF_LIST, c.ListStaff, staff.list_staff),
        ep(subjects.BOOKINGS_VEHICLE_CREATE, c.CreateVehicle, vehicles.create_vehicle),
        ep(subjects.BOOKINGS_VEHICLE_LIST, c.ListVehicles, vehicles.list_vehicles),
        ep(subjects.BOOKINGS_BOOKING_CREATE, c.CreateBooking, bookings.create_booking),
        ep(subjects.BOOKINGS_BOOKING_LIST, c.ListBookings, bookings.list_bookings),
        ep(subjects.BOOKINGS_BOOKING_GET, c.GetBooking, bookings.get_booking),
        ep(subjects.BOOKINGS_BOOKING_RENEW, c.RenewBooking, bookings.renew_booking),
        ep(subjects.BOOKINGS_BOOKING_CANCEL, c.CancelBooking, bookings.cancel_booking),
        ep(subjects.BOOKINGS_BOOKING_DECLINE, c.DeclineBooking, bookings.decline_booking),
        ep(subjects.BOOKINGS_PAYMENT_VERIFY, c.VerifyPayment, payments.verify_payment),
        ep(subjects.BOOKINGS_CARWASH_REQUEST, c.RequestCarwash, carwash.request_carwash),
        ep(subjects.BOOKINGS_CARWASH_STEP, c.CarwashStep, carwash.carwash_step),
        ep(subjects.BOOKINGS_VEHICLE_BULK, c.CreateVehiclesBulk, vehicles.create_vehicles_bulk),
    ]


_timer_decoder = msgspec.json.Decoder(TimerFired)


def timer_handler(deps: Deps):
    async def handle(msg: Msg) -> float | None:
        return await timers.on_timer_fired(deps, _timer_decoder.decode(msg.data))

    return handle


def timer_batch_handler(deps: Deps):
    async def handle(msgs: list[Msg]) -> list[float | None]:
        return await timers.on_timers_fired(deps, [_timer_decoder.decode(m.data) for m in msgs])

    return handle


async def sweep(deps: Deps, overdue: float) -> None:
    """One round of the overdue sweep (see timers.sweep_overdue)."""
    swept = await timers.sweep_overdue(deps, overdue)
    if swept:
        logs.get("bookings").warning(
            "expired overdue bookings whose timer never fired", count=swept
        )


async def serve(
    settings: Settings, stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    """Run the bookings service until `stop` is set, then drain in order."""
    log = logs.get("bookings")
    try:
        nc, engine = await connect_all(settings.common, "parkmate-bookings", stop)
    except Stopping:
        log.info("stopped before it was ready")
        return
    js = nc.jetstream()
    await natsconn.ensure_streams(js)
    relay = OutboxRelay(engine, js, storage.outbox, service="bookings")
    deps = Deps(
        engine=engine,
        payments=SimulatedProvider(),
        wake_outbox=relay.wake,
        committed=relay.committed,
        nc=nc,
    )
    server = MicroServer(
        nc,
        subjects.BOOKINGS_SERVICE,
        VERSION,
        "Lots, slots and bookings",
        endpoints(deps),
        settings.concurrency,
    )
    consumer_ready = asyncio.Event()
    relay_task = asyncio.create_task(relay.run())
    sweep_task = asyncio.create_task(
        every(
            settings.sweep_seconds,
            stop,
            lambda: sweep(deps, settings.overdue_seconds),
            "overdue sweep",
        )
    )
    timers_task = asyncio.create_task(
        run_pull_consumer(
            js,
            subjects.TIMERS_STREAM,
            subjects.DURABLE_BOOKINGS_TIMERS,
            [subjects.TIMERS_FIRED_BOOKING],
            timer_handler(deps),
            stop,
            ready=consumer_ready,
            service="bookings",
            batch_handler=timer_batch_handler(deps),
        )
    )
    await server.start()
    await started(consumer_ready, timers_task)
    probes = await start_probes(settings.probe_port)
    if probes:
        probes.ready = True
    freeze_startup_objects()
    log.info("ready")
    if ready is not None:
        ready.set()
    try:
        await until_stopped(stop, [relay_task, timers_task, sweep_task])
    finally:
        stop.set()
    log.info("stopping")
    if probes:
        probes.ready = False
    await server.stop()
    await timers_task
    await sweep_task
    relay.stop()
    await relay_task
    await relay.publish_pending()
    await nc.drain()
    if probes:
        await probes.stop()
    await engine.dispose()


async def main() -> None:
    settings = Settings.from_env()  # before anything else: a bad setting stops us here
    logs.setup("bookings")
    await serve(settings, stop_event())

"""The bookings benchmark waits for its set-up's events before the load
(benchmarks/bookings.py, `settle`): against a real nats-server with JetStream, it does
not return while a consumer of EVENTS still has user.registered events to take, nor
while fewer of them than the accounts made are in the stream."""

import nats
from nats.js.api import ConsumerConfig

from benchmarks.bookings import events_lag, registered_events, settle
from services.contracts import subjects
from services.runtime.natsconn import ensure_streams


async def test_settle_waits_for_every_registration_to_be_published_and_consumed(nats_url):
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        await js.add_consumer(
            subjects.EVENTS_STREAM,
            ConsumerConfig(durable_name="users", filter_subject=subjects.USER_REGISTERED),
        )
        assert await registered_events(js) == 0
        for i in range(3):
            await js.publish(subjects.USER_REGISTERED, b"{}", headers={"Nats-Msg-Id": f"u{i}"})
        assert await registered_events(js) == 3

        # Published but not consumed: the wait runs out and reports the lag.
        assert await settle(js, 3, within=0.5) == (None, 3)

        sub = await js.pull_subscribe(subjects.USER_REGISTERED, "users")
        for msg in await sub.fetch(3, timeout=5):
            await msg.ack_sync()
        assert await events_lag(js) == 0

        # Consumed, but a fourth account's event is not in the stream yet.
        assert await settle(js, 4, within=0.5) == (None, 0)

        waited, lag = await settle(js, 3, within=5)
        assert waited is not None and waited < 5 and lag == 0
    finally:
        await nc.close()

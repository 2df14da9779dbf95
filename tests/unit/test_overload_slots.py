"""The api's in-flight bound (services/api/overload.py Slots): a free slot at once, waiters
served first come first served until the oldest has waited `lifo_after` seconds and
newest first from then on, renewals before every other waiter, a waiter that gives up
or is cancelled leaves no trace."""

import asyncio

import pytest

from services.api.overload import Slots, retry_after_seconds, urgent


async def test_waiters_get_released_slots_in_arrival_order():
    slots = Slots(2, lifo_after=3600)
    assert await slots.acquire(0) and await slots.acquire(0)
    assert slots.in_flight == 2
    assert await slots.acquire(0) is False  # no wait allowed, none free
    first = asyncio.create_task(slots.acquire(3600))
    second = asyncio.create_task(slots.acquire(3600))
    await asyncio.sleep(0)  # the new tasks run up to their wait
    assert slots.waiting == 2
    slots.release()
    assert await first is True and not second.done()
    assert slots.in_flight == 2 and slots.waiting == 1  # handed over, not freed
    slots.release()
    assert await second is True
    slots.release()
    slots.release()
    assert slots.in_flight == 0 and slots.waiting == 0


async def test_once_the_oldest_has_waited_lifo_after_the_newest_goes_first():
    slots = Slots(1, lifo_after=0.05)
    assert await slots.acquire(0)
    oldest = asyncio.create_task(slots.acquire(3600))
    await asyncio.sleep(0.06)  # on purpose: the oldest waits past lifo_after
    middle = asyncio.create_task(slots.acquire(3600))
    newest = asyncio.create_task(slots.acquire(3600))
    await asyncio.sleep(0)  # the new tasks run up to their wait
    slots.release()
    assert await newest is True
    assert not oldest.done() and not middle.done()
    slots.release()
    assert await middle is True and not oldest.done()
    slots.release()  # only the oldest waits, and it has waited long enough: it goes
    assert await oldest is True
    assert slots.in_flight == 1 and slots.waiting == 0


async def test_a_burst_that_drains_within_lifo_after_is_served_in_order():
    slots = Slots(1, lifo_after=3600)
    assert await slots.acquire(0)
    served: list[int] = []
    waiters = []
    for i in range(5):
        waiter = asyncio.create_task(slots.acquire(3600))
        waiter.add_done_callback(lambda _, i=i: served.append(i))
        waiters.append(waiter)
    await asyncio.sleep(0)  # the new tasks run up to their wait
    for _ in waiters:
        slots.release()
    assert await asyncio.gather(*waiters) == [True] * 5
    assert served == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("urgent", [False, True])
async def test_a_waiter_gives_up_after_its_timeout_and_a_cancelled_one_leaves(urgent):
    slots = Slots(1, lifo_after=3600)
    assert await slots.acquire(0)
    assert await slots.acquire(0.01, urgent) is False  # nobody releases: the timeout passes
    assert slots.waiting == 0
    cancelled = asyncio.create_task(slots.acquire(3600, urgent))
    await asyncio.sleep(0)  # the new tasks run up to their wait
    assert slots.waiting == 1
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert slots.waiting == 0
    slots.release()
    assert slots.in_flight == 0
    assert await slots.acquire(0)  # the slot is free again, not lost to the cancelled waiter


async def test_a_slot_handed_to_a_waiter_being_cancelled_passes_on():
    slots = Slots(1, lifo_after=3600)
    assert await slots.acquire(0)
    doomed = asyncio.create_task(slots.acquire(3600))
    heir = asyncio.create_task(slots.acquire(3600))
    await asyncio.sleep(0)  # the new tasks run up to their wait
    assert slots.waiting == 2
    slots.release()  # hands the slot to `doomed`, which is cancelled before it runs
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert await asyncio.wait_for(heir, 10) is True  # never stranded
    assert slots.in_flight == 1 and slots.waiting == 0


def test_retry_after_is_the_queue_wait_rounded_up_and_at_least_one_second():
    assert [retry_after_seconds(s) for s in (0, 0.3, 1, 2, 2.5)] == [1, 1, 1, 2, 3]
    with pytest.raises(ValueError):
        Slots(0, lifo_after=1)


async def test_an_urgent_waiter_gets_the_next_slot_before_older_waiters():
    slots = Slots(1, lifo_after=3600)
    assert await slots.acquire(0)
    first = asyncio.create_task(slots.acquire(3600))
    second = asyncio.create_task(slots.acquire(3600))
    renewal = asyncio.create_task(slots.acquire(3600, urgent=True))
    later_renewal = asyncio.create_task(slots.acquire(3600, urgent=True))
    await asyncio.sleep(0)  # the new tasks run up to their wait
    assert slots.waiting == 4
    slots.release()
    assert await renewal is True and not first.done()
    slots.release()
    assert await later_renewal is True and not first.done()
    slots.release()
    assert await first is True and not second.done()  # then the others, in order
    slots.release()
    assert await second is True
    assert slots.in_flight == 1 and slots.waiting == 0


def test_only_a_bookings_renewal_is_urgent():
    assert urgent("POST", "/api/v1/bookings/0192f0a4-7c1e-7000-8000-000000000001/renew")
    assert not urgent("GET", "/api/v1/bookings/0192f0a4-7c1e-7000-8000-000000000001/renew")
    assert not urgent("POST", "/api/v1/bookings")
    assert not urgent("POST", "/api/v1/bookings/b1/cancel")
    assert not urgent("POST", "/api/v1/bookings/b1/renew/extra")
    assert not urgent("POST", "/api/v1/bookings//renew")

"""runtime/coalesce.py: concurrent submits share a flush; results and errors go back to
the right callers; nothing waits once the load is gone."""

import asyncio

import pytest

from services.runtime.coalesce import Coalescer


async def turns_until(condition, turns: int = 100) -> None:
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not met")


async def test_one_turn_is_one_batch_and_later_ones_wait_for_the_flight():
    calls: list[list[int]] = []
    release = asyncio.Event()

    async def flush(items: list[int]) -> list[int]:
        calls.append(items)
        if len(calls) == 1:
            await release.wait()
        return [i * 10 for i in items]

    c: Coalescer[int, int] = Coalescer(flush, limit=4)
    first = [asyncio.create_task(c.submit(i)) for i in range(3)]
    await turns_until(lambda: calls)
    assert calls == [[0, 1, 2]]
    # While the first batch is in flight, six more wait and go as batches of 4 and 2.
    later = [asyncio.create_task(c.submit(i)) for i in range(3, 9)]
    await turns_until(lambda: len(c._waiting) == 6)
    for _ in range(10):  # they stay waiting while the flight lasts
        await asyncio.sleep(0)
    assert calls == [[0, 1, 2]]
    release.set()
    assert await asyncio.gather(*first, *later) == [i * 10 for i in range(9)]
    assert calls == [[0, 1, 2], [3, 4, 5, 6], [7, 8]]
    # Idle again: a lone submit goes at once.
    assert await asyncio.wait_for(c.submit(9), 1) == 90


async def test_an_error_reaches_every_caller_of_its_batch_only():
    async def flush(items: list[int]) -> list[int]:
        if 13 in items:
            raise RuntimeError("bad batch")
        return items

    c: Coalescer[int, int] = Coalescer(flush)
    results = await asyncio.gather(c.submit(1), c.submit(13), return_exceptions=True)
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]
    assert await c.submit(2) == 2


async def test_a_cancelled_caller_does_not_break_the_others():
    async def flush(items: list[int]) -> list[int]:
        await asyncio.sleep(0.01)
        return items

    c: Coalescer[int, int] = Coalescer(flush)
    gone = asyncio.create_task(c.submit(1))
    stays = asyncio.create_task(c.submit(2))
    await asyncio.sleep(0)
    gone.cancel()
    assert await stays == 2
    with pytest.raises(asyncio.CancelledError):
        await gone

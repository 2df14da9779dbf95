"""Group commit for round trips: concurrent requests of one kind share one statement.

When a round trip is the cost (a loopback `send` and a PostgreSQL statement), requests
that arrive while one batch is on its way wait for it and then go together as the next
batch. An idle process sends each request at once (no linger, no added latency); a busy
one sends fewer, larger statements, as many as its load needs.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """`submit(item)` returns `flush(items)`'s result for that item, where `flush` gets
    every item submitted in the same event-loop turn, or while the previous batch was in
    flight (at most `limit` per call, at most `in_flight` calls at once), and returns one
    result per item, in order. An exception from `flush` is raised to every caller of
    its batch.
    """

    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[list[R]]],
        limit: int = 256,
        in_flight: int = 1,
    ) -> None:
        self._flush = flush
        self._limit = limit
        self._max_in_flight = in_flight
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._scheduled = False
        self._running: set[asyncio.Task] = set()

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if not self._scheduled:
            # The end of this loop turn: requests made in the same turn join the batch.
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)
        return await future

    def _start(self) -> None:
        self._scheduled = False
        while self._waiting and len(self._running) < self._max_in_flight:
            batch, self._waiting = self._waiting[: self._limit], self._waiting[self._limit :]
            task = asyncio.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._running.discard(task)
        self._start()

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._flush([item for item, _ in batch])
        except Exception as e:
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

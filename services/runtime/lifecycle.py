"""A service process's life: wait for SIGTERM or SIGINT, then shut down in order."""

import asyncio
import contextlib
import gc
import signal
from collections.abc import Awaitable, Callable

import structlog


def freeze_startup_objects() -> None:
    """Move every object alive now (modules, classes, the app, pools) out of the garbage
    collector's reach, once a service is ready: its later collections then scan only
    what requests and messages allocate. Without it a full collection in the notifier
    walked the whole startup heap and added 10 to 15 ms to an admin send now and then
    (store_ms 24 -> 36-40 ms; benchmarks.fanout, docs/benchmarks.md)."""
    gc.collect()
    gc.freeze()


def stop_event() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (install inside the running loop)."""
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, event.set)
    return event


async def until_stopped(stop: asyncio.Event, tasks: list[asyncio.Task]) -> None:
    """Wait for `stop`; if a background task ends first, raise its error (or RuntimeError)
    so the process exits non-zero instead of running on half-dead."""
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    if waiter in done:
        return
    waiter.cancel()
    for task in done:
        if task.exception() is not None:
            raise task.exception()
    raise RuntimeError(f"background task {next(iter(done)).get_name()} ended unexpectedly")


async def started(ready: asyncio.Event, task: asyncio.Task) -> None:
    """Wait until a background task says it is ready; raise its error if it dies first."""
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait([waiter, task], return_when=asyncio.FIRST_COMPLETED)
    if not waiter.done():
        waiter.cancel()
        task.result()
        raise RuntimeError(f"{task.get_name()} ended before it was ready")


async def every(
    seconds: float, stop: asyncio.Event, job: Callable[[], Awaitable[None]], what: str
) -> None:
    """Run `job` now and then every `seconds` until `stop` is set. A failing round is
    logged (as "`what` failed") and the next round retries: periodic maintenance
    (sweeps, purges) must outlive a database hiccup."""
    while not stop.is_set():
        try:
            await job()
        except Exception:
            structlog.get_logger().exception(f"{what} failed; the next round retries")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

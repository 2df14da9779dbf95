"""Start-up of a service: reach NATS and PostgreSQL within a deadline, stop on a signal.

A service keeps trying to reach what it needs for PARKMATE_STARTUP_TIMEOUT_SECONDS,
logging each failed attempt as one line, then gives up with StartupFailed (the CLI
prints its message as one line and exits 1). SIGTERM or SIGINT while it is trying
raises Stopping at once, so an orchestrator that gives up on a pod is obeyed.
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")
DB_RETRY_SECONDS = 1.0

log = structlog.get_logger()


class Stopping(Exception):
    """SIGTERM or SIGINT arrived before the service was ready: it should exit at once."""


class StartupFailed(RuntimeError):
    """Something the service needs stayed out of reach for the whole start-up time; the
    message (one line) says what, the last error, and what to check."""


class Late(Exception):
    """The start-up deadline passed while waiting."""


def describe(error: BaseException | None) -> str:
    """One line saying what went wrong: `ConnectionRefusedError: [Errno 111] ...`."""
    if error is None:
        return "no answer yet"
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@dataclass(frozen=True)
class Startup:
    """The start-up of one service: `stop` (set by SIGTERM/SIGINT), `timeout` (seconds it
    may take to reach its dependencies) and the `deadline` that makes (time.monotonic())."""

    stop: asyncio.Event
    timeout: float
    deadline: float

    @classmethod
    def begin(cls, stop: asyncio.Event, timeout: float) -> "Startup":
        """A start-up whose deadline is `timeout` seconds from now."""
        return cls(stop, timeout, time.monotonic() + timeout)

    def remaining(self) -> float:
        """Seconds left before the deadline (0 when past)."""
        return max(0.0, self.deadline - time.monotonic())

    async def race(self, awaitable: Awaitable[T]) -> T:
        """The result of `awaitable`, unless `stop` is set first (raises Stopping) or the
        deadline passes first (raises Late); it is cancelled in both cases."""
        task = asyncio.ensure_future(awaitable)
        stopped = asyncio.create_task(self.stop.wait())
        try:
            await asyncio.wait(
                [task, stopped], timeout=self.remaining(), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopped.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if not task.cancelled():
            return task.result()
        if self.stop.is_set():
            raise Stopping
        raise Late

    async def retry(
        self,
        what: str,
        where: str,
        attempt: Callable[[], Awaitable[T]],
        hint: str,
        every: float,
    ) -> T:
        """Call `attempt` until it succeeds, `every` seconds apart, logging each failure
        as one line. Raises Stopping on a signal, StartupFailed (naming `what` at `where`,
        the last error and `hint`) once the deadline passes."""
        error: BaseException | None = None
        number = 0
        while True:
            number += 1
            try:
                return await self.race(attempt())
            except Late:
                break
            except Exception as e:
                error = e
                self.log_retry(what, where, e, number)
            try:
                await self.race(asyncio.sleep(min(every, self.remaining())))
            except Late:
                break
        raise self.failed(what, where, error, hint)

    def log_retry(self, what: str, where: str, error: BaseException, attempt: int) -> None:
        """One warning line for a failed attempt to reach `what` at `where`."""
        log.warning(
            f"{what} not reachable yet; retrying",
            url=where,
            error=describe(error),
            attempt=attempt,
            gives_up_in_seconds=round(self.remaining(), 1),
        )

    def failed(self, what: str, where: str, error: BaseException | None, hint: str):
        """The StartupFailed to raise once `what` stayed out of reach until the deadline."""
        return StartupFailed(
            f"could not reach {what} at {where} within {self.timeout:g} s "
            f"(PARKMATE_STARTUP_TIMEOUT_SECONDS); last error: {describe(error)}. {hint}"
        )


async def wait_for_database(engine: AsyncEngine, where: str, startup: Startup) -> None:
    """Return once PostgreSQL (at `where`, as logs show it) answers `SELECT 1` through
    `engine`, retrying every DB_RETRY_SECONDS; raises Stopping or StartupFailed (see
    Startup.retry)."""

    async def attempt() -> None:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    await startup.retry(
        "PostgreSQL",
        where,
        attempt,
        "Check PARKMATE_DATABASE_URL and that the database server is running.",
        DB_RETRY_SECONDS,
    )

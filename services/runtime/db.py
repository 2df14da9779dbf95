"""Database engines: one async SQLAlchemy engine (asyncpg) per service process."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.runtime.config import DEFAULT_POOL_SIZE

DISCONNECTED = "The database connection was lost; retry in a moment."


def async_url(url: str) -> str:
    """Accept postgres://, postgresql:// or postgresql+asyncpg:// URLs; return the asyncpg one."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url!r} (expected postgresql://user@host:port/db)")


def make_engine(url: str, pool_size: int = DEFAULT_POOL_SIZE) -> AsyncEngine:
    """An engine keeping `pool_size` connections open (services pass PARKMATE_DB_POOL_SIZE,
    see Common).

    No overflow: a connection opened for a burst and closed after it costs a backend
    start and a cold prepared-statement cache, which under load cost more than waiting
    for a pooled one. No pre-ping either: it is one more round trip per checkout (7 to
    12% of each service's CPU in a profiled replay, where a loopback `send` is the most
    expensive thing a service does). A connection broken by a PostgreSQL restart fails
    the one operation using it and SQLAlchemy then replaces the whole pool; consumers
    redeliver that message and the api answers 503.

    LIFO: a checkout takes the connection used last, whose prepared statements are
    warm. FIFO rotated through all of them, so at a few requests a second each one met
    a cold cache and planned its statements again (the admin send's recipient look-up
    took 14 ms instead of 3).
    """
    return create_async_engine(
        async_url(url), pool_size=pool_size, max_overflow=0, pool_recycle=1800, pool_use_lifo=True
    )


class ConnectionLost(Exception):
    """The PostgreSQL connection under a `raw_connection` was lost; the connection was
    dropped from the pool, so retrying the operation uses a new one."""


# What asyncpg raises when the server went away or ended our backend.
_LOST = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    # The protocol met the backend's goodbye mid-query; the connection is unusable.
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.CannotConnectNowError,
    ConnectionError,
    OSError,
)


@asynccontextmanager
async def raw_connection(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """An asyncpg connection from `engine`'s pool, for the hot paths only.

    Each statement runs on its own (autocommit), so an operation that must be atomic is
    one statement (data-modifying CTEs carry their outbox row). It skips SQLAlchemy's
    per-statement work, which cost 0.19 ms per execute against asyncpg's 0.08, and a
    transaction's BEGIN and COMMIT, two of a renewal's six round trips
    (benchmarks/bookings_paths.py). Values come back as asyncpg gives them: cast uuid
    columns to text in the SQL where callers want strings.

    Raises ConnectionLost (after dropping the connection from the pool) when the
    connection was lost; other errors pass through.
    """
    try:
        pooled = await engine.raw_connection()
    except Exception as e:
        if is_disconnect(e):  # PostgreSQL is down or still starting
            raise ConnectionLost(DISCONNECTED) from e
        raise
    try:
        yield pooled.driver_connection
    except _LOST as e:
        pooled.invalidate(e)
        raise ConnectionLost(DISCONNECTED) from e
    finally:
        pooled.close()


def is_disconnect(exc: BaseException) -> bool:
    """True when `exc` says the database connection was lost or could not be made
    (PostgreSQL restarted, terminated the backend, is down or still starting): the
    operation may succeed when retried on a new one."""
    if isinstance(exc, ConnectionLost):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    # A connection that could not be made at all comes as the driver's or the socket's
    # own error (SQLAlchemy does not wrap those), or wrapped without the invalidated flag.
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, _LOST):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False

"""A PostgreSQL backend killed under a service (a database restart, a failover) is an
`unavailable` answer (503 at the api) for the request that met it, and the next
request works on a fresh connection: never a 500, never a stuck pool."""

import contextlib
from collections.abc import AsyncIterator

import msgspec
import nats
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.runtime.db import make_engine, raw_connection
from services.runtime.micro import Endpoint, MicroServer, RemoteError, call
from tests.conftest import _admin_execute


class Ping(msgspec.Struct):
    pass


class Pong(msgspec.Struct):
    backend_pid: int


@contextlib.asynccontextmanager
async def pinged(nats_url: str, engine: AsyncEngine, raw: bool = False) -> AsyncIterator:
    """A micro service `dbtest` whose `dbtest.ping` answers its database backend's pid
    (through a pooled SQLAlchemy connection, or a raw one); yields `ping()`, which calls
    it. Disposes of `engine` at the end."""
    nc = await nats.connect(nats_url)

    async def handle(_: Ping) -> Pong:
        if raw:
            async with raw_connection(engine) as conn:
                return Pong(backend_pid=await conn.fetchval("SELECT pg_backend_pid()"))
        async with engine.connect() as conn:
            pid = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
        return Pong(backend_pid=pid)

    server = MicroServer(
        nc, "dbtest", "0.0.1", "test", [Endpoint("dbtest.ping", Ping, handle, Pong)]
    )
    await server.start()
    try:
        yield lambda: call(nc, "dbtest.ping", Ping(), Pong)
    finally:
        await server.stop()
        await nc.close()
        await engine.dispose()


async def test_a_killed_backend_is_unavailable_once_then_recovers(
    nats_url, database_url, pg_admin_url
):
    async with pinged(nats_url, make_engine(database_url, pool_size=1)) as ping:
        first = await ping()
        await _admin_execute(pg_admin_url, f"SELECT pg_terminate_backend({first.backend_pid})")
        with pytest.raises(RemoteError) as lost:
            await ping()
        assert lost.value.code == "unavailable"
        assert "retry" in lost.value.detail
        again = await ping()
        assert again.backend_pid != first.backend_pid


async def test_a_killed_backend_under_a_raw_connection_is_unavailable_once(
    nats_url, database_url, pg_admin_url
):
    """The hot paths' raw asyncpg connections: the same promise as above."""
    async with pinged(nats_url, make_engine(database_url, pool_size=1), raw=True) as ping:
        first = await ping()
        await _admin_execute(pg_admin_url, f"SELECT pg_terminate_backend({first.backend_pid})")
        with pytest.raises(RemoteError) as lost:
            await ping()
        assert lost.value.code == "unavailable"
        again = await ping()
        assert again.backend_pid != first.backend_pid


async def test_an_exhausted_pool_is_unavailable_not_internal(nats_url, database_url):
    """Every pooled connection busy for the pool's timeout: the service is overloaded,
    and the caller gets `unavailable` (503 at the api), not `internal` (500)."""
    engine = make_engine(database_url, pool_size=1)
    engine.pool._timeout = 0.2  # seconds a checkout waits for a free connection
    async with pinged(nats_url, engine) as ping:
        async with engine.connect() as held:  # the pool's only connection, kept busy
            await held.execute(sa.text("SELECT 1"))
            with pytest.raises(RemoteError) as busy:
                await ping()
        assert busy.value.code == "unavailable" and "retry" in busy.value.detail
        assert (await ping()).backend_pid > 0


async def test_postgresql_down_is_unavailable_not_an_internal_error(nats_url):
    """No server at all (PostgreSQL stopped, or still starting after a restart): the
    connect fails, which is `unavailable` (503 at the api) like a lost connection."""
    from services.runtime.db import ConnectionLost, is_disconnect
    from services.runtime.embedded import free_port

    engine = make_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/gone", pool_size=1)
    async with pinged(nats_url, engine) as ping:
        with pytest.raises(RemoteError) as down:
            await ping()
        assert down.value.code == "unavailable", down.value
        with pytest.raises(ConnectionLost) as raw:
            async with raw_connection(engine):
                pass
        assert is_disconnect(raw.value)

"""A starting service's connections: NATS, then PostgreSQL, within one deadline."""

import asyncio

from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from services.runtime import natsconn
from services.runtime.config import Common, redact
from services.runtime.db import make_engine
from services.runtime.startup import Startup, wait_for_database


async def connect_all(
    common: Common,
    name: str,
    stop: asyncio.Event,
    events: natsconn.ConnectionEvents | None = None,
) -> tuple[Client, AsyncEngine]:
    """The NATS connection (named `name`, reporting to `events`) and an engine that has
    reached PostgreSQL, both within `common.startup_timeout` seconds.

    Raises Stopping when `stop` is set meanwhile, StartupFailed when one stays out of
    reach, NatsTooOld; nothing is left open then.
    """
    startup = Startup.begin(stop, common.startup_timeout)
    nc = await natsconn.connect(common.nats_url, name, events, startup, common.nats_auth)
    engine = make_engine(common.database_url, common.db_pool_size)
    try:
        await wait_for_database(engine, redact(common.database_url), startup)
    except BaseException:
        await nc.close()
        await engine.dispose()
        raise
    return nc, engine

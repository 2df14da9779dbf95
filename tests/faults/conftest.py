"""Fixtures of the fault tests: a `Harness` (harness.py) of the test's own, started and
stopped around it; every service must still exit 0 on SIGTERM at the end."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.faults.harness import Harness


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    """nats-server, PostgreSQL and the four services as processes, all ready."""
    h = Harness(tmp_path)
    try:
        await h.start()
        yield h
    finally:
        codes = await h.close()
    assert all(code == 0 for code in codes.values()), codes

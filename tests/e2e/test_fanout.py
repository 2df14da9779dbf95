"""End to end: the fan-out benchmark (benchmarks/fanout.py) at a small size against the
system the e2e fixtures start: every admin send reaches every user's socket exactly
once, in inbox order, and no socket is closed."""

import pytest

from benchmarks.fanout import Options, run
from tests.e2e.conftest import System

pytestmark = pytest.mark.e2e


async def test_fanout_delivers_every_notification_once_and_in_order(system: System):
    system.admin()  # admin@example.com / secret-pw
    result = await run(
        Options(
            url=system.base,
            users=200,
            rounds=10,
            admin_email="admin@example.com",
            admin_password="secret-pw",
            settle=10.0,
            quiet=True,
        )
    )
    counts = result.summary()
    assert result.expected == 200 * 10, counts
    assert result.sockets_opened == 200, counts
    assert result.lost == 0, counts
    assert result.duplicated == 0, counts
    assert result.out_of_order == 0, counts
    assert result.sockets_closed == 0, counts
    assert result.delivered == result.expected, counts

"""The harness itself: each way of breaking something leaves a system that works."""

import pytest

from services.runtime.db import DISCONNECTED
from tests.faults.harness import CONSUMERS, SERVICES, Harness

pytestmark = pytest.mark.faults


async def test_each_restart_leaves_a_ready_system(harness: Harness):
    first = {name: inst.pid for name, inst in harness.instances.items()}
    for service in SERVICES:
        fault = await harness.restart(service, hard=True)
        assert fault.extra["exit_code"] == -9
    rolled = await harness.restart("notifier", hard=False)
    assert rolled.extra["exit_code"] == 0
    assert all(harness.instances[n].pid != pid for n, pid in first.items())
    await harness.restart_nats(hard=True)
    await harness.restart_postgres(hard=True)
    await harness.restart_postgres(hard=False)
    await harness.wait_ready()
    async with harness.http() as http:  # api, identity outbox, NATS, notifier all work
        body = {"email": "after@example.com", "password": "secret-pw", "full_name": "After"}
        for _ in range(3):
            r = await http.post("/auth/register", json=body)
            if r.status_code != 503:
                break
            # The documented cost of a PostgreSQL restart (runtime/db.py, no pre-ping): an
            # operation on a connection of the old pool fails with a 503 that says to
            # retry (unless the identity relay's poll met the broken pool first).
            assert r.json()["detail"] == DISCONNECTED and r.headers["Retry-After"], r.text
        assert r.status_code == 201, r.text
    await harness.drained(timeout=30)
    backlog = await harness.backlog()
    assert backlog.empty and set(backlog.consumers) == {
        f"{stream}/{durable}" for stream, durable in CONSUMERS
    }, backlog
    replica = await harness.start_service("bookings", name="bookings-2")
    assert replica.port != harness.instances["bookings"].port
    assert harness.terminate(replica) == 0

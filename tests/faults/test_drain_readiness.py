"""bookings, timers and notifier answer /readyz with 503 from SIGTERM until their probe
port closes at the very end of their drain, and exit 0 (docs/operations.md, "Stopping
and draining"). The api's drain has its own test (tests/e2e/test_drain.py).

A worker's drain may legitimately take only milliseconds, too short for a poll to see.
So nats-server is frozen (SIGSTOP) before the signal: the drain cannot finish while its
last step, the NATS connection's drain, waits for the server, and the not-ready window
stays open (seconds, until the test has seen it and thaws the server, or until
nats-py gives up on the frozen server) instead of depending on how fast a drain is."""

import asyncio
import signal
import time

import pytest

from tests.faults.harness import Harness

pytestmark = pytest.mark.faults

POLL_SECONDS = 0.005  # after the thaw the rest of the drain takes milliseconds


async def _readyz(port: int) -> int | None:
    """The status of GET /readyz, or None when nothing listens on `port`."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return None
    try:
        writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 5)
        return int(line.split()[1]) if line else None
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()


@pytest.mark.parametrize("service", ["bookings", "timers", "notifier"])
async def test_a_worker_is_not_ready_while_it_drains(harness: Harness, service: str):
    inst = harness.instances[service]
    assert await _readyz(inst.port) == 200
    assert inst.proc is not None and harness.nats is not None
    nats = harness.nats.proc
    nats.send_signal(signal.SIGSTOP)
    try:
        inst.proc.send_signal(signal.SIGTERM)
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = await _readyz(inst.port)
            if not seen or seen[-1] != status:
                seen.append(status)
            if status != 200:
                break
            await asyncio.sleep(POLL_SECONDS)  # polling a probe, as the kubelet does
        # Turning not ready waits for nothing: NATS is still frozen.
        assert seen[-1] == 503, seen
    finally:
        nats.send_signal(signal.SIGCONT)
    while time.monotonic() < deadline:
        status = await _readyz(inst.port)
        if seen[-1] != status:
            seen.append(status)
        if status is None:
            break
        await asyncio.sleep(POLL_SECONDS)
    # 200 until the signal is handled, then only 503 until the port closes.
    assert seen[-2:] == [503, None], seen
    assert 200 not in seen[seen.index(503) :], seen
    assert await asyncio.to_thread(inst.proc.wait, 30) == 0, inst.log_tail()

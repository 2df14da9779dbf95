"""`parkmate run <service>` as a process: bad settings are one line before any
connection; unreachable NATS or PostgreSQL is retried one log line at a time, obeys
SIGTERM at once and gives up after PARKMATE_STARTUP_TIMEOUT_SECONDS."""

import asyncio
import json
import os
import select
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from services.runtime.embedded import free_port

pytestmark = pytest.mark.e2e

SECRET = "startup-test-secret-that-is-long-enough"


def environment(**values: str) -> dict[str, str]:
    """This process's environment without PARKMATE_* variables, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARKMATE_")}
    return env | {f"PARKMATE_{k}": v for k, v in values.items()}


def closed_url(scheme: str) -> str:
    """A URL on a local port nobody listens on: connections are refused."""
    return f"{scheme}://postgres@127.0.0.1:{free_port()}/parkmate"


class Service:
    """`parkmate run <name>` with its stderr and stdout read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc
        self.lines: list[str] = []

    @classmethod
    async def start(cls, name: str, env: dict[str, str]) -> "Service":
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.cli",
            "run",
            name,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        return cls(proc)

    async def retries(self, what: str, count: int, timeout: float = 30) -> list[dict]:
        """Wait for `count` "`what` not reachable yet; retrying" lines; return them."""
        deadline = time.monotonic() + timeout
        while len(found := self.retry_lines(what)) < count:
            line = await asyncio.wait_for(
                self.proc.stdout.readline(), max(0.1, deadline - time.monotonic())
            )
            assert line, f"exited before {count} retries:\n" + "".join(self.lines)
            self.lines.append(line.decode())
        return found

    def retry_lines(self, what: str) -> list[dict]:
        event = f"{what} not reachable yet; retrying"
        return [json.loads(x) for x in self.lines if x.startswith("{") and event in x]

    async def finish(self, timeout: float) -> int:
        """Wait for the exit (at most `timeout` seconds) and read what is left."""
        rest = await asyncio.wait_for(self.proc.stdout.read(), timeout)
        self.lines += rest.decode().splitlines(keepends=True)
        return await asyncio.wait_for(self.proc.wait(), 1)

    def check_output(self) -> None:
        """No traceback, and every line one JSON log line or the one-line `Error:`."""
        text = "".join(self.lines)
        assert "Traceback" not in text, text
        for line in self.lines:
            if not line.startswith("Error: "):
                json.loads(line)

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


@pytest.fixture
async def services() -> AsyncIterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        service.kill()
        await service.proc.wait()


async def stopped_by_sigterm(service: Service, what: str) -> None:
    retries = await service.retries(what, 2)
    assert [r["attempt"] for r in retries] == [1, 2]
    for r in retries:
        assert r["level"] == "warning" and "Error" in r["error"] and r["gives_up_in_seconds"] > 0
    service.proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    code = await service.finish(timeout=5)
    took = time.monotonic() - t0
    assert code == 0 and took < 2.0, (code, took, "".join(service.lines))
    service.check_output()
    assert "stopped before it was ready" in service.lines[-1]


@pytest.mark.parametrize("name", ["api", "timers"])
async def test_unreachable_nats_is_retried_one_line_at_a_time_until_sigterm(services, name):
    env = environment(
        NATS_URL=f"nats://127.0.0.1:{free_port()}",
        DATABASE_URL=closed_url("postgresql"),
        JWT_SECRET=SECRET,
        PORT=str(free_port()),
    )
    services.append(service := await Service.start(name, env))
    await stopped_by_sigterm(service, "NATS")


async def test_unreachable_postgresql_is_retried_until_sigterm(services, nats_server_url):
    env = environment(NATS_URL=nats_server_url, DATABASE_URL=closed_url("postgresql"))
    services.append(service := await Service.start("bookings", env))
    await stopped_by_sigterm(service, "PostgreSQL")
    assert "ConnectionRefusedError" in service.retry_lines("PostgreSQL")[0]["error"]


@pytest.mark.parametrize(
    ("name", "what", "unreachable"),
    [("api", "NATS", "NATS_URL"), ("notifier", "PostgreSQL", "DATABASE_URL")],
)
async def test_a_service_gives_up_after_the_startup_timeout(
    services, nats_server_url, name, what, unreachable
):
    urls = {
        "NATS_URL": nats_server_url,
        "DATABASE_URL": closed_url("postgresql"),
    }
    if unreachable == "NATS_URL":
        urls["NATS_URL"] = f"nats://user:pw-not-shown@127.0.0.1:{free_port()}"
    env = environment(
        **urls, JWT_SECRET=SECRET, PORT=str(free_port()), STARTUP_TIMEOUT_SECONDS="1.5"
    )
    services.append(service := await Service.start(name, env))
    await service.retries(what, 1)
    t0 = time.monotonic()
    code = await service.finish(timeout=10)
    assert code == 1
    service.check_output()
    last = service.lines[-1]
    assert last.startswith(f"Error: could not reach {what} at ")
    assert "within 1.5 s (PARKMATE_STARTUP_TIMEOUT_SECONDS)" in last
    assert "ConnectionRefusedError" in last and f"Check PARKMATE_{unreachable}" in last
    assert "pw-not-shown" not in "".join(service.lines)
    # It kept trying until the deadline (NATS every 0.5 s, PostgreSQL every 1 s), and
    # gave up then, not later.
    assert len(service.retry_lines(what)) >= 2
    assert time.monotonic() - t0 < 1.5 + 1.0


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A port that accepts TCP connections into its backlog: any attempt shows there."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock
    sock.close()


BAD_SETTINGS = [
    ("api", {"PORT": "eighty"}, "PARKMATE_PORT must be an integer from 1 to 65535"),
    ("api", {"JWT_SECRET": ""}, "Set PARKMATE_JWT_SECRET to at least 32 random bytes"),
    (
        "api",
        {"JWT_SECRET": "change-me-to-32-random-bytes-or-more"},
        "PARKMATE_JWT_SECRET is a published placeholder",
    ),
    ("api", {"JWT_SECRET": "short"}, "PARKMATE_JWT_SECRET must be at least 32 bytes"),
    ("bookings", {"SWEEP_SECONDS": "-1"}, "PARKMATE_SWEEP_SECONDS must be a number greater"),
    ("timers", {"TIMER_FIRED_TTL": "1 day"}, "PARKMATE_TIMER_FIRED_TTL must be a Go duration"),
    ("notifier", {"DATABASE_URL": "mysql://db/x"}, "PARKMATE_DATABASE_URL must be a URL like"),
    ("notifier", {"PROBE_PORT": "-9000"}, "PARKMATE_PROBE_PORT must be an integer from 1"),
]


@pytest.mark.parametrize(("name", "bad", "message"), BAD_SETTINGS)
async def test_a_bad_setting_is_one_line_before_connecting_to_anything(
    services, listener, name, bad, message
):
    port = listener.getsockname()[1]
    good = {
        "NATS_URL": f"nats://127.0.0.1:{port}",
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/x",
        "JWT_SECRET": SECRET,
    }
    env = environment(**(good | bad))
    services.append(service := await Service.start(name, env))
    code = await service.finish(timeout=30)
    assert code == 1
    assert len(service.lines) == 1 and service.lines[0].startswith(f"Error: {message}")
    readable, _, _ = select.select([listener], [], [], 0)
    assert not readable, "the service connected before checking its settings"

"""The whole system as processes: four services started like `parkmate run <service>`."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import nats
import pytest
import websockets

from services.runtime.embedded import free_port
from tests.support import consumed

SERVICES = ("bookings", "timers", "notifier", "api")
SECRET = "e2e-test-secret-that-is-32-bytes-long"


class System:
    """Running service processes plus HTTP and WebSocket helpers for a test."""

    def __init__(self, nats_url: str, database_url: str, log_dir: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PARKMATE_NATS_URL": nats_url,
            "PARKMATE_DATABASE_URL": database_url,
            "PARKMATE_PORT": str(self.port),
            "PARKMATE_JWT_SECRET": SECRET,
        }
        self.nats_url = nats_url
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str) -> None:
        log = open(self.log_dir / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "run", name],
            env=self.env,
            stdout=log,
            stderr=log,
        )

    def stop(self, name: str) -> int:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGTERM)
        return proc.wait(20)

    async def wait_ready(self, timeout: float = 60) -> None:
        nc = await nats.connect(self.nats_url)
        js = nc.jetstream()
        deadline = time.monotonic() + timeout
        try:
            async with httpx.AsyncClient() as http:
                while True:
                    for name, proc in self.procs.items():
                        if proc.poll() is not None:
                            raise RuntimeError(
                                f"{name} exited: " + (self.log_dir / f"{name}.log").read_text()
                            )
                    try:
                        assert (await http.get(self.base + "/healthz")).status_code == 200
                        for service in ("bookings", "notifier"):
                            await nc.request(f"$SRV.PING.{service}", b"", timeout=1)
                        await js.consumer_info("EVENTS", "timers")
                        await js.consumer_info("EVENTS", "notifier")
                        await js.consumer_info("TIMERS", "bookings-timers")
                        return
                    except Exception:
                        if time.monotonic() > deadline:
                            raise
                        await asyncio.sleep(0.2)
        finally:
            await nc.close()

    async def notifier_caught_up(self) -> None:
        """Wait until the notifier has handled every event on EVENTS so far (both its
        consumers settled): a check that nobody was notified may follow."""
        nc = await nats.connect(self.nats_url)
        try:
            for durable in ("notifier", "notifier-users"):
                await consumed(nc.jetstream(), "EVENTS", durable)
        finally:
            await nc.close()

    async def consumer_caught_up(self, stream: str, durable: str) -> None:
        """Wait until consumer `durable` of `stream` has settled every message so far."""
        nc = await nats.connect(self.nats_url)
        try:
            await consumed(nc.jetstream(), stream, durable)
        finally:
            await nc.close()

    def shutdown(self) -> dict[str, int]:
        codes = {}
        for name in reversed(SERVICES):
            if name in self.procs:
                codes[name] = self.stop(name)
        return codes

    # ----- helpers a driver, an owner and an admin use -----

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base + "/api/v1", timeout=15)

    async def user(
        self,
        http: httpx.AsyncClient,
        email: str,
        roles: list[str] | None = None,
        admin_token: str | None = None,
    ) -> tuple[str, str]:
        """(user id, token) of a new user: registered, or created by an admin with roles."""
        body = {"email": email, "password": "secret-pw", "full_name": email.split("@")[0]}
        if roles:
            r = await http.post(
                "/admin/users",
                json=body | {"roles": roles},
                headers={"Authorization": f"Bearer {admin_token}"},
            )
        else:
            r = await http.post("/auth/register", json=body)
        assert r.status_code == 201, r.text
        login = await http.post("/auth/login", json={"email": email, "password": "secret-pw"})
        return r.json()["id"], login.json()["access_token"]

    def admin(self, email: str = "admin@example.com") -> None:
        """Create the first admin with the CLI, as an operator would."""
        subprocess.run(
            [
                sys.executable,
                "-m",
                "services.cli",
                "users",
                "create",
                "--email",
                email,
                "--password",
                "secret-pw",
                "--full-name",
                "Admin",
                "--role",
                "admin",
            ],
            env=self.env,
            check=True,
            capture_output=True,
        )

    async def socket(self, token: str):
        ws = await websockets.connect(f"ws://127.0.0.1:{self.port}/ws?token={token}")
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello"
        return ws


@pytest.fixture
async def system(nats_url, database_url, tmp_path) -> AsyncIterator[System]:
    s = System(nats_url, database_url, tmp_path)
    for name in SERVICES:
        s.start(name)
    try:
        await s.wait_ready()
        yield s
    finally:
        codes = s.shutdown()
    assert all(code == 0 for code in codes.values()), codes


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}

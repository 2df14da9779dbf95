"""Overload answered early (services/api/overload.py): an api with a tiny in-flight bound,
its slots held by requests whose bodies have not finished arriving, refuses the others
with 503, Retry-After and a detail, keeps its probes and WebSocket open, and serves the
held ones; a waiting renewal gets a freed slot before older waiters; a service that
does not answer is 503 with Retry-After too; the replay's client counts those answers
and retries after them. Real NATS and PostgreSQL."""

import asyncio
import contextlib
import re

import aiohttp
import httpx
import pytest
import websockets

from services.api.config import Settings as ApiSettings
from services.api.entrypoints import serve as serve_api
from services.bookings.config import Settings as BookingsSettings
from services.bookings.entrypoints import serve as serve_bookings
from services.notifier.config import Settings as NotifierSettings
from services.notifier.entrypoints import serve as serve_notifier
from services.replay.simulation import Options, Simulation
from services.runtime.config import Common
from services.runtime.embedded import free_port
from tests.support import eventually, running

SECRET = "integration-test-secret-of-32-bytes!"
BOUND = 2


def api_settings(common: Common, port: int) -> ApiSettings:
    return ApiSettings(common, port=port, jwt_secret=SECRET, max_inflight=BOUND, queue_seconds=0.3)


@pytest.fixture
async def base(nats_url, database_url):
    """The base URL of an api allowing BOUND requests in flight, with bookings and the
    notifier running."""
    common = Common(nats_url, database_url)
    port = free_port()
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(running(serve_bookings, BookingsSettings(common)))
        await stack.enter_async_context(running(serve_notifier, NotifierSettings(common)))
        await stack.enter_async_context(running(serve_api, api_settings(common, port)))
        yield f"http://127.0.0.1:{port}"


async def driver_token(http: httpx.AsyncClient) -> str:
    body = {"email": "ann@example.com", "password": "secret-pw", "full_name": "Ann"}
    assert (await http.post("/api/v1/auth/register", json=body)).status_code == 201
    r = await http.post("/api/v1/auth/login", json={k: body[k] for k in ("email", "password")})
    return r.json()["access_token"]


async def metric(http: httpx.AsyncClient, name: str) -> float:
    """A sample without labels from the api's /metrics."""
    return float(re.search(rf"^{name} (\S+)$", (await http.get("/metrics")).text, re.M)[1])


async def until_in_flight(http: httpx.AsyncClient, count: int) -> None:
    async def reached() -> bool:
        return await metric(http, "parkmate_api_requests_in_flight") == count

    await eventually(reached)


class Held:
    """Logins whose JSON bodies stop half-way until `release`: each holds a slot."""

    def __init__(self, base: str, count: int):
        self.gate = asyncio.Event()
        self.http = httpx.AsyncClient(base_url=base, timeout=None)
        self.tasks = [asyncio.create_task(self._login()) for _ in range(count)]

    async def _body(self):
        yield b'{"email": "ann@example.com", '
        await self.gate.wait()
        yield b'"password": "secret-pw"}'

    async def _login(self) -> httpx.Response:
        return await self.http.post(
            "/api/v1/auth/login",
            content=self._body(),
            headers={"content-type": "application/json"},
        )

    async def release(self) -> list[httpx.Response]:
        self.gate.set()
        try:
            return await asyncio.gather(*self.tasks)
        finally:
            await self.http.aclose()


async def test_requests_beyond_the_bound_get_503_with_retry_after_and_held_ones_finish(base):
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        token = await driver_token(http)
        auth = {"Authorization": f"Bearer {token}"}
        assert await metric(http, "parkmate_api_requests_in_flight") == 0
        held = Held(base, BOUND)
        try:
            await until_in_flight(http, BOUND)
            refused = await asyncio.gather(
                *(http.get("/api/v1/me", headers=auth) for _ in range(5))
            )
            for r in refused:
                assert r.status_code == 503, r.text
                assert r.headers["retry-after"] == "1"  # 0.3 s of queueing, rounded up
                assert "at capacity" in r.json()["detail"]
                assert "Retry after 1 s" in r.json()["detail"]
            # Never held back: probes, metrics and WebSocket upgrades.
            for path in ("/healthz", "/readyz", "/metrics"):
                assert (await http.get(path)).status_code == 200, path
            ws_url = base.replace("http", "ws", 1) + f"/ws?token={token}"
            async with websockets.connect(ws_url) as ws:
                assert '"type":"hello"' in (await asyncio.wait_for(ws.recv(), 30)).replace(" ", "")
            assert await metric(http, "parkmate_api_overload_rejections_total") >= 5
        finally:
            answers = await held.release()
        assert [r.status_code for r in answers] == [200] * BOUND
        assert all(r.json()["access_token"] for r in answers)
        await until_in_flight(http, 0)
        for _ in range(3):  # the slots are free again
            assert (await http.get("/api/v1/me", headers=auth)).status_code == 200


async def test_the_replay_counts_a_503_and_retries_after_it(base):
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as http,
        aiohttp.ClientSession() as session,
    ):
        token = await driver_token(http)
        sim = Simulation(None, Options(url=base))  # only its HTTP client is used here
        sim.session, sim.gate = session, asyncio.Semaphore(4)
        held = Held(base, BOUND)

        async def refused_once() -> bool:
            return sim.stats.overload["renew"][503] >= 1

        try:
            await until_in_flight(http, BOUND)
            call = asyncio.create_task(sim.call("GET", "/api/v1/me", token, kind="renew"))
            await eventually(refused_once)
        finally:
            await held.release()
        r = await call
        assert r.status_code == 200 and r.retried
        assert sim.stats.retries >= 1 and set(sim.stats.overload) == {"renew"}


async def test_a_service_that_does_not_answer_is_503_with_retry_after_and_documented(
    nats_url, database_url
):
    common = Common(nats_url, database_url)
    port = free_port()
    async with (
        running(serve_api, api_settings(common, port)),  # no bookings service behind it
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http,
    ):
        token = await driver_token(http)
        r = await http.get("/api/v1/lots", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert "did not answer; try again" in r.json()["detail"]
        # Every operation documents the 503 (overload or a service without an answer).
        paths = (await http.get("/schema/openapi.json")).json()["paths"]
        operations = [op for path in paths.values() for op in path.values() if "responses" in op]
        assert len(operations) > 30
        assert all("503" in op["responses"] for op in operations)


async def test_a_waiting_renewal_gets_the_freed_slot_before_an_older_waiting_request(
    nats_url, database_url
):
    common = Common(nats_url, database_url)
    port = free_port()
    patient = ApiSettings(
        common, port=port, jwt_secret=SECRET, max_inflight=BOUND, queue_seconds=30
    )
    base = f"http://127.0.0.1:{port}"
    async with (
        running(serve_bookings, BookingsSettings(common)),
        running(serve_api, patient),
        httpx.AsyncClient(base_url=base, timeout=60) as http,
    ):
        auth = {"Authorization": f"Bearer {await driver_token(http)}"}
        first, second = Held(base, 1), Held(base, 1)
        try:
            await until_in_flight(http, BOUND)
            read = asyncio.create_task(http.get("/api/v1/me", headers=auth))

            async def waiting(count: int):
                async def reached() -> bool:
                    return await metric(http, "parkmate_api_requests_waiting") == count

                await eventually(reached)

            await waiting(1)
            renewal = asyncio.create_task(
                http.post(
                    "/api/v1/bookings/0192f0a4-7c1e-7000-8000-000000000001/renew",
                    headers=auth,
                    json={},
                )
            )
            await waiting(2)
            await first.release()  # one slot frees: the renewal, not the older read, gets it
            done, _ = await asyncio.wait({read, renewal}, return_when=asyncio.FIRST_COMPLETED)
            assert done == {renewal}
            assert renewal.result().status_code == 404, renewal.result().text
            assert (await read).status_code == 200
        finally:
            await first.release()
            await second.release()

"""How the replay's client reads an overloaded api's Retry-After and retries its 503
(no services: a scripted HTTP server stands in for the api)."""

import asyncio

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from services.replay.simulation import MAX_RETRY_AFTER, Answer, Options, Simulation, retry_after


def answer(value: str | None) -> Answer:
    # Headers as aiohttp gives them: names case-insensitive.
    return Answer(503, CIMultiDict({} if value is None else {"Retry-After": value}), b"")


def test_retry_after_in_seconds_is_read_and_capped():
    assert retry_after(answer("2")) == 2.0
    assert retry_after(answer("0")) == 0.0
    assert retry_after(answer("86400")) == MAX_RETRY_AFTER


def test_no_or_an_unread_retry_after_falls_back_to_the_backoff():
    assert retry_after(answer(None)) is None
    assert retry_after(answer("Wed, 21 Oct 2015 07:28:00 GMT")) is None
    assert retry_after(answer("nan")) is None


async def test_a_read_with_a_query_waits_out_a_503_and_is_counted_under_its_kind():
    """The replay's own reads (lots, slots, the owners' inboxes after the day) go
    through `call`: an overloaded api's 503 is retried after its Retry-After, with the
    same query string, instead of stopping the replay."""
    seen: list[dict] = []

    async def inbox(request: web.Request) -> web.Response:
        seen.append(dict(request.query))
        if len(seen) == 1:
            return web.json_response(
                {"status_code": 503, "detail": "at capacity"},
                status=503,
                headers={"Retry-After": "0"},
            )
        return web.json_response({"items": [], "next_cursor": None})

    app = web.Application()
    app.router.add_get("/api/v1/notifications", inbox)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        sim = Simulation(None, Options(url=f"http://127.0.0.1:{port}"))  # type: ignore[arg-type]
        sim.gate = asyncio.Semaphore(1)
        async with aiohttp.ClientSession() as sim.session:
            r = await sim.call(
                "GET", "/api/v1/notifications", "token", params={"limit": 200}, kind="check"
            )
    finally:
        await runner.cleanup()
    assert r.status_code == 200 and r.retried
    assert seen == [{"limit": "200"}, {"limit": "200"}]
    assert sim.stats.overload["check"][503] == 1 and sim.stats.retries == 1

"""The api's drain on SIGTERM, as a real process: /readyz turns 503 at once, requests and
sockets are served on for PARKMATE_DRAIN_SECONDS, then sockets close with 1001 and a
request in flight still gets its answer (docs/operations.md, "Stopping and draining")."""

import asyncio
import json
import signal
import time

import httpx
import websockets

from tests.e2e.conftest import SERVICES, System
from tests.support import eventually

DRAIN_SECONDS = 4


async def _start_request(port: int, path: str, body: bytes) -> tuple:
    """Open a connection and send a POST's headers and all of its body but the last
    byte: the request is in flight (uvicorn has its headers) until the rest comes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[:-1]
    )
    await writer.drain()
    return reader, writer


async def _finish_request(reader, writer, body: bytes) -> tuple[int, dict]:
    """Send the last byte of the body; (status, JSON body) of the answer."""
    writer.write(body[-1:])
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15)
    status = int(head.split(b" ", 2)[1])
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    payload = await asyncio.wait_for(reader.readexactly(length), 15)
    writer.close()
    return status, json.loads(payload)


async def test_api_drains_on_sigterm(nats_url, database_url, tmp_path):
    s = System(nats_url, database_url, tmp_path)
    s.env["PARKMATE_DRAIN_SECONDS"] = str(DRAIN_SECONDS)
    for name in SERVICES:
        s.start(name)
    try:
        await s.wait_ready()
        async with s.http() as http:
            _, token = await s.user(http, "drain@example.com")
        ws = await s.socket(token)
        body = json.dumps({"email": "drain@example.com", "password": "secret-pw"}).encode()
        in_flight = await _start_request(s.port, "/api/v1/auth/login", body)

        api = s.procs["api"]
        api.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        async with httpx.AsyncClient(base_url=s.base, timeout=5) as probe:

            async def draining() -> bool:
                r = await probe.get("/readyz")
                return r.status_code == 503 and r.json()["status"] == "draining"

            await eventually(draining, timeout=DRAIN_SECONDS)
            # Within the drain time everything is still served, new requests included,
            # and their answers tell keep-alive clients to go elsewhere.
            assert time.monotonic() - signalled < DRAIN_SECONDS
            r = await probe.get("/healthz")
            assert r.status_code == 200
            assert r.headers["connection"] == "close"
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "pong"}
        assert time.monotonic() - signalled < DRAIN_SECONDS

        # Then the socket is closed with the documented code, not before the drain time.
        try:
            while True:
                await asyncio.wait_for(ws.recv(), DRAIN_SECONDS + 10)
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1001, closed
        assert time.monotonic() - signalled >= DRAIN_SECONDS

        # The request in flight since before SIGTERM still completes.
        status, answer = await _finish_request(*in_flight, body)
        assert status == 200, answer
        assert answer["access_token"]
        assert s.procs.pop("api").wait(20) == 0
    finally:
        codes = s.shutdown()
    assert all(code == 0 for code in codes.values()), codes

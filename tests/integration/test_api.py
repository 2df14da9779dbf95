"""The api over HTTP and WebSocket, with bookings and notifier running, real NATS and
PostgreSQL underneath."""

import asyncio
import contextlib
import json
import tomllib
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import websockets

from services.api import idempotency, identity
from services.api.config import Settings as ApiSettings
from services.api.entrypoints import serve as serve_api
from services.bookings.config import Settings as BookingsSettings
from services.bookings.entrypoints import serve as serve_bookings
from services.contracts.ids import uuid7
from services.notifier.config import Settings as NotifierSettings
from services.notifier.entrypoints import serve as serve_notifier
from services.runtime.config import Common
from services.runtime.db import make_engine
from services.runtime.embedded import free_port
from tests.support import running

SECRET = "integration-test-secret-of-32-bytes!"
KEYS = identity.Keyring.of(SECRET)


@pytest.fixture
async def api(nats_url, database_url):
    common = Common(nats_url, database_url)
    port = free_port()
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(running(serve_bookings, BookingsSettings(common)))
        await stack.enter_async_context(running(serve_notifier, NotifierSettings(common)))
        await stack.enter_async_context(
            running(serve_api, ApiSettings(common, port=port, jwt_secret=SECRET, token_seconds=2))
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/api/v1") as http:
            http.ws_url = f"ws://127.0.0.1:{port}/ws"
            yield http


async def register(http, email="ann@example.com", password="secret-pw") -> str:
    r = await http.post(
        "/auth/register", json={"email": email, "password": password, "full_name": "Ann"}
    )
    assert r.status_code == 201, r.text
    r = await http.post("/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def test_register_login_me_and_errors(api):
    r = await api.post(
        "/auth/register",
        json={"email": "Ann@Example.com", "password": "secret-pw", "full_name": "Ann"},
    )
    assert r.status_code == 201
    user = r.json()
    assert user["email"] == "ann@example.com" and user["roles"] == ["driver"]
    again = await api.post(
        "/auth/register",
        json={"email": "ann@example.com", "password": "secret-pw", "full_name": "A"},
    )
    assert again.status_code == 409 and "already registered" in again.json()["detail"]
    bad = await api.post("/auth/login", json={"email": "ann@example.com", "password": "nope!"})
    assert bad.status_code == 401 and bad.json()["detail"]
    token = (
        await api.post("/auth/login", json={"email": "ann@example.com", "password": "secret-pw"})
    ).json()
    assert token["token_type"] == "bearer" and token["expires_in"] == 2
    me = await api.get("/me", headers=auth(token["access_token"]))
    assert me.json()["id"] == user["id"]
    assert (await api.get("/me")).status_code == 401
    assert (await api.get("/me", headers=auth("garbage"))).status_code == 401
    short = await api.post(
        "/auth/register", json={"email": "b@example.com", "password": "x", "full_name": "B"}
    )
    assert short.status_code == 400 and "password" in short.json()["detail"]
    missing = await api.post("/auth/register", json={"email": "c@example.com"})
    assert missing.status_code == 400


async def test_admin_creates_users_with_roles_and_drivers_cannot(api):
    driver = await register(api)
    r = await api.post(
        "/admin/users",
        headers=auth(driver),
        json={
            "email": "o@example.com",
            "password": "secret-pw",
            "full_name": "O",
            "roles": ["owner"],
        },
    )
    assert r.status_code == 403


async def test_idempotency_key_replays_and_rejects_another_body(api):
    body = {"email": "idem@example.com", "password": "secret-pw", "full_name": "I"}
    first = await api.post("/auth/register", json=body, headers={"Idempotency-Key": "k-1"})
    retry = await api.post("/auth/register", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == retry.status_code == 201
    assert first.json() == retry.json() and retry.headers["idempotent-replayed"] == "true"
    other = await api.post(
        "/auth/register", json=body | {"full_name": "X"}, headers={"Idempotency-Key": "k-1"}
    )
    assert other.status_code == 422 and "another request" in other.json()["detail"]


async def test_concurrent_keys_share_statements_and_each_runs_once(api):
    """Requests that arrive together share a claim statement (runtime/coalesce.py): each
    key still runs once, and a key sent five times at once makes one vehicle."""
    token = await register(api)

    def add(plate: str, key: str):
        headers = auth(token) | {"Idempotency-Key": key}
        return api.post("/vehicles", json={"plate": plate}, headers=headers)

    distinct = [add(f"AB{n:02d} CDE", f"many-{n}") for n in range(20)]
    same = [add("ZZ99 ZZZ", "many-same") for _ in range(5)]
    answers = await asyncio.gather(*distinct, *same)
    assert [r.status_code for r in answers[:20]] == [201] * 20, [r.text for r in answers]
    assert len({r.json()["id"] for r in answers[:20]}) == 20
    ran = [
        r for r in answers[20:] if r.status_code == 201 and "idempotent-replayed" not in r.headers
    ]
    assert len(ran) == 1
    for r in answers[20:]:
        assert r.status_code in (201, 409), r.text
        if r.status_code == 201:
            assert r.json()["id"] == ran[0].json()["id"]
    retry = await add("ZZ99 ZZZ", "many-same")
    assert retry.status_code == 201 and retry.headers["idempotent-replayed"] == "true"
    assert retry.json()["id"] == ran[0].json()["id"]
    plates = [v["plate"] for v in (await api.get("/vehicles", headers=auth(token))).json()["items"]]
    assert sorted(plates) == sorted([f"AB{n:02d}CDE" for n in range(20)] + ["ZZ99ZZZ"])


async def test_idempotency_keys_older_than_their_retention_are_purged(api, database_url):
    body = {"email": "old@example.com", "password": "secret-pw", "full_name": "O"}
    first = await api.post("/auth/register", json=body, headers={"Idempotency-Key": "old"})
    assert first.status_code == 201
    young = body | {"email": "young@example.com"}
    assert (
        await api.post("/auth/register", json=young, headers={"Idempotency-Key": "young"})
    ).status_code == 201
    engine = make_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "UPDATE identity.idempotency_keys SET created_at = now() - interval '25 hours'"
                    " WHERE key = 'old'"
                )
            )
        assert await idempotency.purge_expired(engine, timedelta(hours=24), batch=1) == 1
        assert await idempotency.purge_expired(engine, timedelta(hours=24)) == 0
    finally:
        await engine.dispose()
    # The purged key is forgotten: the same request runs again (and meets the taken email).
    again = await api.post("/auth/register", json=body, headers={"Idempotency-Key": "old"})
    assert again.status_code == 409 and "idempotent-replayed" not in again.headers
    kept = await api.post("/auth/register", json=young, headers={"Idempotency-Key": "young"})
    assert kept.status_code == 201 and kept.headers["idempotent-replayed"] == "true"


async def test_one_statement_stores_answers_and_claims_keys(api, database_url):
    """The middleware's batch (services/api/idempotency.py): an earlier request's answer,
    a new key, a key named twice and a retry of the answered key, in one statement."""
    engine = make_engine(database_url, pool_size=1)
    try:
        middleware = idempotency.IdempotencyMiddleware(None, engine, KEYS)
        at = datetime.now(UTC)
        first = idempotency._Claim("u-batch", "k-done", "h1", at)
        assert await middleware.claim_and_store([first]) == [True]
        answer = idempotency._Answer("u-batch", "k-done", 201, b"[]", b'{"id": 1}')
        new, twice = (idempotency._Claim("u-batch", k, "h2", at) for k in ("k-new", "k-twice"))
        again = idempotency._Claim("u-batch", "k-twice", "h2", at)
        retry = idempotency._Claim("u-batch", "k-done", "h1", at)
        got = await middleware.claim_and_store([answer, new, twice, again, retry])
        assert got == [None, True, True, False, False]
        assert await stored_keys(engine, "u-batch") == [
            ("k-done", 201, b'{"id": 1}'),
            ("k-new", None, None),
            ("k-twice", None, None),
        ]

        # At most one claim and one answer: the statement with plain parameters.
        assert idempotency._statement([], [answer])[0] is idempotency._CLAIM_AND_STORE_ONE
        answer_new = idempotency._Answer("u-batch", "k-new", 200, b"[]", b'{"id": 2}')
        one = idempotency._Claim("u-batch", "k-one", "h3", at)
        assert await middleware.claim_and_store([answer_new, one]) == [None, True]
        assert await middleware.claim_and_store([one]) == [False]
        answer_one = idempotency._Answer("u-batch", "k-one", 409, b"[]", b'{"detail": "x"}')
        assert await middleware.claim_and_store([answer_one]) == [None]
        assert (await stored_keys(engine, "u-batch"))[1:] == [
            ("k-new", 200, b'{"id": 2}'),
            ("k-one", 409, b'{"detail": "x"}'),
            ("k-twice", None, None),
        ]
    finally:
        await engine.dispose()


async def stored_keys(engine, principal: str) -> list[tuple]:
    """(key, status_code, response_body) of each Idempotency-Key of `principal`, by key."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.text(
                "SELECT key, status_code, response_body FROM identity.idempotency_keys"
                " WHERE principal = :p ORDER BY key"
            ),
            {"p": principal},
        )
        return [tuple(r) for r in rows]


async def test_lots_need_an_owner_and_bookings_get_409_when_taken(api):
    driver = await register(api)
    r = await api.post(
        "/lots", headers=auth(driver), json={"name": "L", "address": "A", "slot_count": 1}
    )
    assert r.status_code == 403
    assert (await api.get("/lots/not-a-uuid", headers=auth(driver))).status_code == 404
    assert (
        await api.post(
            "/bookings",
            headers=auth(driver),
            json={"slot_id": "01a2082c-5d45-7950-9861-32487e89739a"},
        )
    ).status_code == 404


async def test_openapi_lists_the_routes(api):
    r = await api.get("http://" + api.base_url.host + f":{api.base_url.port}/schema/openapi.json")
    paths = r.json()["paths"]
    for path in (
        "/api/v1/auth/register",
        "/api/v1/lots",
        "/api/v1/bookings/{booking_id}",
        "/api/v1/lots/{lot_id}/slots",
    ):
        assert path in paths


async def test_websocket_hello_ping_errors_and_bad_tokens(api):
    token = await register(api)
    async with websockets.connect(f"{api.ws_url}?token={token}") as ws:
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello" and hello["last_seq"] == 0 and hello["unread_count"] == 0
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv()) == {"type": "pong"}
        await ws.send("not json")
        assert json.loads(await ws.recv())["type"] == "error"
        await ws.send(json.dumps({"type": "dance"}))
        err = json.loads(await ws.recv())
        assert err["type"] == "error" and err["code"] == "unknown_type"
        await ws.send(json.dumps({"type": "ping"}))  # still open
        assert json.loads(await ws.recv()) == {"type": "pong"}
    async with websockets.connect(api.ws_url, additional_headers=auth(token)) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
    for url in (api.ws_url, f"{api.ws_url}?token=bad"):
        async with websockets.connect(url) as ws:
            with pytest.raises(websockets.ConnectionClosed) as e:
                await ws.recv()
            assert e.value.rcvd.code == 4401


async def test_websocket_closes_4401_when_the_token_expires(api):
    token = await register(api)  # tokens last 2 s in this fixture
    async with websockets.connect(f"{api.ws_url}?token={token}") as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
        with pytest.raises(websockets.ConnectionClosed) as e:
            await asyncio.wait_for(ws.recv(), 5)
        assert e.value.rcvd.code == 4401


async def test_oversized_frame_closes_with_1009(api):
    token = await register(api)
    async with websockets.connect(f"{api.ws_url}?token={token}", max_size=None) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "ping", "pad": "x" * 70_000}))
        with pytest.raises(websockets.ConnectionClosed) as e:
            await ws.recv()
        assert e.value.rcvd.code == 1009


async def test_probes_and_metrics(api):
    root = f"http://{api.base_url.host}:{api.base_url.port}"
    health = await api.get(root + "/healthz")
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert health.json() == {"status": "ok", "version": pyproject["project"]["version"]}
    assert (await api.get(root + "/readyz")).json() == {"status": "ready"}
    token = await register(api)
    async with websockets.connect(f"{api.ws_url}?token={token}") as ws:
        await ws.recv()
        text = (await api.get(root + "/metrics")).text
        assert "parkmate_websockets 1.0" in text


async def test_a_booking_and_its_renewal_retried_after_a_lost_answer_apply_once(api, database_url):
    """A POST's answer can be lost after the bookings service acted (the api answered
    503 when it stopped waiting, and a 5xx keeps no stored answer). The retry with the
    same Idempotency-Key reaches the service again, which recognises it: the same
    booking, renewed once."""
    owner = identity.issue_token(KEYS, str(uuid7()), ["owner"], 300)
    driver = identity.issue_token(KEYS, str(uuid7()), ["driver"], 300)
    lot = await api.post(
        "/lots", headers=auth(owner), json={"name": "L", "address": "A", "slot_count": 1}
    )
    assert lot.status_code == 201, lot.text
    slot_id = lot.json()["slots"][0]["id"]
    engine = make_engine(database_url)

    async def forget_answers() -> None:  # as if each first try had ended in a 503
        async with engine.begin() as conn:
            await conn.execute(sa.text("DELETE FROM identity.idempotency_keys"))

    def post(path: str, key: str, body: dict) -> Awaitable[httpx.Response]:
        return api.post(path, headers=auth(driver) | {"Idempotency-Key": key}, json=body)

    try:
        # The key the service gets is the one the stored answer is filed under: the
        # header's last value (not another value of a repeated header).
        first = await api.post(
            "/bookings",
            headers=[
                *auth(driver).items(),
                ("Idempotency-Key", "x"),
                ("Idempotency-Key", "k-book"),
            ],
            json={"slot_id": slot_id},
        )
        assert first.status_code == 201, first.text
        await forget_answers()
        retry = await post("/bookings", "k-book", {"slot_id": slot_id})
        assert retry.status_code == 201, retry.text
        assert "idempotent-replayed" not in retry.headers  # the service answered it
        assert retry.json()["id"] == first.json()["id"]
        other = await post("/bookings", "k-other", {"slot_id": slot_id})
        assert other.status_code == 409, other.text
        booking_id = first.json()["id"]
        renewed = await post(f"/bookings/{booking_id}/renew", "k-renew", {})
        assert renewed.status_code == 200 and renewed.json()["renewals"] == 1, renewed.text
        await forget_answers()
        again = await post(f"/bookings/{booking_id}/renew", "k-renew", {})
        assert again.status_code == 200, again.text
        assert again.json()["renewals"] == 1
        assert again.json()["end_time"] == renewed.json()["end_time"]
    finally:
        await engine.dispose()

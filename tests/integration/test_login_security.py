"""Log-in throttling per account and per client address, and JWT key rotation, over
real HTTP against the api with real NATS and PostgreSQL."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
import sqlalchemy as sa
import websockets
from argon2 import PasswordHasher, extract_parameters

from services.api import identity, logins, storage
from services.api.config import Settings as ApiSettings
from services.api.entrypoints import serve as serve_api
from services.notifier.config import Settings as NotifierSettings
from services.notifier.entrypoints import serve as serve_notifier
from services.runtime.config import Common
from services.runtime.db import make_engine
from services.runtime.embedded import free_port
from tests.support import eventually, running

SECRET = "login-security-test-secret-0123456789"
NEXT = "the-secret-that-replaces-it-0123456789"
PASSWORD = "secret-pw"


@contextlib.asynccontextmanager
async def api(nats_url: str, database_url: str, **settings) -> AsyncIterator[httpx.AsyncClient]:
    """The api alone (log-in needs nothing else), with `settings` over the defaults."""
    port = free_port()
    settings = {"jwt_secret": SECRET} | settings
    async with running(
        serve_api, ApiSettings(Common(nats_url, database_url), port=port, **settings)
    ):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/api/v1") as http:
            http.ws_url = f"ws://127.0.0.1:{port}/ws"
            yield http


async def register(http: httpx.AsyncClient, email: str) -> None:
    r = await http.post(
        "/auth/register", json={"email": email, "password": PASSWORD, "full_name": "X"}
    )
    assert r.status_code == 201, r.text


async def login(
    http: httpx.AsyncClient, email: str, password: str, address: str | None = None, **headers
) -> httpx.Response:
    """POST /auth/login, from `address` as a trusted proxy would say (X-Forwarded-For)."""
    if address is not None:
        headers["X-Forwarded-For"] = address
    return await http.post(
        "/auth/login", json={"email": email, "password": password}, headers=headers
    )


async def test_failed_logins_for_one_account_are_limited_from_any_address(nats_url, database_url):
    limits = {"login_account_attempts": 3, "login_account_window_seconds": 60}
    async with api(nats_url, database_url, **limits) as http:
        await register(http, "ann@example.com")
        await register(http, "bob@example.com")
        for i in range(3):
            r = await login(http, "ann@example.com", "wrong-pw", f"198.51.100.{i}")
            assert r.status_code == 401, r.text
        # Even the right password is refused now, from yet another address, without
        # being checked (a guess must not learn anything while the account is locked).
        locked = await login(http, "Ann@Example.com ", PASSWORD, "198.51.100.77")
        assert locked.status_code == 429
        # 60 s / 3 attempts: the first failure's share is back 20 s after it was made.
        wait = int(locked.headers["retry-after"])
        assert 15 <= wait <= 20
        assert locked.json()["detail"] == (
            f"Too many failed logins for this account; try again in {wait} s."
        )
        # Another account from the same addresses is not affected.
        assert (await login(http, "bob@example.com", PASSWORD, "198.51.100.0")).status_code == 200


@pytest.mark.parametrize("trusted", [True, False])
async def test_failed_logins_from_one_address_are_limited_across_accounts(
    nats_url, database_url, trusted
):
    """Behind a trusted proxy the address is X-Forwarded-For's; from anyone else the
    header is ignored and the peer address (here 127.0.0.1) counts."""
    limits = {"login_address_attempts": 4, "login_address_window_seconds": 60}
    if not trusted:
        limits["trusted_proxies"] = ()
    async with api(nats_url, database_url, **limits) as http:
        await register(http, "ann@example.com")
        for i in range(4):
            r = await login(http, f"nobody{i}@example.com", "guess", "203.0.113.9")
            assert r.status_code == 401, r.text
        blocked = await login(http, "ann@example.com", PASSWORD, "203.0.113.9")
        assert blocked.status_code == 429 and 10 <= int(blocked.headers["retry-after"]) <= 15
        assert "from your address" in blocked.json()["detail"]
        elsewhere = await login(http, "ann@example.com", PASSWORD, "203.0.113.10")
        assert elsewhere.status_code == (200 if trusted else 429)


async def test_successful_logins_do_not_count(nats_url, database_url):
    limits = {"login_account_attempts": 2, "login_address_attempts": 2}
    async with api(nats_url, database_url, **limits) as http:
        await register(http, "ann@example.com")
        for _ in range(6):
            assert (await login(http, "ann@example.com", PASSWORD)).status_code == 200


async def test_concurrent_guesses_cannot_slip_past_the_limit(nats_url, database_url):
    limits = {"login_account_attempts": 3, "login_account_window_seconds": 60}
    async with api(nats_url, database_url, **limits) as http:
        await register(http, "ann@example.com")
        answers = await asyncio.gather(
            *(login(http, "ann@example.com", f"guess-{i}", f"192.0.2.{i}") for i in range(12))
        )
        codes = sorted(r.status_code for r in answers)
        assert codes == [401] * 3 + [429] * 9, codes


async def test_the_allowance_comes_back_and_a_429_is_never_replayed(nats_url, database_url):
    limits = {"login_account_attempts": 2, "login_account_window_seconds": 6}
    async with api(nats_url, database_url, **limits) as http:
        await register(http, "ann@example.com")
        for _ in range(2):
            assert (await login(http, "ann@example.com", "wrong-pw")).status_code == 401
        key = {"Idempotency-Key": "login-after-429"}
        refused = await login(http, "ann@example.com", PASSWORD, **key)
        assert refused.status_code == 429 and refused.headers["retry-after"] in ("1", "2", "3")

        async def allowed() -> httpx.Response | None:
            r = await login(http, "ann@example.com", PASSWORD, **key)
            return r if r.status_code != 429 else None

        # Retrying with the same Idempotency-Key runs the login again once allowed.
        again = await eventually(allowed, timeout=10, interval=0.2)
        assert again.status_code == 200 and "idempotent-replayed" not in again.headers


async def test_registrations_from_one_address_are_limited(nats_url, database_url):
    limits = {"register_address_attempts": 3, "register_address_window_seconds": 60}
    async with api(nats_url, database_url, **limits) as http:

        async def register_from(address: str, email: str) -> httpx.Response:
            return await http.post(
                "/auth/register",
                json={"email": email, "password": PASSWORD, "full_name": "X"},
                headers={"X-Forwarded-For": address},
            )

        assert (await register_from("198.51.100.1", "a1@example.com")).status_code == 201
        assert (await register_from("198.51.100.1", "a2@example.com")).status_code == 201
        # An email already taken counts too: registering is a way to probe emails.
        assert (await register_from("198.51.100.1", "a1@example.com")).status_code == 409
        refused = await register_from("198.51.100.1", "a3@example.com")
        assert refused.status_code == 429, refused.text
        # 60 s / 3: the first attempt's share is back 20 s after it was made.
        wait = int(refused.headers["retry-after"])
        assert 15 <= wait <= 20
        assert refused.json()["detail"] == (
            f"Too many registrations from your address; try again in {wait} s."
        )
        # Nothing was created for it, and another address is not affected.
        assert (await login(http, "a3@example.com", PASSWORD)).status_code == 401
        assert (await register_from("203.0.113.9", "a3@example.com")).status_code == 201
        # Concurrent attempts cannot slip past: 3 of 8 from a fresh address get through.
        answers = await asyncio.gather(
            *(register_from("192.0.2.50", f"c{i}@example.com") for i in range(8))
        )
        assert sorted(r.status_code for r in answers) == [201] * 3 + [429] * 5


class CountingHasher(PasswordHasher):
    """The real argon2 hasher, recording the hash each `verify` worked against (so a
    test compares the argon2 work of two logins, not their wall time)."""

    def __init__(self) -> None:
        super().__init__()
        self.verified: list[str] = []

    def verify(self, hash, password) -> bool:
        self.verified.append(hash if isinstance(hash, str) else hash.decode())
        return super().verify(hash, password)


async def test_an_unknown_email_costs_the_same_argon2_work_as_a_wrong_password(
    nats_url, database_url, monkeypatch
):
    hasher = CountingHasher()
    monkeypatch.setattr(identity, "_hasher", hasher)
    async with api(nats_url, database_url) as http:
        await register(http, "ann@example.com")
        engine = make_engine(database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                real = (
                    await conn.execute(
                        sa.select(storage.users.c.password_hash).where(
                            storage.users.c.email == "ann@example.com"
                        )
                    )
                ).scalar_one()
        finally:
            await engine.dispose()
        work = {}
        for email in ("ann@example.com", "nobody@example.com"):
            hasher.verified.clear()
            r = await login(http, email, "wrong-pw")
            assert r.status_code == 401 and r.json()["detail"] == "Wrong email or password."
            work[email] = [extract_parameters(h) for h in hasher.verified]
        # One verify each, with the same argon2 parameters (memory, time, parallelism).
        assert work["ann@example.com"] == [extract_parameters(real)]
        assert work["nobody@example.com"] == work["ann@example.com"]
        # An account made in bulk without a password is no faster to probe either.
        admin = auth_headers(identity.issue_token(identity.Keyring.of(SECRET), "a", ["admin"], 60))
        r = await http.post(
            "/admin/users/bulk",
            headers=admin,
            json={"users": [{"email": "bulk@example.com", "full_name": "B"}]},
        )
        assert r.status_code == 201, r.text
        hasher.verified.clear()
        assert (await login(http, "bulk@example.com", "any-password")).status_code == 401
        assert [extract_parameters(h) for h in hasher.verified] == work["ann@example.com"]


def auth_headers(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def test_purge_drops_throttling_rows_that_limit_nothing(database_url):
    engine = make_engine(database_url, pool_size=1)
    now = datetime.now(UTC)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                storage.login_attempts.insert(),
                [
                    {"key": "account:past", "tat": now - timedelta(seconds=1)},
                    {"key": "account:future", "tat": now + timedelta(minutes=5)},
                ],
            )
        assert await logins.purge_expired(engine) == 1
        async with engine.connect() as conn:
            keys = (await conn.execute(sa.select(storage.login_attempts.c.key))).scalars().all()
        assert keys == ["account:future"]
    finally:
        await engine.dispose()


async def me(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.get("/me", headers={"Authorization": f"Bearer {token}"})


async def ws_close_code(http: httpx.AsyncClient, token: str) -> int | None:
    """The close code the gateway answers `token` with (None: it said hello, which
    needs the notifier running)."""
    async with websockets.connect(f"{http.ws_url}?token={token}") as ws:
        try:
            frame = json.loads(await ws.recv())
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code
        assert frame["type"] == "hello"
        return None


async def test_rotating_the_secret_keeps_old_tokens_until_the_old_key_is_removed(
    nats_url, database_url
):
    notifier = NotifierSettings(Common(nats_url, database_url))
    async with running(serve_notifier, notifier), api(nats_url, database_url) as http:
        await register(http, "ann@example.com")
        old = (await login(http, "ann@example.com", PASSWORD)).json()["access_token"]
        assert jwt.get_unverified_header(old)["kid"] == identity.key_id(SECRET)

    # Rotated: NEXT signs, SECRET still verifies. Nobody is logged out.
    async with (
        running(serve_notifier, notifier),
        api(nats_url, database_url, jwt_secret=NEXT, jwt_previous_secrets=(SECRET,)) as http,
    ):
        assert (await me(http, old)).status_code == 200
        assert await ws_close_code(http, old) is None
        new = (await login(http, "ann@example.com", PASSWORD)).json()["access_token"]
        assert jwt.get_unverified_header(new)["kid"] == identity.key_id(NEXT)

    # The old key removed: its tokens are refused, over HTTP and WebSocket alike.
    async with (
        running(serve_notifier, notifier),
        api(nats_url, database_url, jwt_secret=NEXT) as http,
    ):
        refused = await me(http, old)
        assert refused.status_code == 401
        assert "key this server does not accept" in refused.json()["detail"]
        assert await ws_close_code(http, old) == 4401
        assert (await me(http, new)).status_code == 200
        # A token naming a kid nobody issued is refused the same way.
        stranger = jwt.encode(
            {"sub": "u1", "roles": ["admin"], "iat": 1, "exp": 2**40},
            NEXT,
            algorithm="HS256",
            headers={"kid": "0000000000000000"},
        )
        assert (await me(http, stranger)).status_code == 401

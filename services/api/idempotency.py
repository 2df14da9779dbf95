"""`Idempotency-Key` on every POST, as ASGI middleware (docs/contract.md, "Idempotency-Key").

The first request with a key runs and its answer (status, headers, body) is stored
under (caller, key) with a hash of method, path and body. A retry with the same key
and body gets the stored answer again (header `Idempotent-Replayed: true`) and creates
nothing; the same key with another body is 422; a retry while the first is still
running is 409. Answers of 5xx and 429 are not stored, so the client may retry them
(a 429 says when).
The caller is the token's `sub`, or "anonymous" (register, login).
Keys are kept for PARKMATE_IDEMPOTENCY_KEY_HOURS (default 24, as Stripe does): a retry
later than that runs as a new request. `purge_expired` deletes older ones.
If PostgreSQL goes away between the work and the storing of its answer, the answer
still goes out (never a 500 for work that was done); the key stays claimed, so a retry
is told 409 "in progress" until the claim is abandoned (60 s), and then runs again.
"""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from services.api import identity
from services.api.storage import idempotency_keys as table
from services.contracts.limits import IDEMPOTENCY_KEY_MAX
from services.runtime.coalesce import Coalescer
from services.runtime.db import ConnectionLost, raw_connection

log = structlog.get_logger()

MAX_KEY = IDEMPOTENCY_KEY_MAX
ABANDONED_AFTER = timedelta(seconds=60)


# Where the middleware leaves the key it checked in the ASGI scope, so a route reads
# the very key the stored answer is filed under (one rule for trimming and for a
# repeated header, the middleware's).
SCOPE_KEY = "parkmate.idempotency_key"


def key_of(scope: Mapping[str, Any]) -> str | None:
    """The Idempotency-Key the middleware accepted for this request (trimmed, 1 to
    MAX_KEY characters), or None when it has none. A route passes it on to the service,
    which recognises a retry whose first answer was lost (services/contracts/bookings.py,
    `request_key`)."""
    return scope.get(SCOPE_KEY)


# The claims and the stored answers are on the path of every POST with a key: one
# statement on a raw connection (autocommit, no SQLAlchemy per-statement work) stores
# the answers and makes the claims of every request that came while the previous one
# was on its way (runtime/coalesce.py). A POST's claim and the storing of an earlier
# POST's answer thus share a round trip and a commit: each round trip is a loopback
# `send`, the most expensive thing the api does (py-spy, benchmarks.bookings). The two
# parts touch different rows (an answer's key was claimed by an earlier statement; a
# claim of that same key, a retry, conflicts with it and takes the slow path once this
# statement has committed). Claims go in key order, so two replicas' batches never wait
# on each other's new rows in opposite orders.
_CLAIM_AND_STORE = """
    WITH stored AS (
        UPDATE identity.idempotency_keys AS i
        SET status_code = a.s, response_headers = a.h, response_body = a.b
        FROM unnest($5::text[], $6::text[], $7::int[], $8::bytea[], $9::bytea[])
            AS a(p, k, s, h, b)
        WHERE i.principal = a.p AND i.key = a.k
    )
    INSERT INTO identity.idempotency_keys (principal, key, request_hash, created_at)
    SELECT p, k, h, t FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
        AS c(p, k, h, t)
    ORDER BY p, k
    ON CONFLICT DO NOTHING RETURNING principal, key
"""
# The same for a batch of at most one claim and one answer, the usual batch when
# traffic is light, with plain parameters (NULL for a part that is absent). PostgreSQL
# plans a statement with arrays for parameters afresh on every call (it costs its
# generic plan for 10 rows, a custom plan for the real count, and keeps choosing the
# custom one): 0.18 ms of planning against 0.08 ms of execution for this one
# (pg_stat_statements, docs/benchmarks-bookings.md). With plain parameters it settles
# on one generic plan.
_CLAIM_AND_STORE_ONE = """
    WITH stored AS (
        UPDATE identity.idempotency_keys
        SET status_code = $7, response_headers = $8, response_body = $9
        WHERE principal = $5 AND key = $6
    )
    INSERT INTO identity.idempotency_keys (principal, key, request_hash, created_at)
    SELECT $1::text, $2::text, $3::text, $4::timestamptz WHERE $1::text IS NOT NULL
    ON CONFLICT DO NOTHING RETURNING principal, key
"""
# A replica's answer (row lock) and another's claim of the same key (a retry sent to
# the other replica) can wait on each other in two statements at once; PostgreSQL
# then aborts one whole statement, which is simply sent again.
_DEADLOCK_TRIES = 3
_FORGET = "DELETE FROM identity.idempotency_keys WHERE principal = $1 AND key = $2"


@dataclass(frozen=True)
class _Claim:
    principal: str
    key: str
    request_hash: str
    at: datetime


@dataclass(frozen=True)
class _Answer:
    principal: str
    key: str
    status: int
    headers: bytes  # JSON [[name, value], ...]
    body: bytes


def _statement(claims: list[_Claim], answers: list[_Answer]) -> tuple[Any, ...]:
    """The statement and its arguments that make `claims` (unique, in key order) and
    store `answers`: `_CLAIM_AND_STORE_ONE` for at most one of each, else
    `_CLAIM_AND_STORE`."""
    if len(claims) <= 1 and len(answers) <= 1:
        claim = [(c.principal, c.key, c.request_hash, c.at) for c in claims]
        answer = [(a.principal, a.key, a.status, a.headers, a.body) for a in answers]
        return (
            _CLAIM_AND_STORE_ONE,
            *(claim[0] if claim else (None,) * 4),
            *(answer[0] if answer else (None,) * 5),
        )
    return (
        _CLAIM_AND_STORE,
        [c.principal for c in claims],
        [c.key for c in claims],
        [c.request_hash for c in claims],
        [c.at for c in claims],
        [a.principal for a in answers],
        [a.key for a in answers],
        [a.status for a in answers],
        [a.headers for a in answers],
        [a.body for a in answers],
    )


def _json(send_status: int, detail: str):
    body = msgspec.json.encode({"status_code": send_status, "detail": detail})
    return body, [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]


class IdempotencyMiddleware:
    """ASGI middleware; `engine` reaches schema identity, `keys` read the caller's token."""

    def __init__(self, app, engine: AsyncEngine, keys: identity.Keyring):
        self.app = app
        self.engine = engine
        self.keys = keys
        self._batches: Coalescer[_Claim | _Answer, bool | None] = Coalescer(self.claim_and_store)

    async def claim_and_store(self, items: list[_Claim | _Answer]) -> list[bool | None]:
        """Store each _Answer under its (principal, key) and claim each _Claim's (principal,
        key) not yet stored, in one statement (`_CLAIM_AND_STORE_ONE` when there is at
        most one of each, else `_CLAIM_AND_STORE`). Returns per item, in order: None for an
        answer; for a claim, True when this request got the key (the first of a batch
        naming one twice), False when it was taken. Raises ConnectionLost when the
        database went away (nothing of the batch was written)."""
        claims = [i for i in items if isinstance(i, _Claim)]
        answers = [i for i in items if isinstance(i, _Answer)]
        first = {(c.principal, c.key): c for c in reversed(claims)}
        unique = sorted(first.values(), key=lambda c: (c.principal, c.key))
        for attempt in range(1, _DEADLOCK_TRIES + 1):
            try:
                async with raw_connection(self.engine) as raw:
                    rows = await raw.fetch(*_statement(unique, answers))
                break
            except asyncpg.exceptions.DeadlockDetectedError:
                if attempt == _DEADLOCK_TRIES:
                    raise
        got = {(r[0], r[1]) for r in rows}
        return [
            None
            if isinstance(i, _Answer)
            else (i.principal, i.key) in got and first[(i.principal, i.key)] is i
            for i in items
        ]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        key = headers.get(b"idempotency-key")
        if key is None:
            return await self.app(scope, receive, send)
        key = key.decode("latin-1").strip()
        if not key or len(key) > MAX_KEY:
            return await self._reply(
                send,
                400,
                f"Idempotency-Key must be 1 to {MAX_KEY} "
                "characters; use a fresh UUID per operation.",
            )
        scope[SCOPE_KEY] = key
        body = await _read_body(receive)
        principal = self._principal(headers.get(b"authorization"))
        digest = hashlib.sha256(
            b"\0".join(
                [
                    scope["method"].encode(),
                    scope["path"].encode(),
                    scope.get("query_string", b""),
                    body,
                ]
            )
        ).hexdigest()
        now = datetime.now(UTC)
        if not await self._batches.submit(_Claim(principal, key, digest, now)):
            async with self.engine.begin() as conn:
                row = (
                    await conn.execute(
                        sa.select(table)
                        .where(table.c.principal == principal, table.c.key == key)
                        .with_for_update()
                    )
                ).first()
                if row is None:  # the first try just failed with a 5xx and let it go
                    return await self._reply(
                        send, 409, "A request with this Idempotency-Key just failed; retry it."
                    )
                if row.request_hash != digest:
                    return await self._reply(
                        send,
                        422,
                        "This Idempotency-Key was used with another request; "
                        "use a new key for a new operation.",
                    )
                if row.status_code is not None:
                    return await self._replay(send, row)
                if now - row.created_at < ABANDONED_AFTER:
                    return await self._reply(
                        send,
                        409,
                        "A request with this Idempotency-Key "
                        "is still in progress; retry in a moment.",
                    )
                await conn.execute(
                    table.update()
                    .where(table.c.principal == principal, table.c.key == key)
                    .values(created_at=now)
                )
        await self._run(scope, body, send, principal, key)

    def _principal(self, authorization: bytes | None) -> str:
        if authorization and authorization.lower().startswith(b"bearer "):
            token = authorization[7:].decode()
            try:
                claims = identity.verify_token(self.keys, token)
            except identity.BadToken:
                return "anonymous"
            return claims.user_id
        return "anonymous"

    async def _run(self, scope, body: bytes, send, principal: str, key: str) -> None:
        sent_body = False

        async def receive():
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        status = 500
        out_headers: list = []
        chunks: list[bytes] = []
        start: dict | None = None
        stored = False

        async def store() -> None:
            if status >= 500 or status == 429:
                async with raw_connection(self.engine) as raw:
                    await raw.execute(_FORGET, principal, key)
                return
            headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in out_headers]
            await self._batches.submit(
                _Answer(principal, key, status, msgspec.json.encode(headers), b"".join(chunks))
            )

        async def capture(message):
            # The answer is stored before its last byte leaves: a client that retries
            # the moment it has the answer must get it replayed, not a 409 "in progress".
            nonlocal status, out_headers, start, stored
            if message["type"] == "http.response.start":
                status = message["status"]
                out_headers = [(k, v) for k, v in message.get("headers", [])]
                start = message
                return
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    stored = True
                    try:
                        await store()
                    except ConnectionLost:
                        # PostgreSQL went away after the work was done: the client still
                        # gets its true answer, not a 500. A retry with this key meets
                        # the claim and is told to wait (409) until it is abandoned.
                        log.warning("idempotency answer not stored: database away", key=key)
                if start is not None:
                    await send(start)
                    start = None
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            if not stored:
                await store()

    async def _replay(self, send, row) -> None:
        headers = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in msgspec.json.decode(row.response_headers)
        ]
        headers.append((b"idempotent-replayed", b"true"))
        await send({"type": "http.response.start", "status": row.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": row.response_body})

    async def _reply(self, send, status: int, detail: str) -> None:
        body, headers = _json(status, detail)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def purge_expired(engine: AsyncEngine, older_than: timedelta, batch: int = 5000) -> int:
    """Delete idempotency keys created more than `older_than` ago, `batch` rows per
    statement (short locks); return how many. Safe with several api replicas at once:
    a row deleted by another replica is simply not counted."""
    cutoff = datetime.now(UTC) - older_than
    total = 0
    while True:
        async with engine.begin() as conn:
            deleted = (
                await conn.execute(
                    sa.text(
                        "DELETE FROM identity.idempotency_keys WHERE (principal, key) IN "
                        "(SELECT principal, key FROM identity.idempotency_keys "
                        "WHERE created_at < :cutoff LIMIT :batch FOR UPDATE SKIP LOCKED)"
                    ),
                    {"cutoff": cutoff, "batch": batch},
                )
            ).rowcount
        total += deleted
        if deleted < batch:
            return total

"""Dead letters for operators: list them and replay them (`parkmate dead-letters`).

Two kinds (docs/failure-modes.md, "Poison messages and dead letters"):
- a dead outbox row, id `<schema>:<row id>` (`bookings:42`, `identity:7`): an event its
  relay gave up publishing. Replaying it clears its tries and `dead_at`, so the relay
  of that service publishes it at its next poll, with its own event id as Nats-Msg-Id.
- a message on stream DEAD, id `DEAD:<sequence>`: one a consumer gave up handling.
  Replaying it publishes its payload again to its original subject and stream, then
  deletes it from DEAD. Every consumer of that subject gets it again, not only the one
  that failed: they are idempotent by event id, so the others do nothing new.
"""

from datetime import datetime

import msgspec
import sqlalchemy as sa
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.api import storage as identity_storage
from services.bookings import storage as bookings_storage
from services.contracts import subjects
from services.runtime import consumer
from services.runtime.natsconn import publish_each

# schema -> (the service whose relay publishes it, its outbox table)
OUTBOXES = {
    "bookings": ("bookings", bookings_storage.outbox),
    "identity": ("api", identity_storage.outbox),
}


class DeadLetter(msgspec.Struct):
    """One dead letter: `id` to replay it by, the `service` that gave it up, its
    `subject`, the last `error`, how many `tries` it had, when it died (UTC), its
    payload's size in bytes and where it is kept (`origin`)."""

    id: str
    service: str
    subject: str
    error: str
    tries: int
    dead_at: datetime | None
    size: int
    origin: str


class NoSuchDeadLetter(LookupError):
    """The id names no dead letter (wrong form, replayed already, or never dead)."""


async def list_dead(
    engine: AsyncEngine, js: JetStreamContext, service: str | None = None
) -> list[DeadLetter]:
    """Every dead outbox row, then every message on DEAD, oldest first; only those of
    `service` (api, bookings, timers, notifier) when given."""
    found: list[DeadLetter] = []
    async with engine.connect() as conn:
        for schema, (owner, t) in OUTBOXES.items():
            if service not in (None, owner):
                continue
            rows = await conn.execute(
                sa.select(
                    t.c.id,
                    t.c.subject,
                    t.c.last_error,
                    t.c.attempts,
                    t.c.dead_at,
                    sa.func.length(t.c.payload).label("size"),
                    t.c.event_id,
                )
                .where(t.c.dead_at.is_not(None))
                .order_by(t.c.id)
            )
            for r in rows:
                found.append(
                    DeadLetter(
                        id=f"{schema}:{r.id}",
                        service=owner,
                        subject=r.subject,
                        error=r.last_error or "",
                        tries=r.attempts,
                        dead_at=r.dead_at,
                        size=r.size,
                        origin=f"outbox {schema}, event {r.event_id}",
                    )
                )
    for seq, msg in await _dead_messages(js):
        h = msg.headers or {}
        if service not in (None, h.get(consumer.DEAD_SERVICE)):
            continue
        found.append(
            DeadLetter(
                id=f"{subjects.DEAD_STREAM}:{seq}",
                service=h.get(consumer.DEAD_SERVICE, ""),
                subject=h.get(consumer.DEAD_SUBJECT, ""),
                error=h.get(consumer.DEAD_ERROR, ""),
                tries=int(h.get(consumer.DEAD_DELIVERIES, "0")),
                dead_at=msg.time,
                size=len(msg.data or b""),
                origin=(
                    f"{h.get(consumer.DEAD_STREAM)} seq {h.get(consumer.DEAD_SEQUENCE)}, "
                    f"consumer {h.get(consumer.DEAD_CONSUMER)}"
                ),
            )
        )
    return found


async def _dead_messages(js: JetStreamContext) -> list[tuple[int, RawStreamMsg]]:
    out = []
    seq = 1
    while True:
        try:
            msg = await js.get_msg(subjects.DEAD_STREAM, seq=seq, next=True, subject="dead.>")
        except NotFoundError:  # past the last one, or no DEAD stream yet
            return out
        out.append((msg.seq, msg))
        seq = msg.seq + 1


async def replay(engine: AsyncEngine, js: JetStreamContext, dead_id: str) -> str:
    """Replay the dead letter `dead_id` (see the module docstring); return what was
    done, one line. Raises NoSuchDeadLetter for an unknown id, RuntimeError when NATS
    refuses the republish (the dead letter is then kept)."""
    where, _, number = dead_id.partition(":")
    if not number.isdigit():
        raise NoSuchDeadLetter(f"{dead_id!r}: ids look like bookings:42 or DEAD:7")
    if where == subjects.DEAD_STREAM:
        return await _replay_message(js, int(number))
    if where not in OUTBOXES:
        raise NoSuchDeadLetter(f"{dead_id!r}: no outbox {where!r} (bookings, identity, DEAD)")
    owner, t = OUTBOXES[where]
    async with engine.begin() as conn:
        revived = await conn.execute(
            t.update()
            .where(t.c.id == int(number), t.c.dead_at.is_not(None))
            .values(attempts=0, dead_at=None, next_attempt_at=None, last_error=None)
        )
    if revived.rowcount != 1:
        raise NoSuchDeadLetter(f"{dead_id}: no dead row (replayed already?)")
    return f"{dead_id}: back in the outbox; the {owner} service's relay publishes it"


async def _replay_message(js: JetStreamContext, seq: int) -> str:
    try:
        msg = await js.get_msg(subjects.DEAD_STREAM, seq=seq)
    except NotFoundError:
        raise NoSuchDeadLetter(f"DEAD:{seq}: no such message (replayed already?)") from None
    h = msg.headers or {}
    subject, stream = h.get(consumer.DEAD_SUBJECT), h.get(consumer.DEAD_STREAM)
    if not subject or not stream:
        raise NoSuchDeadLetter(f"DEAD:{seq}: not a dead letter (no origin headers)")
    original = h.get(consumer.DEAD_MSG_ID) or f"{stream}:{h.get(consumer.DEAD_SEQUENCE)}"
    headers = {k: v for k, v in h.items() if not k.startswith(("Nats-", "Parkmate-Dead-"))}
    headers |= {
        "Nats-Expected-Stream": stream,
        # A new id, or the stream would drop it as a duplicate of the original within
        # its window; one per dead letter, so a repeated replay is dropped instead.
        "Nats-Msg-Id": f"{original}:replay:{seq}",
    }
    (refused,) = await publish_each(js, [(subject, msg.data or b"", headers)])
    if refused is not None:
        raise RuntimeError(f"DEAD:{seq}: {stream} refused {subject}: {refused!r}")
    await js.delete_msg(subjects.DEAD_STREAM, seq)
    return f"DEAD:{seq}: published again to {subject} on {stream}"


async def replay_all(
    engine: AsyncEngine, js: JetStreamContext, service: str | None = None
) -> list[str]:
    """`replay` every dead letter (of `service` when given); one line per replay."""
    return [await replay(engine, js, d.id) for d in await list_dead(engine, js, service)]

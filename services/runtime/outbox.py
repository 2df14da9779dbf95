"""The transactional outbox: events written with the state change, published after commit.

A service writes each event in the same transaction (or the same statement) as its
state change (`add_event`, `add_pending`). `OutboxRelay` then publishes it to JetStream
with `Nats-Msg-Id` = event id, so a re-publish after a crash is dropped by the stream's
duplicate window. Two ways lead there, both run by the relay's one task, so events
leave a process in the order they were handed over:

- The fast way, for the hot paths: after its commit the handler hands the rows it
  wrote to `committed()`. The relay publishes them at once and later deletes their
  rows, one DELETE for all rows published in up to `delete_after_seconds` (or `batch`
  rows): no read of the outbox, no transaction, and under load one round trip and one
  commit for many publish batches instead of one each. The deletes are due before the
  table path claims anything, so it never takes a row already published, and on stop.
  (Before: BEGIN, SELECT FOR UPDATE, UPDATE, COMMIT per batch, and at a few events a
  second, a batch was one event.)
- The safety net: `wake()` after a commit by a path that does not hand its rows over,
  and a poll every `poll_seconds`, claim unpublished rows (FOR UPDATE SKIP LOCKED, so
  replicas share the work), publish them in id order and mark them published; a poll
  takes only rows older than `grace_seconds`, the ones a process crashed before it
  published, or could not publish. A claim that took a full batch is followed by the
  next one at once, until the backlog is gone. Published rows are deleted after
  `keep_seconds`.

Each poll also counts the table's unpublished rows (the partial index on them keeps it
cheap) into parkmate_outbox_pending{schema}: a backlog that grows means NATS refuses
the events or the relay cannot keep up.
A row the server refuses (or one too big to ever publish) must not hold up the rows
behind it (docs/failure-modes.md, "Poison messages and dead letters"): it is charged a
try, `attempts`, and set aside until `next_attempt_at` (exponential backoff), while the
rows behind it go on; after `max_attempts` tries, or at once when it is over the
server's max_payload, it is dead (`dead_at`): logged once, counted in
`parkmate_dead_letters_total`, never claimed again until `parkmate dead-letters replay`.
A timeout or a lost connection charges no row: NATS being away is not a message's
fault, and the relay retries everything as before.
"""

import asyncio
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import msgspec
import sqlalchemy as sa
import structlog
from nats.js import JetStreamContext
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.contracts.envelope import CloudEvent
from services.runtime.db import raw_connection
from services.runtime.metrics import DEAD_LETTERS, OUTBOX_PENDING, OUTBOX_PUBLISHED
from services.runtime.natsconn import message_size, publish_each
from services.runtime.startup import describe

log = structlog.get_logger()
_encoder = msgspec.json.Encoder()


def outbox_table(metadata: sa.MetaData) -> sa.Table:
    """The `outbox` table in `metadata`'s schema."""
    return sa.Table(
        "outbox",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", UUID(as_uuid=False), nullable=False, unique=True),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dead_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Index(
            f"ix_{metadata.schema}_outbox_pending",
            "id",
            postgresql_where=sa.text("published_at IS NULL"),
        ),
    )


async def add_event(conn: AsyncConnection, table: sa.Table, event: CloudEvent) -> None:
    """Write `event` to the outbox in the caller's transaction (published after commit)."""
    await conn.execute(
        table.insert().values(
            event_id=event.id,
            subject=event.type,
            payload=_encoder.encode(event),
            created_at=event.time,
        )
    )


class Pending(NamedTuple):
    """An outbox row as written and as handed to `OutboxRelay.committed`: the event id
    (its Nats-Msg-Id), the subject (the event type), the encoded CloudEvent, and when
    it was created (a UTC datetime)."""

    event_id: str
    subject: str
    payload: bytes
    created_at: datetime


def pending(event: CloudEvent) -> Pending:
    """The outbox row of `event` (encoded once, for the insert and the publish)."""
    return Pending(event.id, event.type, _encoder.encode(event), event.time)


async def add_pending(conn: AsyncConnection, table: sa.Table, rows: list[Pending]) -> None:
    """Write `rows` to the outbox in the caller's transaction, in order, in one round trip."""
    if rows:
        await conn.execute(table.insert(), [r._asdict() for r in rows])


def _headers(event_id: str) -> dict[str, str]:
    return {"Nats-Msg-Id": event_id}


class OutboxRelay:
    """Publishes an outbox table's committed events to JetStream (see module docstring).

    `max_queued` bounds the rows held in memory for the fast way; beyond it (NATS down
    for long) they are dropped from memory and the poll publishes them from the table.
    A refused row is tried `max_attempts` times in all, waiting
    min(backoff_seconds * 2**(n-1), max_backoff_seconds) seconds after its n-th try,
    then is dead; `service` labels the dead-letter metric (default: the table's schema).
    Rows published the fast way are deleted at most `delete_after_seconds` after the
    first of them was published (well inside `grace_seconds`, so the poll does not take
    them first), all in one statement.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        js: JetStreamContext,
        table: sa.Table,
        poll_seconds: float = 1.0,
        batch: int = 200,
        keep_seconds: float = 3600.0,
        grace_seconds: float = 5.0,
        max_queued: int = 20_000,
        max_attempts: int = 10,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 60.0,
        service: str | None = None,
        delete_after_seconds: float = 0.2,
    ):
        self._engine = engine
        self._js = js
        self._table = table
        self._poll = poll_seconds
        self._batch = batch
        self._keep = timedelta(seconds=keep_seconds)
        self._grace = timedelta(seconds=grace_seconds)
        self._max_queued = max_queued
        self._max_attempts = max_attempts
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._service = service or str(table.schema)
        # The limit the server announced on the connection `js` publishes on (it may
        # change with a reconnect, so it is read at each publish).
        self._max_payload = lambda: js._nc.max_payload
        self._queue: deque[Pending] = deque()
        # Published the fast way, rows not yet deleted, and when the first of them was
        # (loop time); see delete_published.
        self._published: list[str] = []
        self._published_at = 0.0
        self._delete_after = delete_after_seconds
        self._woken = False
        self._wake = asyncio.Event()
        self._stopping = False
        self._last_cleanup = datetime.now(UTC)
        name = f'"{table.schema}"."{table.name}"'
        self._delete = f"DELETE FROM {name} WHERE event_id = ANY($1::uuid[])"
        # One failed try of one row: the next one after the backoff, or dead
        # when it was the last try or can never succeed. Returns the row it changed.
        self._charge = sa.text(
            f"UPDATE {name} SET attempts = attempts + 1, last_error = :error,"
            " next_attempt_at = now() + make_interval(secs => LEAST("
            " :base * power(2, attempts), :cap)),"
            " dead_at = CASE WHEN :never OR attempts + 1 >= :max THEN now() END"
            " WHERE event_id = CAST(:event_id AS uuid) AND dead_at IS NULL"
            " RETURNING attempts, dead_at IS NOT NULL AS dead"
        )

    def wake(self) -> None:
        """A commit wrote rows it does not hand over: claim them from the table now."""
        self._woken = True
        self._wake.set()

    def committed(self, rows: list[Pending]) -> None:
        """Rows this process just committed: publish them at once, in this order."""
        if len(self._queue) + len(rows) > self._max_queued:
            log.warning(
                "outbox queue full; the poll publishes from the table",
                table=str(self._table),
                dropped=len(self._queue),
            )
            self._queue.clear()
            return
        self._queue.extend(rows)
        self._wake.set()

    async def run(self) -> None:
        """Publish until `stop()`, then what is still queued; errors are logged and
        retried after a pause."""
        last_poll = 0.0
        loop = asyncio.get_running_loop()
        # A table path call that took a full batch leaves the rest for the next turn at
        # once, with the same grace: a backlog (an admin's bulk of accounts, a long NATS
        # outage) drains as fast as NATS takes it, not one batch per poll.
        backlog, backlog_grace = False, self._grace
        while not self._stopping or self._queue:
            self._wake.clear()
            woken, self._woken = self._woken, False
            try:
                sent = await self.publish_queued()
                polling = loop.time() - last_poll >= self._poll
                claiming = woken or polling or backlog
                await self.delete_published(now=claiming)
                if claiming:
                    if polling:
                        last_poll = loop.time()
                    grace = None if woken else backlog_grace if backlog else self._grace
                    taken = await self.publish_pending(grace)
                    backlog, backlog_grace = taken >= self._batch, grace
                    sent += taken
                    if polling:
                        await self.count_pending()
                await self._cleanup()
            except Exception:
                log.exception("outbox relay failed; retrying", table=str(self._table))
                self._woken = self._woken or woken
                if self._stopping:
                    return  # the rows stay in the table for the next start or a replica
                await asyncio.sleep(1.0)
                continue
            if sent or self._queue or self._woken or self._stopping:
                continue
            idle = self._poll
            if self._published:
                idle = max(0.0, min(idle, self._published_at + self._delete_after - loop.time()))
            try:
                await asyncio.wait_for(self._wake.wait(), idle)
            except TimeoutError:
                pass
        try:
            await self.delete_published(now=True)
        except Exception:
            # Left in the table: the next start's poll publishes them again after the
            # grace, and the stream's duplicate window drops the copies.
            log.exception("outbox rows published but not deleted", table=str(self._table))

    async def delete_published(self, now: bool = False) -> None:
        """Delete the rows published the fast way, in one statement, when `now`, when
        there are `batch` of them or when the first was published `delete_after_seconds`
        ago. On an error they are kept for the next try and the error raised."""
        if not self._published:
            return
        due = self._published_at + self._delete_after <= asyncio.get_running_loop().time()
        if not (now or due or len(self._published) >= self._batch):
            return
        ids, self._published = self._published, []
        try:
            async with raw_connection(self._engine) as raw:
                await raw.execute(self._delete, ids)
        except BaseException:
            self._published = ids + self._published
            raise

    async def publish_queued(self) -> int:
        """Publish the handed-over rows in order and note them for deletion
        (`delete_published`); a batch that meets a timeout or a lost connection goes
        back to the front of the queue (its rows are still in the table too). Refused or
        too-big rows are charged a try in the table, where the table path takes them
        when due."""
        sent = 0
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(self._batch, len(self._queue)))]
            try:
                failed = await self._publish([(r.event_id, r.subject, r.payload) for r in batch])
            except BaseException:
                self._queue.extendleft(reversed(batch))
                raise
            done = [r.event_id for r in batch if r.event_id not in failed]
            if done:
                if not self._published:
                    self._published_at = asyncio.get_running_loop().time()
                self._published.extend(done)
                OUTBOX_PUBLISHED.labels(self._table.schema).inc(len(done))
            if failed:
                async with self._engine.begin() as conn:
                    await self._charge_rows(conn, failed)
            sent += len(batch)
        return sent

    async def _publish(self, rows: list[tuple[str, str, bytes]]) -> dict[str, tuple]:
        """Publish (event_id, subject, payload) rows in order; return the ones that
        failed: event_id -> (subject, error text, True when it can never succeed).
        Raises on a timeout or a lost connection (see publish_each)."""
        limit = self._max_payload()
        failed: dict[str, tuple] = {}
        sendable = []
        for event_id, subject, payload in rows:
            size = message_size(payload, _headers(event_id))
            if size > limit:
                failed[event_id] = (subject, f"{size} bytes, over max_payload {limit}", True)
            else:
                sendable.append((subject, payload, _headers(event_id)))
        outcomes = await publish_each(self._js, sendable)
        for (subject, _, headers), error in zip(sendable, outcomes, strict=True):
            if error is not None:
                failed[headers["Nats-Msg-Id"]] = (subject, describe(error)[:500], False)
        return failed

    async def _charge_rows(self, conn: AsyncConnection, failed: dict[str, tuple]) -> None:
        """One failed try for each row of `failed` (see `_publish`); log and count the
        rows that die now, once: a dead row is never charged again."""
        for event_id, (subject, error, never) in failed.items():
            params = {
                "event_id": event_id,
                "error": error,
                "base": self._backoff,
                "cap": self._max_backoff,
                "never": never,
                "max": self._max_attempts,
            }
            row = (await conn.execute(self._charge, params)).first()
            if row is None:
                continue
            fields = {
                "service": self._service,
                "table": str(self._table),
                "event_id": event_id,
                "subject": subject,
                "attempts": row.attempts,
                "error": error,
            }
            if row.dead:
                log.error("dead letter: outbox row given up", **fields)
                DEAD_LETTERS.labels(self._service, subject).inc()
            else:
                log.warning("outbox row refused; tried again later", **fields)

    async def publish_pending(self, grace: timedelta | None = None) -> int:
        """Publish one batch of due, live rows from the table, in id order (only those
        older than `grace` or already tried, when `grace` is given); return how many
        were published or charged a try."""
        t = self._table
        now = datetime.now(UTC)
        query = (
            sa.select(t.c.id, t.c.event_id, t.c.subject, t.c.payload)
            .where(
                t.c.published_at.is_(None),
                t.c.dead_at.is_(None),
                sa.or_(t.c.next_attempt_at.is_(None), t.c.next_attempt_at <= now),
            )
            .order_by(t.c.id)
            .limit(self._batch)
            .with_for_update(skip_locked=True)
        )
        if grace is not None:
            # A row already tried was handed back by the fast path: no race to wait out.
            query = query.where(sa.or_(t.c.created_at < now - grace, t.c.attempts > 0))
        async with self._engine.begin() as conn:
            rows = (await conn.execute(query)).all()
            if not rows:
                return 0
            failed = await self._publish([(str(r.event_id), r.subject, r.payload) for r in rows])
            done = [r.id for r in rows if str(r.event_id) not in failed]
            if done:
                await conn.execute(
                    t.update().where(t.c.id.in_(done)).values(published_at=datetime.now(UTC))
                )
            await self._charge_rows(conn, failed)
        OUTBOX_PUBLISHED.labels(self._table.schema).inc(len(done))
        return len(rows)

    async def count_pending(self) -> int:
        """The table's unpublished rows now (handed-over rows not yet deleted count too);
        also sets parkmate_outbox_pending{schema} to it."""
        t = self._table
        query = sa.select(sa.func.count()).select_from(t).where(t.c.published_at.is_(None))
        async with self._engine.connect() as conn:
            count = (await conn.execute(query)).scalar_one()
        OUTBOX_PENDING.labels(t.schema).set(count)
        return count

    async def _cleanup(self) -> None:
        now = datetime.now(UTC)
        if now - self._last_cleanup < timedelta(minutes=1):
            return
        self._last_cleanup = now
        t = self._table
        async with self._engine.begin() as conn:
            await conn.execute(t.delete().where(t.c.published_at < now - self._keep))

    def stop(self) -> None:
        """Finish: `run` publishes what is queued, then returns."""
        self._stopping = True
        self._wake.set()

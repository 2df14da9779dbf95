"""The transactional outbox: events written with the state change, published after commit.

A service writes each event in the same transaction as its state change
(`add_event`). `OutboxRelay` claims unpublished rows (FOR UPDATE SKIP LOCKED, so
replicas share the work), publishes each to JetStream with `Nats-Msg-Id` = event id
(a re-publish after a crash is dropped by the stream's duplicate window) and marks them
published, in commit order. It wakes on `wake()` after a local commit and polls every
`poll_seconds` for commits made elsewhere. Published rows are deleted after
`keep_seconds`.
"""

import asyncio
from datetime import UTC, datetime, timedelta

import msgspec
import sqlalchemy as sa
import structlog
from nats.js import JetStreamContext
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.contracts.envelope import CloudEvent
from services.runtime.metrics import OUTBOX_PUBLISHED
from services.runtime.natsconn import publish_in_order

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


async def add_events(conn: AsyncConnection, table: sa.Table, events: list[CloudEvent]) -> None:
    """`add_event` for many events in one round trip (an executemany), in this order."""
    if not events:
        return
    await conn.execute(
        table.insert(),
        [
            {
                "event_id": e.id,
                "subject": e.type,
                "payload": _encoder.encode(e),
                "created_at": e.time,
            }
            for e in events
        ],
    )


class OutboxRelay:
    """Publishes an outbox table's committed events to JetStream (see module docstring)."""

    def __init__(
        self,
        engine: AsyncEngine,
        js: JetStreamContext,
        table: sa.Table,
        poll_seconds: float = 1.0,
        batch: int = 200,
        keep_seconds: float = 3600.0,
    ):
        self._engine = engine
        self._js = js
        self._table = table
        self._poll = poll_seconds
        self._batch = batch
        self._keep = timedelta(seconds=keep_seconds)
        self._wake = asyncio.Event()
        self._stopping = False
        self._last_cleanup = datetime.now(UTC)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Publish until `stop()`; errors are logged and retried after a pause."""
        while not self._stopping:
            try:
                sent = await self.publish_pending()
                await self._cleanup()
            except Exception:
                log.exception("outbox relay failed; retrying", table=str(self._table))
                await asyncio.sleep(1.0)
                continue
            if sent == self._batch:
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self._poll)
            except TimeoutError:
                pass

    async def publish_pending(self) -> int:
        """Publish one batch of pending events; return how many were published."""
        t = self._table
        async with self._engine.begin() as conn:
            rows = (
                await conn.execute(
                    sa.select(t.c.id, t.c.event_id, t.c.subject, t.c.payload)
                    .where(t.c.published_at.is_(None))
                    .order_by(t.c.id)
                    .limit(self._batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            await publish_in_order(
                self._js,
                [(r.subject, r.payload, {"Nats-Msg-Id": str(r.event_id)}) for r in rows],
            )
            await conn.execute(
                t.update()
                .where(t.c.id.in_([r.id for r in rows]))
                .values(published_at=datetime.now(UTC))
            )
        OUTBOX_PUBLISHED.labels(self._table.schema).inc(len(rows))
        return len(rows)

    async def _cleanup(self) -> None:
        now = datetime.now(UTC)
        if now - self._last_cleanup < timedelta(minutes=1):
            return
        self._last_cleanup = now
        t = self._table
        async with self._engine.begin() as conn:
            await conn.execute(t.delete().where(t.c.published_at < now - self._keep))

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

"""The unread counter in inbox_state against real PostgreSQL: after every kind of change
(new event notifications, announcements that expire, read, read-all, delete, the
expiry purge) the count it gives equals a count(*) of the unread, unexpired rows."""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from services.contracts.ids import uuid7
from services.notifier import storage
from services.runtime.db import make_engine

T0 = datetime(2026, 11, 29, 12, tzinfo=UTC)


def note(user_id: str) -> storage.NewNotification:
    return storage.NewNotification(
        id=str(uuid7()),
        user_id=user_id,
        event_id=str(uuid7()),
        type="booking.created",
        level="info",
        priority="normal",
        title="t",
        body="b",
        data={},
        created_at=T0,
    )


async def truth(conn, user_ids: list[str], now: datetime) -> dict[str, int]:
    rows = await conn.execute(
        sa.text(
            "SELECT user_id::text, count(*) FROM notifier.notifications WHERE read_at IS NULL "
            "AND (expires_at IS NULL OR expires_at > :now) AND user_id = ANY(CAST(:ids AS uuid[])) "
            "GROUP BY user_id"
        ),
        {"now": now, "ids": user_ids},
    )
    found = {r[0]: int(r[1]) for r in rows}
    return {u: found.get(u, 0) for u in user_ids}


async def announce(conn, user_ids: list[str], silent: list[str], expires: datetime | None):
    """An announcement to `user_ids` at T0 (`storage.bulk_store`), expiring at `expires`."""
    await storage.bulk_store(
        conn,
        user_ids=user_ids,
        silent=silent,
        event_id=str(uuid7()),
        type="announcement",
        level="info",
        priority="normal",
        title="t",
        body="b",
        data="{}",
        now=T0,
        expires_at=expires,
    )


async def counted(conn, user_ids: list[str], now: datetime) -> dict[str, int]:
    counts = await storage.unread_counts(conn, user_ids, now)
    summaries = await storage.summaries(conn, user_ids, now)
    assert [s[0] for s in summaries] == [counts.get(u, 0) for u in user_ids]
    return {u: counts.get(u, 0) for u in user_ids}


async def test_the_counter_matches_a_count_after_every_kind_of_change(database_url):
    engine = make_engine(database_url, pool_size=2)
    ann, bob = sorted(str(uuid7()) for _ in range(2))
    users = [ann, bob]
    try:
        async with engine.begin() as conn:
            stored = await storage.store_many(
                (await conn.get_raw_connection()).driver_connection,
                [note(ann), note(ann), note(bob)],
                T0,
            )
            assert [s.unread_count for s in stored] == [1, 2, 1]
            for expires in (T0 + timedelta(minutes=5), None):
                await announce(conn, users, [bob], expires)
            assert await counted(conn, users, T0) == await truth(conn, users, T0)
            assert (await counted(conn, users, T0))[ann] == 4

        later = T0 + timedelta(minutes=10)  # the first announcement has expired, unpurged
        async with engine.begin() as conn:
            assert await counted(conn, users, later) == await truth(conn, users, later)
            assert (await counted(conn, users, later))[ann] == 3
            first = stored[0].notification.id
            assert await storage.mark_read(conn, ann, first, later) is not None
            assert await storage.mark_read(conn, ann, first, later) is None  # already read
            await storage.delete(conn, ann, stored[1].notification.id)  # unread
            await storage.delete(conn, ann, first)  # read: no change
            assert await counted(conn, users, later) == await truth(conn, users, later)
            assert (await counted(conn, users, later))[ann] == 1
            await storage.mark_all_read(conn, bob, later)
            assert await counted(conn, users, later) == {ann: 1, bob: 0}

        async with engine.begin() as conn:
            purged = await storage.purge_expired(conn, later, 100)
            assert len(purged) == 2  # ann's unread one and bob's read one
            assert await counted(conn, users, later) == await truth(conn, users, later)
            assert await counted(conn, users, later) == {ann: 1, bob: 0}
            raw = await conn.execute(
                sa.text("SELECT unread FROM notifier.inbox_state ORDER BY user_id")
            )
            assert [r[0] for r in raw] == [1, 0]  # the counter itself, expired rows gone
    finally:
        await engine.dispose()


async def test_a_new_notification_counts_without_unread_ones_that_expired(database_url):
    """The unread count a new notification carries leaves out unread ones that expired
    and are not purged yet, for one new notification and for several; seqs continue
    without a gap."""
    engine = make_engine(database_url, pool_size=1)
    ann, bob = sorted(str(uuid7()) for _ in range(2))
    try:
        async with engine.begin() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            await storage.store_many(raw, [note(ann), note(bob)], T0)
            await announce(conn, [ann, bob], [], T0 + timedelta(minutes=5))
        later = T0 + timedelta(minutes=10)
        async with engine.begin() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            one = await storage.store_many(raw, [note(ann)], later)
            assert [(s.notification.seq, s.version, s.unread_count) for s in one] == [(3, 3, 2)]
            two = await storage.store_many(raw, [note(ann), note(bob)], later)
            assert [(s.notification.seq, s.unread_count) for s in two] == [(4, 3), (3, 2)]
            assert await counted(conn, [ann, bob], later) == await truth(conn, [ann, bob], later)
            assert await storage.summary(conn, ann, later) == (3, 4, 4)
    finally:
        await engine.dispose()

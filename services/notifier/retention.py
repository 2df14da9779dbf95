"""The retention purge: old read notifications and expired ones leave the inbox."""

from datetime import timedelta

from services.contracts import notifier as c
from services.notifier import storage
from services.notifier.handlers import Deps, publish


async def purge(deps: Deps, retention_days: float, batch: int = 5000) -> tuple[int, int]:
    """Delete read notifications created more than `retention_days` ago and expired
    ones, in batches; tell the sockets of users who lose an expired one. Only one
    replica purges at a time (a PostgreSQL advisory lock; the others skip the round).
    Returns (old read ones deleted, expired ones deleted)."""
    now = deps.clock()
    cutoff = now - timedelta(days=retention_days)
    old = expired = 0
    while True:
        async with deps.engine.begin() as conn:
            if not await storage.try_purge_lock(conn):
                return old, expired
            deleted = await storage.purge_old_read(conn, cutoff, batch)
        old += deleted
        if deleted < batch:
            break
    while True:
        async with deps.engine.begin() as conn:
            if not await storage.try_purge_lock(conn):
                break
            rows = await storage.purge_expired(conn, now, batch)
            users = sorted({r.user_id for r in rows})
            counts = await storage.unread_counts(conn, users, now)
            versions = await storage.versions(conn, users)
        expired += len(rows)
        for r in rows:
            await publish(deps, r.user_id, c.LiveUpdate(id=r.id, deleted=True))
        for u in users:
            await publish(
                deps, u, c.LiveUnreadCount(count=counts.get(u, 0), version=versions.get(u, 0))
            )
        if len(rows) < batch:
            break
    return old, expired

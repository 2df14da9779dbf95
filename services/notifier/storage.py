"""Tables of schema `notifier` and their queries.

Lock order, to keep concurrent writers free of deadlocks: a transaction that changes a
user's notifications first locks that user's `inbox_state` row (allocating a seq or
bumping `version`), several users in ascending user id order, and only then touches
`notifications`. Every such change bumps `inbox_state.version`, and unread counts are
read inside the same transaction after the lock, so a (count, version) pair is exact.
"""

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.contracts.notifier import Notification, Preferences, QuietHours

SCHEMA = "notifier"
_json = msgspec.json.Encoder()
metadata = sa.MetaData(schema=SCHEMA)

# One row per user: the last seq handed out. Incrementing it in the same transaction
# as the insert gives gapless, per-user seqs under any number of replicas (the row
# lock serialises writers of one user; a rollback gives the number back). `version`
# grows with every change of the user's inbox. `unread` counts the user's unread rows,
# kept by every statement that inserts, reads or deletes one, so an unread count costs
# O(1) instead of a count(*) that grows with the user's history: the count shown is
# `unread` minus the unread rows already expired but not yet purged (few, and indexed
# by ix_notifications_unread_expiring).
inbox_state = sa.Table(
    "inbox_state",
    metadata,
    sa.Column("user_id", UUID(as_uuid=False), primary_key=True),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("unread", sa.BigInteger, nullable=False, server_default="0"),
)

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", UUID(as_uuid=False), primary_key=True),
    sa.Column("user_id", UUID(as_uuid=False), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("event_id", UUID(as_uuid=False), nullable=True),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("level", sa.Text, nullable=False),
    sa.Column("priority", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("data", JSONB, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("silent", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("user_id", "seq", name="uq_notifications_user_seq"),
    # Idempotency: one notification per event and recipient, however often it arrives.
    sa.UniqueConstraint("event_id", "user_id", name="uq_notifications_event_user"),
    sa.Index("ix_notifications_unread", "user_id", postgresql_where=sa.text("read_at IS NULL")),
    sa.Index(
        "ix_notifications_expires_at",
        "expires_at",
        postgresql_where=sa.text("expires_at IS NOT NULL"),
    ),
    sa.Index(
        "ix_notifications_read_created",
        "created_at",
        postgresql_where=sa.text("read_at IS NOT NULL"),
    ),
)

# Users as user.registered announced them: the audience of role alerts and announcements.
users = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", UUID(as_uuid=False), primary_key=True),
    sa.Column("roles", ARRAY(sa.Text), nullable=False),
    sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
)

# Only users who saved preferences have a row; everyone else has the defaults.
preferences = sa.Table(
    "preferences",
    metadata,
    sa.Column("user_id", UUID(as_uuid=False), primary_key=True),
    sa.Column("muted_types", ARRAY(sa.Text), nullable=False),
    sa.Column("quiet_start", sa.Text, nullable=True),
    sa.Column("quiet_end", sa.Text, nullable=True),
    sa.Column("quiet_timezone", sa.Text, nullable=True),
    sa.Column("websocket", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

template_overrides = sa.Table(
    "template_overrides",
    metadata,
    sa.Column("type", sa.Text, primary_key=True),
    sa.Column("audience", sa.Text, primary_key=True),
    sa.Column("level", sa.Text, nullable=False),
    sa.Column("priority", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", UUID(as_uuid=False), nullable=True),
)

n = notifications


def _live(now: datetime):
    """Rows not past their expiry at `now` (expired announcements leave every view)."""
    return sa.or_(n.c.expires_at.is_(None), n.c.expires_at > now)


def to_notification(row: Any) -> Notification:
    return Notification(
        id=row.id,
        seq=row.seq,
        type=row.type,
        level=row.level,
        priority=row.priority,
        title=row.title,
        body=row.body,
        data=row.data,
        created_at=row.created_at,
        read_at=row.read_at,
        delivered_at=row.delivered_at,
        expires_at=row.expires_at,
        silent=row.silent,
    )


# ----- writes -----


@dataclass(frozen=True)
class NewNotification:
    """A notification of an event to store with `store_many` (times are aware
    datetimes). Event notifications never expire; announcements, which may, are stored
    by `bulk_store`."""

    id: str
    user_id: str
    event_id: str | None
    type: str
    level: str
    priority: str
    title: str
    body: str
    data: dict[str, Any]
    created_at: datetime
    silent: bool = False


@dataclass(frozen=True)
class Stored:
    """A stored notification with its user's inbox `version` and unread count just
    after it (what a live frame of it carries)."""

    user_id: str
    notification: Notification
    version: int
    unread_count: int


# The inboxes of a batch locked in user id order (made when new), with their owners'
# saved preferences and the templates version, in one round trip.
_LOCK_INBOXES = """
    WITH locked AS (
        INSERT INTO notifier.inbox_state AS s (user_id, last_seq, version)
        SELECT u, 0, 0 FROM unnest($1::uuid[]) AS u ORDER BY u
        ON CONFLICT (user_id) DO UPDATE SET last_seq = s.last_seq
        RETURNING s.user_id, s.last_seq, s.version
    )
    SELECT l.user_id::text AS user_id, l.last_seq, l.version,
           p.user_id IS NOT NULL AS saved, p.muted_types, p.quiet_start, p.quiet_end,
           p.quiet_timezone, p.websocket,
           (SELECT t.version FROM notifier.templates_state t) AS templates_version
    FROM locked l LEFT JOIN notifier.preferences p ON p.user_id = l.user_id
"""

_ALREADY_STORED = """
    SELECT n.event_id::text, n.user_id::text FROM notifier.notifications n
    JOIN unnest($1::uuid[], $2::uuid[]) AS k(event_id, user_id)
      ON n.event_id = k.event_id AND n.user_id = k.user_id
"""

# The new rows, each inbox advanced to its last new seq, and the unread counts after
# (the counter less the unread rows already expired: `unread_counts`), in one statement.
# The count's subquery sees the rows as they were before the statement, which is what
# it needs: a new row of an event never expires.
_INSERT_AND_ADVANCE = """
    WITH inserted AS (
        INSERT INTO notifier.notifications (id, user_id, seq, event_id, type, level,
            priority, title, body, data, created_at, silent)
        SELECT i, u, q, e, t, l, p, ti, b, d::jsonb, c, si
        FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::uuid[], $5::text[],
                    $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                    $11::timestamptz[], $12::bool[])
             AS r(i, u, q, e, t, l, p, ti, b, d, c, si)
    ), advanced AS (
        UPDATE notifier.inbox_state AS s
        SET last_seq = v.last_seq, version = v.version, unread = s.unread + v.added
        FROM unnest($13::uuid[], $14::bigint[], $15::bigint[], $16::bigint[])
             AS v(user_id, last_seq, version, added)
        WHERE s.user_id = v.user_id
        RETURNING s.user_id, s.unread
    )
    SELECT a.user_id::text, a.unread - (
        SELECT count(*) FROM notifier.notifications e
        WHERE e.user_id = a.user_id AND e.read_at IS NULL
          AND e.expires_at IS NOT NULL AND e.expires_at <= $17)
    FROM advanced a
"""

_OVERRIDES = "SELECT type, audience, level, priority, title, body FROM notifier.template_overrides"


@dataclass
class Locked:
    """The inboxes of a batch, locked until the transaction ends: `state` maps each
    user to [last_seq, version] (bumped in place as seqs are handed out), `preferences`
    holds the saved preferences of those who have any, and `templates_version` is the
    template overrides' version as this transaction sees it."""

    state: dict[str, list[int]]
    preferences: dict[str, Preferences]
    templates_version: int


async def lock_inboxes(conn: asyncpg.Connection, user_ids: list[str]) -> Locked:
    """Lock the inboxes of `user_ids` (made when new) in ascending user id order, the
    module's lock order, and read their saved preferences and the templates version:
    one round trip, inside the caller's transaction."""
    rows = await conn.fetch(_LOCK_INBOXES, sorted(set(user_ids)))
    return Locked(
        state={r["user_id"]: [r["last_seq"], r["version"]] for r in rows},
        preferences={r["user_id"]: _prefs_of(r) for r in rows if r["saved"]},
        templates_version=rows[0]["templates_version"] if rows else -1,
    )


def _prefs_of(r: asyncpg.Record) -> Preferences:
    quiet = None
    if r["quiet_start"] is not None:
        quiet = QuietHours(r["quiet_start"], r["quiet_end"], r["quiet_timezone"])
    return Preferences(
        muted_types=list(r["muted_types"]), quiet_hours=quiet, websocket=r["websocket"]
    )


async def override_rows(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every template override: records of (type, audience, level, priority, title,
    body)."""
    return await conn.fetch(_OVERRIDES)


async def store_many(
    conn: asyncpg.Connection,
    items: list[NewNotification],
    now: datetime,
    locked: Locked | None = None,
    check_stored: bool = True,
) -> list[Stored]:
    """Store many notifications (of many events and users) in the caller's transaction
    on a raw connection: each user's seqs continue gaplessly in the order of `items`,
    and an (event_id, user_id) already stored, or repeated in `items`, is skipped.
    `locked` is what `lock_inboxes` returned for these users (taken here when None); the
    check for already stored rows comes after the lock, so it sees every concurrent
    replica's committed work. Three round trips at most: lock (unless given), check
    (only for items with an event id), insert and advance. Returns the new ones in the
    order of `items`.

    `check_stored=False` leaves the check out, for items that cannot have been stored
    before (events at their first delivery): repeats within `items` are still skipped,
    and an (event_id, user_id) stored after all makes the insert raise
    asyncpg.UniqueViolationError (constraint uq_notifications_event_user), so the
    caller's transaction rolls back whole and nothing is doubled or skipped."""
    if not items:
        return []
    if locked is None:
        locked = await lock_inboxes(conn, [i.user_id for i in items])
    state = locked.state
    keyed = [i for i in items if i.event_id is not None]
    seen: set[tuple[str, str]] = set()
    if keyed and check_stored:
        rows = await conn.fetch(
            _ALREADY_STORED, [i.event_id for i in keyed], [i.user_id for i in keyed]
        )
        seen = {(r[0], r[1]) for r in rows}
    fresh: list[tuple[NewNotification, int, int]] = []
    for item in items:
        if item.event_id is not None:
            if (item.event_id, item.user_id) in seen:
                continue
            seen.add((item.event_id, item.user_id))
        slot = state[item.user_id]
        slot[0] += 1
        slot[1] += 1
        fresh.append((item, slot[0], slot[1]))
    if not fresh:
        return []
    touched = sorted({i.user_id for i, _, _ in fresh})
    after = Counter(i.user_id for i, _, _ in fresh)
    rows = await conn.fetch(
        _INSERT_AND_ADVANCE,
        [i.id for i, _, _ in fresh],
        [i.user_id for i, _, _ in fresh],
        [seq for _, seq, _ in fresh],
        [i.event_id for i, _, _ in fresh],
        [i.type for i, _, _ in fresh],
        [i.level for i, _, _ in fresh],
        [i.priority for i, _, _ in fresh],
        [i.title for i, _, _ in fresh],
        [i.body for i, _, _ in fresh],
        [_json.encode(i.data).decode() for i, _, _ in fresh],
        [i.created_at for i, _, _ in fresh],
        [i.silent for i, _, _ in fresh],
        touched,
        [state[u][0] for u in touched],
        [state[u][1] for u in touched],
        [after[u] for u in touched],
        now,
    )
    counts = {r[0]: int(r[1]) for r in rows}
    # Unread after the k-th new one of a user = final count - (new ones after it),
    # exact because the inbox stays locked until commit.
    out = []
    for i, seq, version in fresh:
        after[i.user_id] -= 1
        notification = Notification(
            id=i.id,
            seq=seq,
            type=i.type,
            level=i.level,
            priority=i.priority,
            title=i.title,
            body=i.body,
            data=i.data,
            created_at=i.created_at,
            silent=i.silent,
        )
        out.append(
            Stored(i.user_id, notification, version, counts.get(i.user_id, 0) - after[i.user_id])
        )
    return out


async def touch(conn: AsyncConnection, user_id: str) -> int | None:
    """Lock the user's inbox for a change and bump its version; None when the user has
    never had a notification (so there is nothing to change)."""
    return (
        await conn.execute(
            inbox_state.update()
            .where(inbox_state.c.user_id == user_id)
            .values(version=inbox_state.c.version + 1)
            .returning(inbox_state.c.version)
        )
    ).scalar()


async def get(conn: AsyncConnection, user_id: str, id: str, now: datetime) -> Any:
    """The user's notification `id` (a row) or None."""
    return (
        await conn.execute(sa.select(n).where(n.c.id == id, n.c.user_id == user_id, _live(now)))
    ).first()


_ADD_UNREAD = sa.text("UPDATE notifier.inbox_state SET unread = unread + :delta WHERE user_id = :u")


async def _add_unread(conn: AsyncConnection, user_id: str, delta: int) -> None:
    if delta:
        await conn.execute(_ADD_UNREAD, {"u": user_id, "delta": delta})


async def mark_read(conn: AsyncConnection, user_id: str, id: str, now: datetime) -> Any:
    """Set read_at = now on the user's unread notification `id`; the row after, or None."""
    row = (
        await conn.execute(
            n.update()
            .where(n.c.id == id, n.c.user_id == user_id, n.c.read_at.is_(None))
            .values(read_at=now)
            .returning(*n.c)
        )
    ).first()
    if row is not None:
        await _add_unread(conn, user_id, -1)
    return row


async def mark_all_read(conn: AsyncConnection, user_id: str, now: datetime) -> tuple[int, int]:
    """Read every unread notification of the user: (how many, highest seq among them)."""
    row = (
        await conn.execute(
            sa.text(
                "WITH r AS (UPDATE notifier.notifications SET read_at = :now "
                "WHERE user_id = :u AND read_at IS NULL RETURNING seq) "
                "SELECT count(*), coalesce(max(seq), 0) FROM r"
            ),
            {"now": now, "u": user_id},
        )
    ).one()
    await _add_unread(conn, user_id, -int(row[0]))
    return int(row[0]), int(row[1])


async def delete(conn: AsyncConnection, user_id: str, id: str) -> Any:
    """Delete the user's notification `id`; the deleted row, or None."""
    row = (
        await conn.execute(n.delete().where(n.c.id == id, n.c.user_id == user_id).returning(*n.c))
    ).first()
    if row is not None and row.read_at is None:
        await _add_unread(conn, user_id, -1)
    return row


async def clear_read(conn: AsyncConnection, user_id: str) -> tuple[int, int]:
    """Delete every read notification of the user: (how many, highest seq among them)."""
    row = (
        await conn.execute(
            sa.text(
                "WITH d AS (DELETE FROM notifier.notifications "
                "WHERE user_id = :u AND read_at IS NOT NULL RETURNING seq) "
                "SELECT count(*), coalesce(max(seq), 0) FROM d"
            ),
            {"u": user_id},
        )
    ).one()
    return int(row[0]), int(row[1])


async def ack(conn: AsyncConnection, user_id: str, seq: int, now: datetime) -> datetime | None:
    """Record delivered_at (first delivery only) of the user's notification `seq`; its
    delivered_at, or None when there is no such notification."""
    return (
        await conn.execute(
            n.update()
            .where(n.c.user_id == user_id, n.c.seq == seq)
            .values(delivered_at=sa.func.coalesce(n.c.delivered_at, now))
            .returning(n.c.delivered_at)
        )
    ).scalar()


_ACK_BATCH = """
    UPDATE notifier.notifications AS n SET delivered_at = coalesce(n.delivered_at, $3)
    FROM unnest($1::uuid[], $2::bigint[]) AS k(user_id, seq)
    WHERE n.user_id = k.user_id AND n.seq = k.seq
    RETURNING n.user_id::text, n.seq
"""


async def ack_batch(
    conn: asyncpg.Connection, acks: list[tuple[str, int]], now: datetime
) -> set[tuple[str, int]]:
    """Record delivered_at = `now` (first delivery only) of each (user_id, seq) in one
    autocommit statement; returns the pairs that exist."""
    if not acks:
        return set()
    rows = await conn.fetch(_ACK_BATCH, [u for u, _ in acks], [q for _, q in acks], now)
    return {(r[0], r[1]) for r in rows}


# ----- reads -----


async def unread_counts(
    conn: AsyncConnection, user_ids: list[str], now: datetime
) -> dict[str, int]:
    """Unread, unexpired notifications per user (users with none are absent)."""
    if not user_ids:
        return {}
    rows = (await conn.execute(_UNREAD_COUNTS, {"ids": user_ids, "now": now})).all()
    return {r[0]: int(r[1]) for r in rows}


# The counter less the unread rows already expired and not yet purged.
_EXPIRED_UNREAD = """
    (SELECT count(*) FROM notifier.notifications e
     WHERE e.user_id = s.user_id AND e.read_at IS NULL
       AND e.expires_at IS NOT NULL AND e.expires_at <= :now)
"""

_UNREAD_COUNTS = sa.text(
    f"SELECT s.user_id::text, s.unread - {_EXPIRED_UNREAD} FROM notifier.inbox_state s "
    "WHERE s.user_id = ANY(CAST(:ids AS uuid[]))"
)


async def summary(conn: AsyncConnection, user_id: str, now: datetime) -> tuple[int, int, int]:
    """(unread_count, last_seq, version) of a user, read in one snapshot; (0, 0, 0) for
    one with no notification."""
    return (await summaries(conn, [user_id], now))[0]


async def after_seq(
    conn: AsyncConnection,
    user_id: str,
    seq: int,
    limit: int,
    now: datetime,
    up_to: int | None = None,
) -> list[Notification]:
    """The user's notifications with seq > `seq` (and <= `up_to`), ascending, at most
    `limit`."""
    query = sa.select(n).where(n.c.user_id == user_id, n.c.seq > seq, _live(now))
    if up_to is not None:
        query = query.where(n.c.seq <= up_to)
    rows = (await conn.execute(query.order_by(n.c.seq).limit(limit))).all()
    return [to_notification(r) for r in rows]


async def page(
    conn: AsyncConnection,
    user_id: str,
    *,
    unread: bool,
    type: str | None,
    before_seq: int | None,
    limit: int,
    now: datetime,
) -> list[Notification]:
    """Up to `limit` of the user's notifications with seq < `before_seq`, newest first
    (keyset on the (user_id, seq) index: inserts meanwhile cannot shift a page)."""
    query = sa.select(n).where(n.c.user_id == user_id, _live(now))
    if before_seq is not None:
        query = query.where(n.c.seq < before_seq)
    if unread:
        query = query.where(n.c.read_at.is_(None))
    if type is not None:
        query = query.where(n.c.type == type)
    rows = (await conn.execute(query.order_by(n.c.seq.desc()).limit(limit))).all()
    return [to_notification(r) for r in rows]


# ----- preferences -----


def _prefs(row: Any) -> Preferences:
    quiet = None
    if row.quiet_start is not None:
        quiet = QuietHours(row.quiet_start, row.quiet_end, row.quiet_timezone)
    return Preferences(
        muted_types=list(row.muted_types), quiet_hours=quiet, websocket=row.websocket
    )


async def get_preferences(conn: AsyncConnection, user_id: str) -> Preferences | None:
    row = (
        await conn.execute(sa.select(preferences).where(preferences.c.user_id == user_id))
    ).first()
    return None if row is None else _prefs(row)


async def preferences_of(conn: AsyncConnection, user_ids: list[str]) -> dict[str, Preferences]:
    """Saved preferences of those of `user_ids` who have any."""
    if not user_ids:
        return {}
    rows = (await conn.execute(_PREFERENCES_OF, {"ids": user_ids})).all()
    return {r.user_id: _prefs(r) for r in rows}


_PREFERENCES_OF = sa.text(
    "SELECT user_id::text AS user_id, muted_types, quiet_start, quiet_end, quiet_timezone, "
    "websocket FROM notifier.preferences WHERE user_id = ANY(CAST(:ids AS uuid[]))"
)


async def put_preferences(
    conn: AsyncConnection, user_id: str, prefs: Preferences, now: datetime
) -> None:
    quiet = prefs.quiet_hours
    values = {
        "muted_types": prefs.muted_types,
        "quiet_start": quiet.start if quiet else None,
        "quiet_end": quiet.end if quiet else None,
        "quiet_timezone": quiet.timezone if quiet else None,
        "websocket": prefs.websocket,
        "updated_at": now,
    }
    await conn.execute(
        pg_insert(preferences)
        .values(user_id=user_id, **values)
        .on_conflict_do_update(index_elements=[preferences.c.user_id], set_=values)
    )


# ----- template overrides -----


async def overrides(conn: AsyncConnection, type_: str | None = None) -> list[Any]:
    """Override rows, of one type or all."""
    query = sa.select(template_overrides)
    if type_ is not None:
        query = query.where(template_overrides.c.type == type_)
    return list((await conn.execute(query)).all())


async def put_override(
    conn: AsyncConnection,
    *,
    type_: str,
    audience: str,
    level: str,
    priority: str,
    title: str,
    body: str,
    now: datetime,
    by: str,
) -> None:
    values = {
        "level": level,
        "priority": priority,
        "title": title,
        "body": body,
        "updated_at": now,
        "updated_by": by,
    }
    await conn.execute(
        pg_insert(template_overrides)
        .values(type=type_, audience=audience, **values)
        .on_conflict_do_update(
            index_elements=[template_overrides.c.type, template_overrides.c.audience],
            set_=values,
        )
    )


async def delete_override(conn: AsyncConnection, type_: str, audience: str) -> None:
    await conn.execute(
        template_overrides.delete().where(
            template_overrides.c.type == type_, template_overrides.c.audience == audience
        )
    )


# ----- users and admin sends -----


_UPSERT_USERS = """
    INSERT INTO notifier.users AS x (user_id, roles, registered_at)
    SELECT u, ARRAY(SELECT jsonb_array_elements_text(r::jsonb)), t
    FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS v(u, r, t)
    ON CONFLICT (user_id) DO UPDATE SET roles = excluded.roles
"""


async def upsert_users(
    conn: asyncpg.Connection, registered: dict[str, tuple[list[str], datetime]]
) -> None:
    """Remember users and their roles in one statement: `registered` maps a user id to
    (roles, registered at). A user already known keeps their first registered_at and
    takes the roles given."""
    ids = list(registered)
    await conn.execute(
        _UPSERT_USERS,
        ids,
        [_json.encode(registered[u][0]).decode() for u in ids],
        [registered[u][1] for u in ids],
    )


async def recipients(
    conn: AsyncConnection, *, everyone: bool, roles: list[str], user_ids: list[str]
) -> list[str]:
    """Known users in the audience, ascending: everyone, or those with one of `roles`
    plus those of `user_ids` the notifier knows."""
    if not everyone and not roles:
        if not user_ids:
            return []
        # The common case (an admin's message to chosen users): one array parameter, so
        # the statement is prepared once and no id is processed in Python.
        return list((await conn.execute(_KNOWN_USERS, {"ids": user_ids})).scalars())
    query = sa.select(users.c.user_id)
    if not everyone:
        conds = [users.c.roles.overlap(sa.cast(roles, ARRAY(sa.Text)))]
        if user_ids:
            conds.append(
                users.c.user_id == sa.func.any(sa.cast(user_ids, ARRAY(UUID(as_uuid=False))))
            )
        query = query.where(sa.or_(*conds))
    return list((await conn.execute(query.order_by(users.c.user_id))).scalars())


_KNOWN_USERS = sa.text(
    "SELECT user_id::text FROM notifier.users "
    "WHERE user_id = ANY(CAST(:ids AS uuid[])) ORDER BY user_id"
)


_BULK_STORE = sa.text(
    """
    WITH bumped AS (
        INSERT INTO notifier.inbox_state AS s (user_id, last_seq, version, unread)
        SELECT r, 1, 1, 1 FROM unnest(CAST(:user_ids AS uuid[])) AS r ORDER BY r
        ON CONFLICT (user_id)
        DO UPDATE SET last_seq = s.last_seq + 1, version = s.version + 1,
                      unread = s.unread + 1
        RETURNING s.user_id, s.last_seq, s.version
    ), inserted AS (
        INSERT INTO notifier.notifications (id, user_id, seq, event_id, type, level,
            priority, title, body, data, created_at, expires_at, silent)
        SELECT notifier.uuid7(), b.user_id, b.last_seq, :event_id, :type, :level,
            :priority, :title, :body, CAST(:data AS jsonb), :now, :expires_at,
            b.user_id = ANY(CAST(:silent AS uuid[]))
        FROM bumped b
        RETURNING id, user_id, seq, silent
    )
    SELECT i.id, i.user_id, i.seq, i.silent, b.version
    FROM inserted i JOIN bumped b USING (user_id)
    """
).columns(
    sa.column("id", UUID(as_uuid=False)),
    sa.column("user_id", UUID(as_uuid=False)),
    sa.column("seq", sa.BigInteger),
    sa.column("silent", sa.Boolean),
    sa.column("version", sa.BigInteger),
)


async def bulk_store(
    conn: AsyncConnection,
    *,
    user_ids: list[str],
    silent: list[str],
    event_id: str,
    type: str,
    level: str,
    priority: str,
    title: str,
    body: str,
    data: str,
    now: datetime,
    expires_at: datetime | None,
) -> list[Any]:
    """One notification for each of `user_ids` in one statement: each user's next seq
    is allocated and the rows inserted set-based (no per-user round trip). `data` is
    JSON text; users in `silent` get silent rows. Returns rows (id, user_id, seq,
    silent, version)."""
    return list(
        (
            await conn.execute(
                _BULK_STORE,
                {
                    "user_ids": user_ids,
                    "silent": silent,
                    "event_id": event_id,
                    "type": type,
                    "level": level,
                    "priority": priority,
                    "title": title,
                    "body": body,
                    "data": data,
                    "now": now,
                    "expires_at": expires_at,
                },
            )
        ).all()
    )


# ----- retention -----

PURGE_LOCK = 0x6E6F74696669  # pg advisory lock key: one purger at a time across replicas


async def try_purge_lock(conn: AsyncConnection) -> bool:
    """Take the transaction-scoped purge lock if no other replica holds it."""
    return bool(
        (await conn.execute(sa.select(sa.func.pg_try_advisory_xact_lock(PURGE_LOCK)))).scalar()
    )


async def purge_old_read(conn: AsyncConnection, cutoff: datetime, batch: int) -> int:
    """Delete up to `batch` read notifications created before `cutoff`; how many."""
    victims = (
        sa.select(n.c.id)
        .where(n.c.read_at.is_not(None), n.c.created_at < cutoff)
        .limit(batch)
        .scalar_subquery()
    )
    result = await conn.execute(n.delete().where(n.c.id.in_(victims)))
    return result.rowcount or 0


async def purge_expired(conn: AsyncConnection, now: datetime, batch: int) -> list[Any]:
    """Delete up to `batch` expired notifications, locking their users' inboxes first
    (and bumping their versions); returns the deleted rows (id, user_id, read_at)."""
    found = (
        await conn.execute(
            sa.select(n.c.id, n.c.user_id)
            .where(n.c.expires_at <= now)
            .order_by(n.c.user_id)
            .limit(batch)
        )
    ).all()
    if not found:
        return []
    user_ids = sorted({r.user_id for r in found})
    await conn.execute(
        sa.select(inbox_state.c.user_id)
        .where(inbox_state.c.user_id.in_(user_ids))
        .order_by(inbox_state.c.user_id)
        .with_for_update()
    )
    await conn.execute(
        inbox_state.update()
        .where(inbox_state.c.user_id.in_(user_ids))
        .values(version=inbox_state.c.version + 1)
    )
    deleted = list(
        (
            await conn.execute(
                n.delete()
                .where(n.c.id.in_([r.id for r in found]))
                .returning(n.c.id, n.c.user_id, n.c.read_at)
            )
        ).all()
    )
    unread = Counter(r.user_id for r in deleted if r.read_at is None)
    if unread:
        await conn.execute(
            _SUBTRACT_UNREAD,
            {"ids": list(unread), "counts": list(unread.values())},
        )
    return deleted


_SUBTRACT_UNREAD = sa.text(
    """
    UPDATE notifier.inbox_state AS s SET unread = s.unread - v.n
    FROM unnest(CAST(:ids AS uuid[]), CAST(:counts AS bigint[])) AS v(user_id, n)
    WHERE s.user_id = v.user_id
    """
)


async def versions(conn: AsyncConnection, user_ids: list[str]) -> dict[str, int]:
    rows = (
        await conn.execute(
            sa.select(inbox_state.c.user_id, inbox_state.c.version).where(
                inbox_state.c.user_id.in_(user_ids)
            )
        )
    ).all()
    return {r[0]: int(r[1]) for r in rows}


async def summaries(
    conn: AsyncConnection, user_ids: list[str], now: datetime
) -> list[tuple[int, int, int]]:
    """`summary` of each of `user_ids` (UUID strings), in their order, read in one
    statement (one snapshot, one prepared statement whatever the number of users)."""
    rows = (await conn.execute(_SUMMARIES, {"ids": user_ids, "now": now})).all()
    return [(int(r[0]), int(r[1]), int(r[2])) for r in rows]


_SUMMARIES = sa.text(
    f"""
    SELECT coalesce(s.unread - {_EXPIRED_UNREAD}, 0),
           coalesce(s.last_seq, 0), coalesce(s.version, 0)
    FROM unnest(CAST(:ids AS uuid[])) WITH ORDINALITY AS u(id, ord)
    LEFT JOIN notifier.inbox_state s ON s.user_id = u.id
    ORDER BY u.ord
    """
)

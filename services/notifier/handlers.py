"""Handle domain events (store notifications, then publish them live), inbox requests
and preferences; admin requests are in `admin.py`, the purge in `retention.py`.

Every change of an inbox is committed first and then published on
notify.user.<id> (a `Live` message), so every socket of the user on every api replica
stays in step: new notifications with the unread count, `notification_update` and
`unread_count` after reads and deletes.
"""

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import structlog
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from services.contracts import notifier as c
from services.contracts import subjects
from services.contracts.bookings import Actor
from services.contracts.envelope import decode_envelope
from services.contracts.errors import DomainError
from services.contracts.identity import UserRegisteredData
from services.contracts.ids import uuid7
from services.contracts.limits import PAGE_MAX
from services.notifier import domain, paging, prefs, servable, storage
from services.notifier.templates import OverridesCache
from services.runtime.db import raw_connection
from services.runtime.metrics import NOTIFICATION_LATENCY

log = structlog.get_logger()
_latency = NOTIFICATION_LATENCY.labels("notifier")
ROLES = ("driver", "owner", "employee", "admin")
ACK_BATCH_MAX = 1000  # acks per notifier.inbox.ack_batch request


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Deps:
    """What handlers need; `clock` returns an aware datetime (tests fix it); `overrides`
    caches the template overrides between batches (one per process)."""

    engine: AsyncEngine
    nc: Client
    clock: Callable[[], datetime] = utcnow
    overrides: OverridesCache = field(default_factory=OverridesCache)


_encoder = msgspec.json.Encoder()


def known_types() -> set[str]:
    """Every notification type a user can mute."""
    return set(domain.EVENT_TYPES) | set(c.ADMIN_TYPES)


# Ids of notifications this process already logged as served cut, so a bad row read
# again (every listing, every resume) is not logged again; bounded, oldest forgotten.
_LOGGED_MAX = 10_000
_logged: dict[str, None] = {}


def served(item: c.Notification) -> c.Notification:
    """`item` in a form every reader can take (servable.servable): a row stored before
    the limits existed, or written straight into the table, comes cut and flagged
    `truncated`, at its seq, instead of failing the whole listing, resume or gap fill.
    Such a row is logged once per process, with its id and what was cut."""
    safe, changed = servable.servable(item)
    if changed and safe.id not in _logged:
        _logged[safe.id] = None
        if len(_logged) > _LOGGED_MAX:
            del _logged[next(iter(_logged))]
        log.warning(
            "notification served cut to the limits",
            notification_id=safe.id,
            seq=safe.seq,
            fields=changed,
        )
    return safe


def _served_all(items: list[c.Notification]) -> list[c.Notification]:
    return [served(i) for i in items]


async def publish(deps: Deps, user_id: str, *messages: c.Live) -> None:
    """Send live messages to every socket of `user_id` (core NATS, after the commit);
    each new notification's age (`deps.clock()` minus its created_at, seconds) goes to
    parkmate_notification_latency_seconds{stage="notifier"}.

    A message that cannot be published (larger than the server's max payload, or the
    connection is closing) is logged with its notification id and skipped, and the
    others still go: the notification is committed, so the gateway fills the missing
    seq from the inbox when the next one arrives, or at its next catch-up. Raising here
    instead would only make the consumer redeliver an event whose notifications are
    already stored, and the messages after this one would never be published."""
    subject = subjects.notify_user_subject(user_id)
    for message in messages:
        try:
            await deps.nc.publish(subject, _encoder.encode(message))
        except Exception as e:
            notification = getattr(message, "notification", None)
            log.error(
                "live message not published; the gateway fills it from the inbox",
                user_id=user_id,
                notification_id=getattr(notification, "id", None),
                seq=getattr(notification, "seq", None),
                message_type=type(message).__name__,
                error=repr(e)[:200],
            )
            continue
        if isinstance(message, c.LiveNotification):
            age = deps.clock() - message.notification.created_at
            _latency.observe(max(0.0, age.total_seconds()))


# Live messages written to the socket at a time (see `let_flusher_write`).
PUBLISH_CHUNK = 100


async def let_flusher_write(published: int) -> None:
    """After every PUBLISH_CHUNK-th of a run of publishes, yield to the event loop.

    nats-py only buffers a publish; its flusher task writes the buffer once we yield.
    A loop of 1,000 publishes that never yields sends them all at its end, so the api
    starts delivering only then. Yielding every 100 lets the api write the first
    sockets' frames while we encode the rest: the last socket of a 1,000-user send
    gets its frame about a publish loop sooner (benchmarks/fanout.py, paced p99)."""
    if published % PUBLISH_CHUNK == 0:
        await asyncio.sleep(0)


def _check_uuid(value: str, what: str = "notification") -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise DomainError("not_found", f"No such {what}.") from None


def require_admin(actor: Actor) -> None:
    """Raise DomainError("forbidden") unless `actor` is an admin."""
    if "admin" not in actor.roles:
        raise DomainError("forbidden", "Only admins can do this.")


# ----- events -----


async def on_events(
    deps: Deps, payloads: list[bytes], first_delivery: bool = False
) -> list[c.Notification]:
    """Store the notifications a batch of events causes in one transaction (idempotent
    by event id and recipient), rendered with the templates in force as that transaction
    sees them, then publish each new one on notify.user.<id> with the recipient's
    unread count at that point.
    Returns the new ones, in event order. Raises msgspec errors on an undecodable event
    (the consumer then handles the batch one event at a time and terminates that one).

    One transaction per batch instead of per event, on a raw asyncpg connection, in five
    round trips (BEGIN; lock the inboxes and read preferences and the templates version;
    check for already stored rows; insert and advance the inboxes; COMMIT), six when the
    overrides changed: each round trip to PostgreSQL is a loopback `send`, the most
    expensive thing this service does (profiled in a replay; benchmarks/notifier_paths.py).

    `first_delivery`: every payload is at its first JetStream delivery, so no earlier
    try of it can have stored its notifications, and the check is left out: four round
    trips. An event can still be stored already when the stream holds a second copy of
    it (the outbox published it again after the stream's duplicate window) or when the
    durable consumer was made again over old events. Then the insert violates
    uq_notifications_event_user, the transaction rolls back whole, and the batch is
    stored again with the check: nothing doubled, no seq skipped.
    """
    events = [decode_envelope(p) for p in payloads]
    relevant = [
        (e, domain.facts_of(e.type, e.data)) for e in events if e.type in domain.EVENT_TYPES
    ]
    if not relevant:
        return []
    planned = _plan(relevant, deps.overrides)
    if not planned:
        return []
    if first_delivery:
        try:
            stored = await _store(deps, relevant, planned, check_stored=False)
        except asyncpg.UniqueViolationError:
            log.info("a first delivery was stored already; storing the batch with the check")
            stored = await _store(deps, relevant, planned, check_stored=True)
    else:
        stored = await _store(deps, relevant, planned, check_stored=True)
    for i, s in enumerate(stored, 1):
        await publish(
            deps,
            s.user_id,
            c.LiveNotification(
                notification=served(s.notification),
                push=not s.notification.silent,
                unread_count=s.unread_count,
                version=s.version,
            ),
        )
        await let_flusher_write(i)
    return [served(s.notification) for s in stored]


async def _store(
    deps: Deps,
    relevant: list[tuple[Any, domain.Facts]],
    planned: list[tuple[str, domain.Planned]],
    check_stored: bool,
) -> list[storage.Stored]:
    """One transaction of `on_events`: the inboxes locked, `planned` rendered again if
    the template overrides changed, the new notifications stored (`storage.store_many`)."""
    now = deps.clock()
    async with raw_connection(deps.engine) as conn, conn.transaction():
        locked = await storage.lock_inboxes(conn, [p.user_id for _, p in planned])
        if locked.templates_version != deps.overrides.version:
            deps.overrides.load(locked.templates_version, await storage.override_rows(conn))
            # Overrides change titles and bodies, never recipients: the locks still fit.
            planned = _plan(relevant, deps.overrides)
        stored = await storage.store_many(
            conn,
            [
                storage.NewNotification(
                    id=str(uuid7()),
                    user_id=p.user_id,
                    event_id=event_id,
                    type=p.type,
                    level=p.level,
                    priority=p.priority,
                    title=p.title,
                    body=p.body,
                    data=p.data,
                    created_at=now,
                    silent=not prefs.live_allowed(
                        locked.preferences.get(p.user_id, prefs.DEFAULT), p.type, p.priority, now
                    ),
                )
                for event_id, p in planned
            ],
            now,
            locked,
            check_stored,
        )
    return stored


def _plan(
    relevant: list[tuple[Any, domain.Facts]], overrides: OverridesCache
) -> list[tuple[str, domain.Planned]]:
    """(event id, planned notification) of each recipient of each event, in event
    order, rendered with the templates in force as of `overrides.version`."""
    return [
        (event.id, p)
        for event, facts in relevant
        for p in domain.plan(event.type, facts, overrides.effective(event.type))
    ]


async def on_user_event(deps: Deps, payload: bytes) -> None:
    """`on_user_events` for one event."""
    await on_user_events(deps, [payload])


async def on_user_events(deps: Deps, payloads: list[bytes]) -> None:
    """Remember registered users and their roles (audiences of alerts and
    announcements): a fetched batch in one statement, a user named twice taking the
    roles of the later event. Raises msgspec errors on an undecodable event (the
    consumer then handles the batch one event at a time)."""
    registered: dict[str, tuple[list[str], datetime]] = {}
    for payload in payloads:
        event = decode_envelope(payload)
        if event.type != subjects.USER_REGISTERED:
            continue
        data = msgspec.json.decode(event.data, type=UserRegisteredData)
        first = registered.get(data.user_id)
        registered[data.user_id] = (data.roles, first[1] if first else event.time)
    if registered:
        async with raw_connection(deps.engine) as conn:
            await storage.upsert_users(conn, registered)


# ----- inbox -----


async def inbox_summary(deps: Deps, req: c.InboxSummaryRequest) -> c.InboxSummary:
    async with deps.engine.connect() as conn:
        unread, last, version = await storage.summary(conn, req.user_id, deps.clock())
    return c.InboxSummary(unread_count=unread, last_seq=last, version=version)


async def inbox_after(deps: Deps, req: c.InboxAfterRequest) -> c.NotificationList:
    async with deps.engine.connect() as conn:
        items = await storage.after_seq(
            conn,
            req.user_id,
            req.after_seq,
            max(1, min(req.limit, 500)),
            deps.clock(),
            req.up_to_seq,
        )
    items = _served_all(items)
    kept = paging.fitting(items)
    return c.NotificationList(items=items[:kept], more=kept < len(items))


MAX_SUMMARIES = 1000


async def inbox_summaries(deps: Deps, req: c.InboxSummariesRequest) -> c.InboxSummaries:
    """`inbox_summary` of many users in one statement (the gateway batches the `hello`
    of sockets opening together, and checks sockets after a possible loss of live
    messages). DomainError invalid for more than MAX_SUMMARIES users; not_found for an
    id that is not a UUID."""
    if len(req.user_ids) > MAX_SUMMARIES:
        raise DomainError("invalid", f"At most {MAX_SUMMARIES} user_ids per request.")
    user_ids = [_check_uuid(u, "user") for u in req.user_ids]
    async with deps.engine.connect() as conn:
        rows = await storage.summaries(conn, user_ids, deps.clock())
    return c.InboxSummaries(
        items=[c.InboxSummary(unread_count=u, last_seq=s, version=v) for u, s, v in rows]
    )


async def inbox_query(deps: Deps, req: c.InboxQuery) -> c.NotificationPage:
    """A page newest first; `next_cursor` when more remain. DomainError invalid on a bad
    limit (1 to 200) or cursor."""
    if not 1 <= req.limit <= PAGE_MAX:
        raise DomainError("invalid", f"limit must be between 1 and {PAGE_MAX}.", {"field": "limit"})
    before = paging.decode_cursor(req.cursor) if req.cursor else None
    async with deps.engine.connect() as conn:
        items = await storage.page(
            conn,
            req.user_id,
            unread=req.unread,
            type=req.type,
            before_seq=before,
            limit=req.limit + 1,
            now=deps.clock(),
        )
    items = _served_all(items)
    kept = min(req.limit, paging.fitting(items[: req.limit]))
    more = len(items) > kept
    items = items[:kept]
    return c.NotificationPage(
        items=items, next_cursor=paging.encode_cursor(items[-1].seq) if more else None
    )


async def mark_read(deps: Deps, req: c.NotificationRef) -> c.Notification:
    """The notification, read (already read ones are returned unchanged); not_found for
    one that is not the user's."""
    id_ = _check_uuid(req.id)
    now = deps.clock()
    async with deps.engine.begin() as conn:
        version = await storage.touch(conn, req.user_id)
        row = await storage.get(conn, req.user_id, id_, now) if version is not None else None
        if row is None:
            raise DomainError("not_found", "No such notification in your inbox.")
        changed = row.read_at is None and await storage.mark_read(conn, req.user_id, id_, now)
        if changed:
            row = changed
        count = (await storage.unread_counts(conn, [req.user_id], now)).get(req.user_id, 0)
    if changed:
        await publish(
            deps,
            req.user_id,
            c.LiveUpdate(id=id_, read_at=row.read_at),
            c.LiveUnreadCount(count=count, version=version),
        )
    return served(storage.to_notification(row))


async def mark_all_read(deps: Deps, req: c.UserRef) -> c.Changed:
    now = deps.clock()
    async with deps.engine.begin() as conn:
        version = await storage.touch(conn, req.user_id)
        if version is None:
            return c.Changed(changed=0, unread_count=0)
        changed, up_to = await storage.mark_all_read(conn, req.user_id, now)
        count = (await storage.unread_counts(conn, [req.user_id], now)).get(req.user_id, 0)
    if changed:
        await publish(
            deps,
            req.user_id,
            c.LiveUpdate(read_at=now, up_to_seq=up_to),
            c.LiveUnreadCount(count=count, version=version),
        )
    return c.Changed(changed=changed, unread_count=count)


async def delete(deps: Deps, req: c.NotificationRef) -> c.Changed:
    id_ = _check_uuid(req.id)
    now = deps.clock()
    async with deps.engine.begin() as conn:
        version = await storage.touch(conn, req.user_id)
        row = await storage.delete(conn, req.user_id, id_) if version is not None else None
        if row is None:
            raise DomainError("not_found", "No such notification in your inbox.")
        count = (await storage.unread_counts(conn, [req.user_id], now)).get(req.user_id, 0)
    await publish(
        deps,
        req.user_id,
        c.LiveUpdate(id=id_, deleted=True),
        c.LiveUnreadCount(count=count, version=version),
    )
    return c.Changed(changed=1, unread_count=count)


async def clear_read(deps: Deps, req: c.UserRef) -> c.Changed:
    now = deps.clock()
    async with deps.engine.begin() as conn:
        version = await storage.touch(conn, req.user_id)
        if version is None:
            return c.Changed(changed=0, unread_count=0)
        changed, up_to = await storage.clear_read(conn, req.user_id)
        count = (await storage.unread_counts(conn, [req.user_id], now)).get(req.user_id, 0)
    if changed:
        await publish(
            deps,
            req.user_id,
            c.LiveUpdate(deleted=True, up_to_seq=up_to),
            c.LiveUnreadCount(count=count, version=version),
        )
    return c.Changed(changed=changed, unread_count=count)


async def ack(deps: Deps, req: c.AckRequest) -> c.Acked:
    """Record that a socket received `seq` (first delivery time kept); not_found when the
    user has no such seq."""
    async with deps.engine.begin() as conn:
        delivered_at = await storage.ack(conn, req.user_id, req.seq, deps.clock())
    if delivered_at is None:
        raise DomainError("not_found", f"No notification with seq {req.seq} in your inbox.")
    return c.Acked(seq=req.seq, delivered_at=delivered_at)


async def ack_batch(deps: Deps, req: c.AckBatch) -> c.AckBatchResult:
    """`ack` for many (user, seq) pairs in one statement; the indexes of those with no
    such notification (or no valid user id) come back as `missing`."""
    if len(req.items) > ACK_BATCH_MAX:
        raise DomainError("invalid", f"At most {ACK_BATCH_MAX} acks per request.")
    valid = [(k, _uuid_or_none(i.user_id), i.seq) for k, i in enumerate(req.items)]
    pairs = [(u, q) for _, u, q in valid if u is not None]
    async with raw_connection(deps.engine) as conn:
        found = await storage.ack_batch(conn, pairs, deps.clock())
    return c.AckBatchResult(missing=[k for k, u, q in valid if (u, q) not in found])


def _uuid_or_none(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        return None


# ----- preferences -----


async def get_preferences(deps: Deps, req: c.PreferencesRequest) -> c.Preferences:
    async with deps.engine.connect() as conn:
        saved = await storage.get_preferences(conn, req.user_id)
    return saved or prefs.DEFAULT


async def put_preferences(deps: Deps, req: c.PutPreferences) -> c.Preferences:
    """Replace the user's preferences; DomainError invalid naming the field otherwise."""
    checked = prefs.validate(req.preferences, known_types())
    async with deps.engine.begin() as conn:
        await storage.put_preferences(conn, req.user_id, checked, deps.clock())
    return checked

"""Live lot availability on the WebSocket: `subscribe` to `lot.<lot_id>` for
`slot_update` frames (docs/websocket.md; no personal data in them).

Like the per-user subscriptions, one NATS subscription on `slots.lot.<lot_id>` per lot
per api process, shared by every socket watching that lot and dropped with the last.
A subscription to a lot the bookings service does not know (or will not show the
user) is refused with an error frame, so a client never waits on a topic that stays
silent.
"""

import asyncio
import contextlib
import uuid
from typing import Any, Protocol

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from services.contracts import bookings as c
from services.contracts import subjects
from services.contracts.bookings import SlotUpdate
from services.runtime.micro import RemoteError, call

MAX_TOPICS_PER_SOCKET = 100
_decoder = msgspec.json.Decoder(SlotUpdate)


class Subscriber(Protocol):
    """A socket as topics see it: its user, a set of its topics and a way to queue a
    frame."""

    user_id: str
    roles: list[str]
    topics: set[str]

    def send(self, frame: Any) -> None: ...


def parse_topic(topic: Any) -> str | None:
    """The lot id of a `lot.<uuid>` topic, or None when it is not one."""
    if not isinstance(topic, str) or not topic.startswith("lot."):
        return None
    try:
        return str(uuid.UUID(topic[4:]))
    except ValueError:
        return None


class LotTopics:
    """Routes slots.lot.<id> messages to the sockets subscribed to `lot.<id>` here."""

    def __init__(self, nc: Client):
        self.nc = nc
        self.lots: dict[str, tuple[Any, set[Subscriber]]] = {}
        self._lock = asyncio.Lock()

    async def handle(self, conn: Subscriber, kind: str, topic: Any) -> None:
        """Apply a `subscribe` or `unsubscribe` frame; errors go back as error frames."""
        lot_id = parse_topic(topic)
        if lot_id is None:
            conn.send(
                {
                    "type": "error",
                    "code": "bad_topic",
                    "detail": "topic must be lot.<lot_id>, e.g. lot.0192...; "
                    "see GET /api/v1/lots for ids.",
                }
            )
            return
        if kind == "subscribe":
            if len(conn.topics) >= MAX_TOPICS_PER_SOCKET and lot_id not in conn.topics:
                conn.send(
                    {
                        "type": "error",
                        "code": "too_many_topics",
                        "detail": f"At most {MAX_TOPICS_PER_SOCKET} topics per socket; "
                        "unsubscribe from some first.",
                    }
                )
                return
            if lot_id not in conn.topics and not await self._may_watch(conn, lot_id):
                return
            await self._add(conn, lot_id)
        else:
            await self._remove(conn, lot_id)

    async def _may_watch(self, conn: Subscriber, lot_id: str) -> bool:
        """Ask bookings for the lot as the socket's user (without its slots); on a
        refusal, tell the socket why and return False."""
        try:
            await call(
                self.nc,
                subjects.BOOKINGS_LOT_GET,
                c.GetLot(
                    actor=c.Actor(user_id=conn.user_id, roles=conn.roles),
                    lot_id=lot_id,
                    with_slots=False,
                ),
                c.LotView,
            )
        except RemoteError as e:
            if e.code == "not_found":
                detail = f"No lot with id {lot_id}; see GET /api/v1/lots for ids."
            elif e.code == "unavailable":
                detail = "Lots cannot be checked right now; subscribe again in a moment."
            else:
                detail = f"You may not watch lot {lot_id}: {e.detail}"
            conn.send({"type": "error", "code": e.code, "detail": detail, "topic": f"lot.{lot_id}"})
            return False
        return True

    async def _add(self, conn: Subscriber, lot_id: str) -> None:
        async with self._lock:
            entry = self.lots.get(lot_id)
            if entry is None:
                sub = await self.nc.subscribe(subjects.slots_lot_subject(lot_id), cb=self._deliver)
                entry = (sub, set())
                self.lots[lot_id] = entry
            entry[1].add(conn)
            conn.topics.add(lot_id)

    async def _remove(self, conn: Subscriber, lot_id: str) -> None:
        async with self._lock:
            conn.topics.discard(lot_id)
            entry = self.lots.get(lot_id)
            if entry is None:
                return
            entry[1].discard(conn)
            if not entry[1]:
                del self.lots[lot_id]
                with contextlib.suppress(Exception):
                    await entry[0].unsubscribe()

    async def detach(self, conn: Subscriber) -> None:
        """Drop every subscription of a closing socket."""
        for lot_id in list(conn.topics):
            await self._remove(conn, lot_id)

    async def _deliver(self, msg: Msg) -> None:
        lot_id = msg.subject[len(subjects.SLOTS_LOT_PREFIX) :]
        entry = self.lots.get(lot_id)
        if entry is None:
            return
        try:
            update = _decoder.decode(msg.data)
        except msgspec.DecodeError:
            return
        for conn in list(entry[1]):
            conn.send(update)

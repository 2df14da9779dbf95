"""bookings.lot.* and bookings.slot.*: lots, their settings and their slots."""

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.bookings import domain, storage
from services.bookings.handlers.common import (
    Deps,
    check_limit,
    decode_cursor,
    encode_cursor,
    lot_people,
    lot_view,
    parse_id,
    slot_view,
)
from services.bookings.policy import Action, require_on_lot
from services.bookings.storage import lots, slots
from services.contracts import bookings as c
from services.contracts.errors import DomainError
from services.contracts.ids import uuid7


async def create_lot(deps: Deps, req: c.CreateLot) -> c.LotView:
    """Create a lot and its slots. Owners own what they create; an admin may set owner_id."""
    actor = req.actor
    if not domain.may_create_lot(actor.roles):
        raise DomainError("forbidden", "Only lot owners and admins can create lots.")
    settings = domain.LotSettings(req.booking_seconds, req.warning_seconds)
    labels = domain.validate_lot(req.name, req.address, settings, req.slot_labels, req.slot_count)
    price = domain.parse_money(req.price_per_hour.amount, "price_per_hour")
    carwash = (
        None
        if req.carwash_price is None
        else domain.parse_money(req.carwash_price.amount, "carwash_price")
    )
    currency = req.price_per_hour.currency
    if req.carwash_price is not None and req.carwash_price.currency != currency:
        raise DomainError(
            "invalid",
            f"carwash_price.currency must be the lot's currency, {currency} (price_per_hour).",
            {"field": "carwash_price.currency"},
        )
    owner_id = actor.user_id
    if req.owner_id is not None:
        if domain.ADMIN not in actor.roles and req.owner_id != actor.user_id:
            raise DomainError("forbidden", "Only admins can create a lot for another owner.")
        owner_id = parse_id(req.owner_id, "user")
    lot_id = str(uuid7())
    async with deps.engine.begin() as conn:
        await conn.execute(
            lots.insert().values(
                id=lot_id,
                owner_id=owner_id,
                name=req.name.strip(),
                address=req.address.strip(),
                booking_seconds=req.booking_seconds,
                warning_seconds=req.warning_seconds,
                currency=currency,
                price_per_hour=price,
                carwash_price=carwash,
                created_at=deps.clock(),
            )
        )
        await _insert_slots(conn, lot_id, labels, 0)
        return await _lot(conn, lot_id, with_slots=True)


# All of a lot's new slots in one statement: as one INSERT per slot, a lot of 5,000
# slots took about 1 s to create.
_INSERT_SLOTS = sa.text("""
    INSERT INTO bookings.slots (id, lot_id, label, position)
    SELECT s.id, CAST(:lot_id AS uuid), s.label, s.position
    FROM unnest(CAST(:ids AS uuid[]), CAST(:labels AS text[]), CAST(:positions AS int[]))
        AS s(id, label, position)
""")


async def _insert_slots(
    conn: AsyncConnection, lot_id: str, labels: list[str], first: int
) -> list[str]:
    """Insert slots labelled `labels` in `lot_id`, at positions from `first` on, in one
    statement; their new ids in the same order. Raises IntegrityError when a label is
    taken in the lot (uq_slots_lot_label)."""
    ids = [str(uuid7()) for _ in labels]
    await conn.execute(
        _INSERT_SLOTS,
        {
            "lot_id": lot_id,
            "ids": ids,
            "labels": labels,
            "positions": list(range(first, first + len(labels))),
        },
    )
    return ids


async def _lot(conn: AsyncConnection, lot_id: str, with_slots: bool = False) -> c.LotView:
    row = (await conn.execute(storage.lot_with_counts.where(lots.c.id == lot_id))).first()
    if row is None:
        raise DomainError("not_found", f"No lot with id {lot_id}.")
    slot_rows = await storage.lot_slots(conn, lot_id) if with_slots else None
    return lot_view(row, slot_rows)


async def get_lot(deps: Deps, req: c.GetLot) -> c.LotView:
    """Any signed-in user sees any lot (drivers need them to book); with its slots
    unless `with_slots` is false."""
    async with deps.engine.connect() as conn:
        return await _lot(conn, parse_id(req.lot_id, "lot"), with_slots=req.with_slots)


async def list_lots(deps: Deps, req: c.ListLots) -> c.LotPage:
    """Lots in creation order, keyset-paginated by id; with `mine`, only those the actor
    owns or is assigned to as staff (an owner's or employee's dashboard)."""
    limit = check_limit(req.limit)
    after = decode_cursor(req.cursor)
    q = storage.lot_with_counts.order_by(lots.c.id).limit(limit + 1)
    if after:
        q = q.where(lots.c.id > after)
    if req.mine:
        me = parse_id(req.actor.user_id, "user")
        staffed = sa.select(storage.staff.c.lot_id).where(storage.staff.c.user_id == me)
        q = q.where(sa.or_(lots.c.owner_id == me, lots.c.id.in_(staffed)))
    async with deps.engine.connect() as conn:
        rows = list((await conn.execute(q)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return c.LotPage(
        items=[lot_view(r) for r in rows], next_cursor=encode_cursor(rows[-1].id) if more else None
    )


async def list_slots(deps: Deps, req: c.ListSlots) -> c.SlotList:
    lot_id = parse_id(req.lot_id, "lot")
    async with deps.engine.connect() as conn:
        await lot_people(conn, lot_id)
        return c.SlotList(items=[slot_view(r) for r in await storage.lot_slots(conn, lot_id)])


async def update_lot(deps: Deps, req: c.UpdateLot) -> c.LotView:
    """Change a lot's settings (owner or admin). New values apply from the next booking."""
    lot_id = parse_id(req.lot_id, "lot")
    changes = {
        k: v
        for k, v in msgspec.structs.asdict(req).items()
        if k not in ("actor", "lot_id") and v is not msgspec.UNSET
    }
    async with deps.engine.begin() as conn:
        row = (
            await conn.execute(sa.select(lots).where(lots.c.id == lot_id).with_for_update())
        ).first()
        if row is None:
            raise DomainError("not_found", f"No lot with id {lot_id}.")
        require_on_lot(
            Action.UPDATE_LOT, req.actor.user_id, req.actor.roles, await lot_people(conn, lot_id)
        )
        values = _lot_changes(changes, row)
        if values:
            await conn.execute(lots.update().where(lots.c.id == lot_id).values(**values))
        return await _lot(conn, lot_id, with_slots=True)


def _lot_changes(changes: dict, row: sa.Row) -> dict:
    values = {}
    for key in ("name", "address"):
        if key in changes:
            if not changes[key].strip():
                raise DomainError("invalid", f"{key} must not be empty.")
            values[key] = changes[key].strip()
    booking = changes.get("booking_seconds", row.booking_seconds)
    warning = changes.get("warning_seconds", row.warning_seconds)
    domain.validate_lot("x", "x", domain.LotSettings(booking, warning), None, 1)
    values |= {k: changes[k] for k in ("booking_seconds", "warning_seconds") if k in changes}
    if "renew_grace_seconds" in changes:
        if changes["renew_grace_seconds"] < 0:
            raise DomainError("invalid", "renew_grace_seconds must be >= 0.")
        values["renew_grace_seconds"] = changes["renew_grace_seconds"]
    if "max_renewals" in changes:
        if changes["max_renewals"] is not None and changes["max_renewals"] < 0:
            raise DomainError("invalid", "max_renewals must be >= 0, or null for no cap.")
        values["max_renewals"] = changes["max_renewals"]
    for key in ("price_per_hour", "carwash_price"):
        if key in changes:
            m = changes[key]
            if m is None and key == "price_per_hour":
                raise DomainError("invalid", "price_per_hour cannot be null.")
            if m is not None and m.currency != row.currency:
                raise DomainError("invalid", f"{key}.currency must be the lot's {row.currency}.")
            values[key] = None if m is None else domain.parse_money(m.amount, key)
    return values


async def add_slots(deps: Deps, req: c.AddSlots) -> c.SlotList:
    """Add slots to a lot (owner or admin); 409 when a label is already used."""
    lot_id = parse_id(req.lot_id, "lot")
    try:
        async with deps.engine.begin() as conn:
            await conn.execute(sa.select(lots.c.id).where(lots.c.id == lot_id).with_for_update())
            require_on_lot(
                Action.UPDATE_LOT,
                req.actor.user_id,
                req.actor.roles,
                await lot_people(conn, lot_id),
            )
            existing = (
                await conn.execute(sa.select(sa.func.count()).where(slots.c.lot_id == lot_id))
            ).scalar_one()
            if req.count is not None and req.slot_labels is None:
                if not 1 <= req.count <= domain.MAX_SLOTS_PER_LOT:
                    raise DomainError(
                        "invalid", f"count must be between 1 and {domain.MAX_SLOTS_PER_LOT}."
                    )
                labels = [str(existing + i) for i in range(1, req.count + 1)]
            else:
                labels = domain.validate_lot(
                    "x", "x", domain.LotSettings(60, 0), req.slot_labels, req.count
                )
            if existing + len(labels) > domain.MAX_SLOTS_PER_LOT:
                raise DomainError(
                    "invalid",
                    f"The lot has {existing} slots (removed ones count too) and may have "
                    f"at most {domain.MAX_SLOTS_PER_LOT}; add at most "
                    f"{max(0, domain.MAX_SLOTS_PER_LOT - existing)}.",
                )
            ids = set(await _insert_slots(conn, lot_id, labels, existing))
            rows = await storage.lot_slots(conn, lot_id)
    except IntegrityError:
        raise DomainError(
            "conflict",
            "A slot with one of these labels already exists in the "
            "lot (removed slots keep their labels); choose other labels.",
        ) from None
    return c.SlotList(items=[slot_view(r) for r in rows if r.id in ids])


async def remove_slot(deps: Deps, req: c.RemoveSlot) -> c.Done:
    """Remove a free slot (owner or admin); 409 with `booked_until` while it is booked."""
    lot_id, slot_id = parse_id(req.lot_id, "lot"), parse_id(req.slot_id, "slot")
    async with deps.engine.begin() as conn:
        # Locks the slot: a booking being made for it waits, then finds it removed.
        found = (
            await conn.execute(
                sa.select(slots.c.id)
                .where(
                    slots.c.id == slot_id, slots.c.lot_id == lot_id, slots.c.removed_at.is_(None)
                )
                .with_for_update()
            )
        ).first()
        people = await lot_people(conn, lot_id)
        if found is None:
            raise DomainError("not_found", f"No slot {slot_id} in lot {lot_id}.")
        require_on_lot(Action.UPDATE_LOT, req.actor.user_id, req.actor.roles, people)
        end = await storage.active_booking_end(conn, slot_id)
        if end is not None:
            until = end.isoformat().replace("+00:00", "Z")
            raise DomainError(
                "conflict",
                f"Slot {slot_id} is booked until {until}; remove it "
                "after that, or decline the booking first.",
                {"slot_id": slot_id, "booked_until": until},
            )
        await conn.execute(
            slots.update().where(slots.c.id == slot_id).values(removed_at=deps.clock())
        )
    return c.Done()

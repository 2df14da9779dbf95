"""bookings.vehicle.*: a driver's vehicles."""

import uuid

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError

from services.bookings import domain
from services.bookings.handlers.common import Deps
from services.bookings.storage import vehicles
from services.contracts import bookings as c
from services.contracts.errors import DomainError
from services.contracts.ids import uuid7
from services.contracts.limits import MAX_BULK

_encoder = msgspec.json.Encoder()


def _view(r) -> c.VehicleView:
    return c.VehicleView(id=r.id, plate=r.plate, label=r.label, created_at=r.created_at)


async def create_vehicle(deps: Deps, req: c.CreateVehicle) -> c.VehicleView:
    """Register a vehicle for the calling driver; the plate is normalised and unique per
    driver (409 when they already registered it)."""
    if not domain.may_book(req.actor.roles):
        raise DomainError("forbidden", "Only drivers register vehicles.")
    plate = domain.normalise_plate(req.plate)
    label = req.label.strip() if req.label and req.label.strip() else None
    vehicle_id, now = str(uuid7()), deps.clock()
    try:
        async with deps.engine.begin() as conn:
            await conn.execute(
                vehicles.insert().values(
                    id=vehicle_id,
                    user_id=req.actor.user_id,
                    plate=plate,
                    label=label,
                    created_at=now,
                )
            )
    except IntegrityError:
        raise DomainError(
            "conflict", f"You already registered plate {plate}.", {"plate": plate}
        ) from None
    return c.VehicleView(id=vehicle_id, plate=plate, label=label, created_at=now)


async def list_vehicles(deps: Deps, req: c.ListVehicles) -> c.VehicleList:
    """The caller's own vehicles, oldest first."""
    async with deps.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(vehicles)
            .where(vehicles.c.user_id == req.actor.user_id)
            .order_by(vehicles.c.id)
        )
        return c.VehicleList(items=[_view(r) for r in rows])


async def create_vehicles_bulk(deps: Deps, req: c.CreateVehiclesBulk) -> c.BulkVehicleList:
    """Register many drivers' vehicles in one set-based insert (admins only; the api
    checked that the users exist). Plates are normalised as for one vehicle.

    Raises DomainError: forbidden (not an admin), invalid (no vehicles, more than
    MAX_BULK, a bad plate or user id, a (user, plate) twice in the request, the detail
    naming the index; or an answer larger than one NATS message), conflict (a driver
    already registered that plate; nothing is inserted).
    """
    if domain.ADMIN not in req.actor.roles:
        raise DomainError("forbidden", "Only admins register vehicles in bulk.")
    if not 1 <= len(req.vehicles) <= MAX_BULK:
        raise DomainError("invalid", f"vehicles must hold 1 to {MAX_BULK} entries.")
    now = deps.clock()
    rows, seen = [], set()
    for i, v in enumerate(req.vehicles):
        try:
            plate = domain.normalise_plate(v.plate)
            user_id = str(uuid.UUID(v.user_id))
        except (DomainError, ValueError) as e:
            reason = e.detail if isinstance(e, DomainError) else "user_id is not a user id"
            raise DomainError("invalid", f"vehicles[{i}]: {reason}", {"index": i}) from None
        if (user_id, plate) in seen:
            raise DomainError(
                "invalid", f"vehicles[{i}]: plate {plate} twice for one driver.", {"index": i}
            )
        seen.add((user_id, plate))
        label = v.label.strip() if v.label and v.label.strip() else None
        row = {"id": str(uuid7()), "user_id": user_id, "plate": plate, "label": label}
        rows.append(row | {"created_at": now})
    answer = c.BulkVehicleList(
        items=[
            c.BulkVehicleView(
                id=r["id"], user_id=r["user_id"], plate=r["plate"], label=r["label"], created_at=now
            )
            for r in rows
        ]
    )
    # Checked before the insert: an answer that cannot be sent must not follow a commit.
    size = len(_encoder.encode(answer))
    if deps.nc is not None and size > deps.nc.max_payload:
        raise DomainError(
            "invalid",
            f"vehicles: the answer would be {size} bytes, more than one message may carry "
            f"({deps.nc.max_payload}); register fewer vehicles per call.",
            {"field": "vehicles"},
        )
    async with deps.engine.begin() as conn:
        inserted = (
            (
                await conn.execute(
                    pg_insert(vehicles)
                    .on_conflict_do_nothing(constraint="uq_vehicles_user_plate")
                    .returning(vehicles.c.id),
                    rows,
                )
            )
            .scalars()
            .all()
        )
        if len(inserted) != len(rows):  # raising rolls the whole insert back
            done = set(inserted)
            first = next(i for i, r in enumerate(rows) if r["id"] not in done)
            plate = rows[first]["plate"]
            raise DomainError(
                "conflict",
                f"vehicles[{first}]: that driver already registered plate {plate}; "
                "nothing was registered.",
                {"index": first, "plate": plate},
            )
    return answer

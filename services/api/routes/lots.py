"""Lot routes (docs/contract.md, "Lots and slots"): lots, their slots and staff, served
by the bookings service over NATS; this module never touches its tables."""

from typing import Annotated

import msgspec
from litestar import Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody, QueryParameter

from services.api import storage
from services.api.errors import responses
from services.api.routes.common import CursorQuery, PathId, ask, deps
from services.contracts import bookings as c
from services.contracts import subjects as s
from services.contracts.bookings import Actor, MoneyIn, SlotLabels
from services.contracts.errors import DomainError
from services.contracts.limits import (
    PAGE_MAX,
    Address,
    BookingSeconds,
    GraceSeconds,
    Id,
    MaxRenewals,
    Name,
    SlotCount,
    WarningSeconds,
)

UNSET = msgspec.UNSET


class LotIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A new lot: slot_labels or slot_count; times in seconds; prices as Money. An admin
    may create it for an owner with `owner_id`."""

    name: Name
    address: Address
    slot_labels: SlotLabels | None = None
    slot_count: SlotCount | None = None
    booking_seconds: BookingSeconds = 3600
    warning_seconds: WarningSeconds = 300
    price_per_hour: MoneyIn = MoneyIn("0.00")
    carwash_price: MoneyIn | None = None
    owner_id: Id | None = None


class LotPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Fields to change; omitted ones stay. `carwash_price: null` stops car washes,
    `max_renewals: null` removes the cap. Applies to bookings and renewals from now on."""

    name: Name | msgspec.UnsetType = UNSET
    address: Address | msgspec.UnsetType = UNSET
    booking_seconds: BookingSeconds | msgspec.UnsetType = UNSET
    warning_seconds: WarningSeconds | msgspec.UnsetType = UNSET
    renew_grace_seconds: GraceSeconds | msgspec.UnsetType = UNSET
    max_renewals: MaxRenewals | msgspec.UnsetType | None = UNSET
    price_per_hour: MoneyIn | msgspec.UnsetType = UNSET
    carwash_price: MoneyIn | msgspec.UnsetType | None = UNSET


class SlotsIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """New slots: `slot_labels`, or `count` slots numbered after the existing ones."""

    slot_labels: SlotLabels | None = None
    count: SlotCount | None = None


class StaffIn(msgspec.Struct, forbid_unknown_fields=True):
    """The user (with the employee role) to assign."""

    user_id: Id


@post(
    "/lots",
    status_code=201,
    dependencies=deps,
    responses=responses(400, 401, 403, 422),
    summary="Create a lot with its slots (owner, admin)",
)
async def create_lot(
    request: Request, data: JSONBody[LotIn], actor: NamedDependency[Actor]
) -> c.LotView:
    """201 the lot with `slots`; 403 unless owner or admin; 400 on invalid settings, and
    when an admin's `owner_id` names no user."""
    if (
        data.owner_id is not None
        and data.owner_id != actor.user_id
        and "admin" in actor.roles
        and await _user_roles(request, data.owner_id) is None
    ):
        # bookings cannot see users: without this the lot would belong to nobody.
        raise DomainError(
            "invalid",
            f"owner_id must be the id of an existing user; there is none with id "
            f"{data.owner_id!r} (GET /api/v1/admin/users lists them).",
            {"field": "owner_id"},
        )
    req = c.CreateLot(actor=actor, **msgspec.structs.asdict(data))
    return await ask(request, s.BOOKINGS_LOT_CREATE, req, c.LotView)


@get(
    "/lots",
    dependencies=deps,
    responses=responses(400, 401),
    summary="List lots with free and total slots",
)
async def list_lots(
    request: Request,
    actor: NamedDependency[Actor],
    limit: Annotated[int, QueryParameter(ge=1, le=PAGE_MAX)] = 50,
    cursor: CursorQuery = None,
    mine: FromQuery[bool] = False,
) -> c.LotPage:
    """Every lot; `mine=true`: only the lots the caller owns or works at as staff."""
    return await ask(
        request,
        s.BOOKINGS_LOT_LIST,
        c.ListLots(actor=actor, limit=limit, cursor=cursor, mine=mine),
        c.LotPage,
    )


@get(
    "/lots/{lot_id:str}",
    dependencies=deps,
    responses=responses(401, 404),
    summary="One lot with its slots",
)
async def get_lot(request: Request, actor: NamedDependency[Actor], lot_id: PathId) -> c.LotView:
    return await ask(request, s.BOOKINGS_LOT_GET, c.GetLot(actor=actor, lot_id=lot_id), c.LotView)


@patch(
    "/lots/{lot_id:str}",
    dependencies=deps,
    responses=responses(400, 401, 403, 404),
    summary="Change a lot's settings (its owner, admin)",
)
async def update_lot(
    request: Request, data: JSONBody[LotPatch], actor: NamedDependency[Actor], lot_id: PathId
) -> c.LotView:
    req = c.UpdateLot(actor=actor, lot_id=lot_id, **msgspec.structs.asdict(data))
    return await ask(request, s.BOOKINGS_LOT_UPDATE, req, c.LotView)


@get(
    "/lots/{lot_id:str}/slots",
    dependencies=deps,
    responses=responses(401, 404),
    summary="Slots of a lot, free or booked",
)
async def list_slots(
    request: Request, actor: NamedDependency[Actor], lot_id: PathId
) -> list[c.SlotView]:
    page = await ask(
        request, s.BOOKINGS_SLOT_LIST, c.ListSlots(actor=actor, lot_id=lot_id), c.SlotList
    )
    return page.items


@post(
    "/lots/{lot_id:str}/slots",
    status_code=201,
    dependencies=deps,
    responses=responses(400, 401, 403, 404, 409, 422),
    summary="Add slots to a lot (its owner, admin)",
)
async def add_slots(
    request: Request, data: JSONBody[SlotsIn], actor: NamedDependency[Actor], lot_id: PathId
) -> list[c.SlotView]:
    """201 the new slots; 409 when a label is already used in the lot."""
    req = c.AddSlots(actor=actor, lot_id=lot_id, slot_labels=data.slot_labels, count=data.count)
    return (await ask(request, s.BOOKINGS_SLOT_ADD, req, c.SlotList)).items


@delete(
    "/lots/{lot_id:str}/slots/{slot_id:str}",
    status_code=204,
    dependencies=deps,
    responses=responses(401, 403, 404, 409),
    summary="Remove a free slot (its owner, admin)",
)
async def remove_slot(
    request: Request, actor: NamedDependency[Actor], lot_id: PathId, slot_id: PathId
) -> None:
    """204; 409 with `extra.booked_until` while the slot is booked."""
    await ask(
        request,
        s.BOOKINGS_SLOT_REMOVE,
        c.RemoveSlot(actor=actor, lot_id=lot_id, slot_id=slot_id),
        c.Done,
    )


async def _user_roles(request: Request, user_id: str) -> list[str] | None:
    """The roles of user `user_id`, or None when there is no such user."""
    async with request.app.state.engine.connect() as conn:
        try:
            row = await storage.user_by_id(conn, user_id)
        except Exception:  # a malformed id names nobody
            return None
    return None if row is None else list(row.roles)


async def _is_employee(request: Request, user_id: str) -> bool:
    return "employee" in (await _user_roles(request, user_id) or [])


@post(
    "/lots/{lot_id:str}/staff",
    status_code=201,
    dependencies=deps,
    responses=responses(400, 401, 403, 404, 409, 422),
    summary="Assign an employee to a lot (its owner, admin)",
)
async def assign_staff(
    request: Request, data: JSONBody[StaffIn], actor: NamedDependency[Actor], lot_id: PathId
) -> c.StaffView:
    """201; emits staff.assigned (the lot owner and the employee are told). 400 when the
    user has no employee role; 409 when already assigned."""
    req = c.StaffRequest(
        actor=actor,
        lot_id=lot_id,
        user_id=data.user_id,
        is_employee=await _is_employee(request, data.user_id),
    )
    return await ask(request, s.BOOKINGS_STAFF_ASSIGN, req, c.StaffView)


@get(
    "/lots/{lot_id:str}/staff",
    dependencies=deps,
    responses=responses(401, 403, 404),
    summary="A lot's staff (its owner, its staff, admin)",
)
async def list_staff(
    request: Request, actor: NamedDependency[Actor], lot_id: PathId
) -> c.StaffList:
    return await ask(
        request, s.BOOKINGS_STAFF_LIST, c.ListStaff(actor=actor, lot_id=lot_id), c.StaffList
    )


@delete(
    "/lots/{lot_id:str}/staff/{user_id:str}",
    status_code=204,
    dependencies=deps,
    responses=responses(401, 403, 404),
    summary="Unassign an employee (its owner, admin)",
)
async def unassign_staff(
    request: Request, actor: NamedDependency[Actor], lot_id: PathId, user_id: PathId
) -> None:
    await ask(
        request,
        s.BOOKINGS_STAFF_UNASSIGN,
        c.StaffRequest(actor=actor, lot_id=lot_id, user_id=user_id),
        c.Done,
    )


routes = [
    create_lot,
    list_lots,
    get_lot,
    update_lot,
    list_slots,
    add_slots,
    remove_slot,
    assign_staff,
    list_staff,
    unassign_staff,
]

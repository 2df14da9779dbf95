"""bookings.staff.*: assign employees to a lot, unassign them, list them."""

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from services.bookings.handlers.common import Deps, emit, lot_people, parse_id
from services.bookings.policy import Action, require_on_lot
from services.bookings.storage import lots, staff
from services.contracts import bookings as c
from services.contracts import subjects
from services.contracts.errors import DomainError
from services.contracts.limits import MAX_STAFF_PER_LOT


async def assign(deps: Deps, req: c.StaffRequest) -> c.StaffView:
    """Assign an employee (the api has checked the role) to a lot: admin or lot owner.
    409 when already assigned; 400 when the lot has MAX_STAFF_PER_LOT already (every
    booking event lists them). Emits staff.assigned (lot owner and employee hear it)."""
    lot_id, user_id = parse_id(req.lot_id, "lot"), parse_id(req.user_id, "user")
    now = deps.clock()
    try:
        async with deps.engine.begin() as conn:
            people = await lot_people(conn, lot_id)
            require_on_lot(Action.MANAGE_STAFF, req.actor.user_id, req.actor.roles, people)
            if not req.is_employee:
                raise DomainError(
                    "invalid",
                    "user_id must name a user with the employee role; an admin creates one "
                    "with POST /api/v1/admin/users.",
                )
            if len(people.staff_ids) >= MAX_STAFF_PER_LOT and user_id not in people.staff_ids:
                raise DomainError(
                    "invalid",
                    f"A lot has at most {MAX_STAFF_PER_LOT} employees; unassign one first.",
                )
            await conn.execute(
                staff.insert().values(
                    lot_id=lot_id, user_id=user_id, assigned_by=req.actor.user_id, assigned_at=now
                )
            )
            name = (
                await conn.execute(sa.select(lots.c.name).where(lots.c.id == lot_id))
            ).scalar_one()
            await emit(
                conn,
                subjects.STAFF_ASSIGNED,
                c.StaffEventData(
                    lot_id=lot_id,
                    lot_name=name,
                    owner_id=people.owner_id,
                    employee_id=user_id,
                    by_user_id=req.actor.user_id,
                ),
                lot_id,
            )
    except IntegrityError:
        raise DomainError("conflict", "This employee is already assigned to the lot.") from None
    deps.wake_outbox()
    return c.StaffView(
        lot_id=lot_id, user_id=user_id, assigned_by=req.actor.user_id, assigned_at=now
    )


async def unassign(deps: Deps, req: c.StaffRequest) -> c.Done:
    """Remove an employee from a lot (admin or lot owner); 404 when not assigned."""
    lot_id, user_id = parse_id(req.lot_id, "lot"), parse_id(req.user_id, "user")
    async with deps.engine.begin() as conn:
        people = await lot_people(conn, lot_id)
        require_on_lot(Action.MANAGE_STAFF, req.actor.user_id, req.actor.roles, people)
        gone = await conn.execute(
            staff.delete().where(staff.c.lot_id == lot_id, staff.c.user_id == user_id)
        )
        if gone.rowcount == 0:
            raise DomainError("not_found", f"User {user_id} is not assigned to this lot.")
        name = (await conn.execute(sa.select(lots.c.name).where(lots.c.id == lot_id))).scalar_one()
        await emit(
            conn,
            subjects.STAFF_UNASSIGNED,
            c.StaffEventData(
                lot_id=lot_id,
                lot_name=name,
                owner_id=people.owner_id,
                employee_id=user_id,
                by_user_id=req.actor.user_id,
            ),
            lot_id,
        )
    deps.wake_outbox()
    return c.Done()


async def list_staff(deps: Deps, req: c.ListStaff) -> c.StaffList:
    """The lot's staff: visible to its owner, its staff and admins."""
    lot_id = parse_id(req.lot_id, "lot")
    async with deps.engine.connect() as conn:
        require_on_lot(
            Action.SEE_STAFF, req.actor.user_id, req.actor.roles, await lot_people(conn, lot_id)
        )
        rows = await conn.execute(
            sa.select(staff).where(staff.c.lot_id == lot_id).order_by(staff.c.assigned_at)
        )
        return c.StaffList(
            items=[
                c.StaffView(
                    lot_id=r.lot_id,
                    user_id=r.user_id,
                    assigned_by=r.assigned_by,
                    assigned_at=r.assigned_at,
                )
                for r in rows
            ]
        )

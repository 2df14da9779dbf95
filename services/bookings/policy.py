"""Who may do what to a lot or a booking: the authorization rules, written once, no I/O.

As docs/contract.md ("Who may act") says: a resource the caller has no role on at all
is 404 (its existence is not revealed); one they can see but may not act on is 403.
Lots are visible to every signed-in user, so acting on someone else's lot is 403. A
booking is visible to its driver, the lot's owner and staff, and admins; to anyone
else it does not exist.
"""

import enum
from dataclasses import dataclass

from services.contracts.errors import DomainError

ADMIN, OWNER, EMPLOYEE, DRIVER = "admin", "owner", "employee", "driver"


class Action(enum.Enum):
    """Everything a person can do to a lot or a booking, and who may (the roles on it)."""

    UPDATE_LOT = frozenset({"admin", "owner"})
    MANAGE_STAFF = frozenset({"admin", "owner"})
    SEE_STAFF = frozenset({"admin", "owner", "staff"})
    SEE_BOOKING = frozenset({"admin", "owner", "staff", "driver"})
    RENEW = frozenset({"driver"})
    CANCEL = frozenset({"driver"})
    DECLINE = frozenset({"admin", "owner"})
    VERIFY_PAYMENT = frozenset({"admin", "owner", "staff"})
    REQUEST_CARWASH = frozenset({"driver"})
    RUN_CARWASH = frozenset({"admin", "owner", "staff"})


@dataclass(frozen=True)
class LotPeople:
    """The lot's owner and its assigned staff (user ids)."""

    owner_id: str
    staff_ids: frozenset[str]


def roles_on_lot(user_id: str, roles: list[str], lot: LotPeople) -> set[str]:
    """The caller's roles on a lot: admin (global), owner, staff."""
    out = set()
    if ADMIN in roles:
        out.add("admin")
    if user_id == lot.owner_id:
        out.add("owner")
    if user_id in lot.staff_ids:
        out.add("staff")
    return out


def roles_on_booking(user_id: str, roles: list[str], driver_id: str, lot: LotPeople) -> set[str]:
    """The caller's roles on a booking: its driver, or a role on its lot."""
    out = roles_on_lot(user_id, roles, lot)
    if user_id == driver_id:
        out.add("driver")
    return out


def require_on_lot(
    action: Action, user_id: str, roles: list[str], lot: LotPeople, what: str = "this lot"
) -> None:
    """Raise DomainError 403 unless the caller may do `action` to the (visible) lot."""
    if not roles_on_lot(user_id, roles, lot) & action.value:
        raise DomainError(
            "forbidden", f"You may not do this to {what}: only " + _who(action) + " may."
        )


def require_on_booking(
    action: Action, user_id: str, roles: list[str], driver_id: str, lot: LotPeople, booking_id: str
) -> None:
    """Raise DomainError 404 when the caller has no role on the booking, 403 when they
    see it but `action` is not theirs."""
    mine = roles_on_booking(user_id, roles, driver_id, lot)
    if not mine:
        raise DomainError("not_found", f"No booking with id {booking_id}.")
    if not mine & action.value:
        raise DomainError(
            "forbidden", "You may not do this to this booking: only " + _who(action) + " may."
        )


def _who(action: Action) -> str:
    names = {
        "admin": "an admin",
        "owner": "the lot's owner",
        "staff": "the lot's staff",
        "driver": "its driver",
    }
    return ", ".join(names[r] for r in sorted(action.value))

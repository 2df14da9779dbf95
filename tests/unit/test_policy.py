"""The authorization matrix of bookings, as plain rules: who may do what, 403 vs 404."""

import pytest

from services.bookings.policy import Action, LotPeople, require_on_booking, require_on_lot
from services.contracts.errors import DomainError

LOT_A = LotPeople(owner_id="ownerA", staff_ids=frozenset({"staffA"}))
DRIVER = "driverA"  # has a booking in lot A

# caller -> (user id, global roles)
CALLERS = {
    "driver": ("driverA", ["driver"]),
    "other driver": ("driverB", ["driver"]),
    "lot owner": ("ownerA", ["owner"]),
    "other owner": ("ownerB", ["owner"]),
    "lot employee": ("staffA", ["employee"]),
    "other employee": ("staffB", ["employee"]),
    "admin": ("admin", ["admin"]),
}

# action -> expected outcome per caller: "ok", 403 or 404
BOOKING_MATRIX = {
    Action.SEE_BOOKING: {
        "driver": "ok",
        "other driver": 404,
        "lot owner": "ok",
        "other owner": 404,
        "lot employee": "ok",
        "other employee": 404,
        "admin": "ok",
    },
    Action.RENEW: {
        "driver": "ok",
        "other driver": 404,
        "lot owner": 403,
        "other owner": 404,
        "lot employee": 403,
        "other employee": 404,
        "admin": 403,
    },
    Action.CANCEL: {
        "driver": "ok",
        "other driver": 404,
        "lot owner": 403,
        "other owner": 404,
        "lot employee": 403,
        "other employee": 404,
        "admin": 403,
    },
    Action.DECLINE: {
        "driver": 403,
        "other driver": 404,
        "lot owner": "ok",
        "other owner": 404,
        "lot employee": 403,
        "other employee": 404,
        "admin": "ok",
    },
    Action.VERIFY_PAYMENT: {
        "driver": 403,
        "other driver": 404,
        "lot owner": "ok",
        "other owner": 404,
        "lot employee": "ok",
        "other employee": 404,
        "admin": "ok",
    },
    Action.REQUEST_CARWASH: {
        "driver": "ok",
        "other driver": 404,
        "lot owner": 403,
        "other owner": 404,
        "lot employee": 403,
        "other employee": 404,
        "admin": 403,
    },
    Action.RUN_CARWASH: {
        "driver": 403,
        "other driver": 404,
        "lot owner": "ok",
        "other owner": 404,
        "lot employee": "ok",
        "other employee": 404,
        "admin": "ok",
    },
}

# Lots are visible to everyone, so a missing role on a lot is 403, never 404.
LOT_MATRIX = {
    Action.UPDATE_LOT: {
        "driver": 403,
        "other driver": 403,
        "lot owner": "ok",
        "other owner": 403,
        "lot employee": 403,
        "other employee": 403,
        "admin": "ok",
    },
    Action.MANAGE_STAFF: {
        "driver": 403,
        "other driver": 403,
        "lot owner": "ok",
        "other owner": 403,
        "lot employee": 403,
        "other employee": 403,
        "admin": "ok",
    },
    Action.SEE_STAFF: {
        "driver": 403,
        "other driver": 403,
        "lot owner": "ok",
        "other owner": 403,
        "lot employee": "ok",
        "other employee": 403,
        "admin": "ok",
    },
}


def outcome(fn) -> str | int:
    try:
        fn()
    except DomainError as e:
        return {"forbidden": 403, "not_found": 404}[e.code]
    return "ok"


@pytest.mark.parametrize("action", list(BOOKING_MATRIX))
@pytest.mark.parametrize("caller", list(CALLERS))
def test_booking_matrix(action, caller):
    user_id, roles = CALLERS[caller]
    got = outcome(lambda: require_on_booking(action, user_id, roles, DRIVER, LOT_A, "b1"))
    assert got == BOOKING_MATRIX[action][caller]


@pytest.mark.parametrize("action", list(LOT_MATRIX))
@pytest.mark.parametrize("caller", list(CALLERS))
def test_lot_matrix(action, caller):
    user_id, roles = CALLERS[caller]
    assert (
        outcome(lambda: require_on_lot(action, user_id, roles, LOT_A)) == LOT_MATRIX[action][caller]
    )


def test_every_action_is_in_a_matrix():
    assert set(BOOKING_MATRIX) | set(LOT_MATRIX) == set(Action)


def test_a_refusal_says_who_may():
    with pytest.raises(DomainError, match="the lot's owner"):
        require_on_booking(Action.DECLINE, "staffA", ["employee"], DRIVER, LOT_A, "b1")

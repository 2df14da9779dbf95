"""The input limits (services/contracts/limits.py), no I/O: what the request types
accept and refuse, how a violation is explained, and that the largest valid input
gives messages far below NATS's max payload (1 MiB)."""

import re
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from services.contracts import bookings as c
from services.contracts import limits as lim
from services.contracts import notifier as n
from services.contracts.envelope import new_event
from services.contracts.identity import UserRegisteredData
from services.notifier import domain, paging

MIB = 1024 * 1024
WIDE = "\U0001f697"  # a car: 4 bytes in UTF-8, the most a character takes
ID = "0192a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
ACTOR = {"user_id": ID, "roles": ["owner"]}


def wide(length: int) -> str:
    return WIDE * length


def lot(**changes) -> bytes:
    body = {
        "actor": ACTOR,
        "name": "Lot",
        "address": "1 Street",
        "slot_count": 3,
        "price_per_hour": {"amount": "2.40", "currency": "EUR"},
    } | changes
    return msgspec.json.encode(body)


def refusal(raw: bytes, type_: type) -> tuple[str, str]:
    with pytest.raises(msgspec.ValidationError) as e:
        msgspec.json.decode(raw, type=type_)
    return lim.explain(str(e.value))


def test_the_largest_valid_lot_is_accepted():
    req = msgspec.json.decode(
        lot(
            name=wide(lim.NAME_MAX),
            address="a\u00e9" * (lim.ADDRESS_MAX // 2),
            booking_seconds=lim.BOOKING_SECONDS_MAX,
            warning_seconds=lim.BOOKING_SECONDS_MAX - 1,
            price_per_hour={"amount": lim.AMOUNT_MAX, "currency": "JPY"},
            slot_count=lim.MAX_SLOTS_PER_LOT,
        ),
        type=c.CreateLot,
    )
    assert req.price_per_hour.amount == "9999999.99" and req.slot_count == 5000


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"name": "x" * (lim.NAME_MAX + 1)}, "name", "at most 200 characters"),
        ({"name": ""}, "name", "must not be empty"),
        ({"name": "Lot\u0000"}, "name", "control characters"),
        ({"name": "Lot\nTwo"}, "name", "control characters"),
        ({"address": "x\u009b"}, "address", "control characters"),
        ({"slot_count": "3"}, "slot_count", "an integer or null, not a string"),
        ({"slot_count": 0}, "slot_count", "at least 1"),
        ({"slot_count": lim.MAX_SLOTS_PER_LOT + 1}, "slot_count", "at most 5000"),
        ({"booking_seconds": 10**12}, "booking_seconds", "at most 2592000"),
        ({"booking_seconds": 10**30}, "booking_seconds", "at most 2592000"),
        ({"booking_seconds": 60.5}, "booking_seconds", "an integer, not a number"),
        ({"slot_labels": ["A", "x" * 13], "slot_count": None}, "slot_labels[1]", "at most 12"),
        (
            {"price_per_hour": {"amount": "1" * 31, "currency": "EUR"}},
            "price_per_hour.amount",
            "at most 10 characters",
        ),
        (
            {"price_per_hour": {"amount": "12345678", "currency": "EUR"}},
            "price_per_hour.amount",
            'decimal string like "4.50"',
        ),
        (
            {"price_per_hour": {"amount": "1.234", "currency": "EUR"}},
            "price_per_hour.amount",
            "2 after",
        ),
        (
            {"price_per_hour": {"amount": "-1", "currency": "EUR"}},
            "price_per_hour.amount",
            "no sign",
        ),
        (
            {"price_per_hour": {"amount": 2.4, "currency": "EUR"}},
            "price_per_hour.amount",
            "a string, not a number",
        ),
        (
            {"price_per_hour": {"amount": "2.00", "currency": "XXXX"}},
            "price_per_hour.currency",
            "ISO 4217",
        ),
        (
            {"price_per_hour": {"amount": "2.00", "currency": "eur"}},
            "price_per_hour.currency",
            "ISO 4217",
        ),
        ({"owner": ID}, "owner", "not a known field"),
    ],
)
def test_a_bad_lot_is_refused_naming_the_field(changes, field, says):
    got_field, detail = refusal(lot(**changes), c.CreateLot)
    assert got_field == field
    assert detail.startswith(field) and says in detail, detail


@pytest.mark.parametrize(
    ("type_", "body", "field"),
    [
        (c.CreateVehicle, {"plate": "AB12CD", "label": "Blue\u0000car"}, "label"),
        (c.CreateVehicle, {"plate": "x" * 33}, "plate"),
        (c.DeclineBooking, {"booking_id": ID, "reason": "r" * 501}, "reason"),
        (c.CreateBooking, {"slot_id": ID, "payment_token": "t" * 201}, "payment_token"),
        (c.CreateBooking, {"slot_id": ID + "0"}, "slot_id"),
        (c.ListBookings, {"limit": 201}, "limit"),
        (c.UpdateLot, {"lot_id": ID, "renew_grace_seconds": 10**9}, "renew_grace_seconds"),
        (c.UpdateLot, {"lot_id": ID, "max_renewals": -1}, "max_renewals"),
        (n.AckRequest, {"user_id": ID, "seq": 2**63}, "seq"),
        (n.InboxQuery, {"user_id": ID, "type": "t" * 65}, "type"),
        (n.QuietHours, {"start": "22:00", "end": "07:00", "timezone": "x" * 65}, "timezone"),
        (n.Preferences, {"muted_types": ["a"] * 101}, "muted_types"),
        (n.Audience, {"user_ids": [ID] * (lim.MAX_AUDIENCE_USER_IDS + 1)}, "user_ids"),
    ],
)
def test_every_request_type_bounds_its_fields(type_, body, field):
    fields = {f.name for f in msgspec.structs.fields(type_)}
    if "actor" in fields:
        body = {"actor": ACTOR} | body
    got_field, detail = refusal(msgspec.json.encode(body), type_)
    assert got_field == field and detail.startswith(field), (got_field, detail)


def test_free_text_allows_line_breaks_and_tabs_but_names_do_not():
    ok = {"actor": ACTOR, "booking_id": ID, "reason": "Line one.\n\tLine two.\r\n"}
    assert msgspec.json.decode(msgspec.json.encode(ok), type=c.DeclineBooking).reason
    field, _ = refusal(msgspec.json.encode(ok | {"reason": "bell\u0007"}), c.DeclineBooking)
    assert field == "reason"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Object missing required field `name`", ("name", "name is required.")),
        (
            "Object missing required field `amount` - at `$.price_per_hour`",
            ("price_per_hour.amount", "price_per_hour.amount is required."),
        ),
        ("Expected `object`, got `array`", ("body", "body must be an object, not an array.")),
        (
            "Expected `str` of length <= 200 - at `$.users[3].full_name`",
            ("users[3].full_name", "users[3].full_name must be at most 200 characters."),
        ),
        (
            "Expected `array` of length <= 5000 - at `$.vehicles`",
            ("vehicles", "vehicles must hold at most 5000 items."),
        ),
        ("Invalid enum value 'king' - at `$.level`", ("level", None)),
        ("Something new - at `$.x`", ("x", "x: Something new.")),
    ],
)
def test_explain_names_the_field_and_the_rule(message, expected):
    field, detail = lim.explain(message)
    assert field == expected[0]
    if expected[1] is not None:
        assert detail == expected[1]
    else:
        assert detail.startswith(field) and "king" in detail


def test_currencies_are_iso_4217_codes():
    assert len(set(lim.CURRENCIES)) == len(lim.CURRENCIES) > 150
    assert all(re.fullmatch("[A-Z]{3}", code) for code in lim.CURRENCIES)
    assert {"EUR", "USD", "GBP", "JPY", "CHF", "INR"} <= set(lim.CURRENCIES)
    assert not {"XXX", "XTS", "XAU", "HRK"} & set(lim.CURRENCIES)


# ----- the largest valid input stays far below NATS's max payload -----


def largest_booking_event() -> c.BookingEventData:
    return c.BookingEventData(
        booking_id=ID,
        lot_id=ID,
        lot_name=wide(lim.NAME_MAX),
        slot_id=ID,
        slot_label=wide(lim.SLOT_LABEL_MAX),
        driver_id=ID,
        owner_id=ID,
        vehicle_id=ID,
        status="declined",
        start_time=NOW,
        end_time=NOW,
        version=2**31 - 1,
        renewals=lim.MAX_RENEWALS_MAX,
        booking_seconds=lim.BOOKING_SECONDS_MAX,
        warning_seconds=lim.BOOKING_SECONDS_MAX - 1,
        price=c.Money("9999999999.99", "EUR"),
        payment_method="online",
        payment_status="refunded",
        reason=wide(lim.REASON_MAX),
        renewed_from=ID,
        staff_ids=[ID] * lim.MAX_STAFF_PER_LOT,
    )


def encoded_event(type_: str, data: msgspec.Struct) -> bytes:
    return msgspec.json.encode(new_event(type_, "parkmate/test", data, ID))


def test_the_largest_events_are_far_below_the_max_payload():
    booking = encoded_event("booking.declined", largest_booking_event())
    user = encoded_event(
        "user.registered",
        UserRegisteredData(
            user_id=ID,
            email=wide(lim.EMAIL_MAX),
            full_name=wide(lim.NAME_MAX),
            roles=["driver", "owner", "employee", "admin"],
        ),
    )
    carwash = encoded_event(
        "carwash.requested",
        c.CarwashEventData(
            order_id=ID,
            booking_id=ID,
            lot_id=ID,
            lot_name=wide(lim.NAME_MAX),
            slot_id=ID,
            slot_label=wide(lim.SLOT_LABEL_MAX),
            driver_id=ID,
            owner_id=ID,
            staff_ids=[ID] * lim.MAX_STAFF_PER_LOT,
            status="requested",
            price=c.Money(lim.AMOUNT_MAX),
        ),
    )
    staff = encoded_event(
        "staff.assigned",
        c.StaffEventData(
            lot_id=ID, lot_name=wide(lim.NAME_MAX), owner_id=ID, employee_id=ID, by_user_id=ID
        ),
    )
    sizes = [len(booking), len(user), len(carwash), len(staff)]
    assert max(sizes) < 16 * 1024, sizes


def test_notifications_of_the_largest_event_are_clipped_and_small():
    data = msgspec.json.encode(largest_booking_event())
    facts = domain.facts_of("booking.declined", data)
    # An override may repeat a placeholder many times: the text is clipped, not grown.
    greedy = domain.Template(
        "warning", "high", "{lot_name}" * 20, "{reason} {lot_name}" * (lim.BODY_MAX // 20)
    )
    planned = domain.plan("booking.declined", facts, {("booking.declined", "driver"): greedy})
    assert planned and all(
        len(p.title) == lim.TITLE_MAX and len(p.body) == lim.BODY_MAX for p in planned
    )
    live = n.LiveNotification(
        notification=n.Notification(
            id=ID,
            seq=lim.SEQ_MAX,
            type="booking.declined",
            level="warning",
            priority="high",
            title=planned[0].title,
            body=planned[0].body,
            data=planned[0].data,
            created_at=NOW,
        ),
        unread_count=2**31,
    )
    assert len(msgspec.json.encode(live)) < 16 * 1024


def largest_admin_notification(seq: int) -> n.Notification:
    data = {f"k{i:02}": "v" * 100 for i in range(lim.MAX_DATA_KEYS)}
    assert len(msgspec.json.encode(data)) <= lim.DATA_MAX_BYTES
    return n.Notification(
        id=ID,
        seq=seq,
        type="announcement",
        level="info",
        priority="urgent",
        title=wide(lim.TITLE_MAX),
        body=wide(lim.BODY_MAX),
        data=data,
        created_at=NOW,
        expires_at=NOW,
    )


def test_an_inbox_page_of_the_largest_notifications_ends_before_the_byte_budget():
    items = [largest_admin_notification(s) for s in range(lim.PAGE_MAX, 0, -1)]
    assert len(msgspec.json.encode(items[0])) < 16 * 1024
    kept = paging.fitting(items)
    assert 1 <= kept < len(items)
    assert len(msgspec.json.encode(n.NotificationList(items=items[:kept], more=True))) <= (
        lim.PAGE_BYTES_MAX + 64
    )
    small = [msgspec.structs.replace(i, title="t", body="b", data={}) for i in items]
    assert paging.fitting(small) == len(small)


def test_the_largest_lot_fits_in_one_reply():
    slots = [
        c.SlotView(id=ID, label=wide(lim.SLOT_LABEL_MAX), status="booked", booked_until=NOW)
        for _ in range(lim.MAX_SLOTS_PER_LOT)
    ]
    view = c.LotView(
        id=ID,
        owner_id=ID,
        name=wide(lim.NAME_MAX),
        address=wide(lim.ADDRESS_MAX),
        booking_seconds=lim.BOOKING_SECONDS_MAX,
        warning_seconds=lim.BOOKING_SECONDS_MAX - 1,
        renew_grace_seconds=lim.RENEW_GRACE_SECONDS_MAX,
        max_renewals=lim.MAX_RENEWALS_MAX,
        price_per_hour=c.Money(lim.AMOUNT_MAX),
        carwash_price=c.Money(lim.AMOUNT_MAX),
        total_slots=lim.MAX_SLOTS_PER_LOT,
        free_slots=0,
        created_at=NOW,
        slots=slots,
    )
    assert len(msgspec.json.encode(view)) < 0.9 * MIB


# ----- docs/api-limits.md says what the code does -----


def test_the_limits_page_states_every_constant_with_its_value():
    page = (Path(__file__).parents[2] / "docs" / "api-limits.md").read_text()
    stated = {
        name: int(value.replace(",", ""))
        for name, value in re.findall(r"`([A-Z][A-Z_]+)` = ([0-9][0-9,]*)", page)
    }
    numbers = {
        name: value
        for name, value in vars(lim).items()
        if name.isupper() and isinstance(value, int) and not name.startswith("_")
    }
    assert set(stated) == set(numbers), set(stated) ^ set(numbers)
    assert stated == numbers
    assert lim.AMOUNT_MAX in page and " ".join(lim.CURRENCIES[:3]) in page

"""Who hears about an event, and what they read: no I/O.

Each (event type, audience) has a template: level, priority, and a title and body with
named placeholders (`{slot_label}`) filled from the event's data. `plan` turns one
event into the notifications to store, one per recipient. Recipients come from the
event's data alone (driver, lot owner, lot staff, employee), so the notifier never
calls back.
"""

import string
from dataclasses import dataclass
from typing import Any

import msgspec

from services.contracts import subjects as s
from services.contracts.bookings import (
    BookingEventData,
    CarwashEventData,
    PaymentFailedData,
    StaffEventData,
)
from services.contracts.limits import BODY_MAX, TITLE_MAX
from services.notifier.servable import clip

DRIVER, OWNER, STAFF, EMPLOYEE = "driver", "owner", "staff", "employee"
RENEW_HINT = "Renew it to stay: POST /api/v1/bookings/{booking_id}/renew."


@dataclass(frozen=True)
class Template:
    """How one audience is told about one event type (placeholders in `{}`)."""

    level: str
    priority: str
    title: str
    body: str


DEFAULT_TEMPLATES: dict[tuple[str, str], Template] = {
    (s.BOOKING_CREATED, DRIVER): Template(
        "success",
        "normal",
        "Booking confirmed",
        "Slot {slot_label} at {lot_name} is yours until {end_time_hm} UTC.",
    ),
    (s.BOOKING_CREATED, OWNER): Template(
        "info",
        "normal",
        "New booking",
        "Slot {slot_label} at {lot_name} was booked until {end_time_hm} UTC.",
    ),
    (s.BOOKING_EXPIRING, DRIVER): Template(
        "warning",
        "high",
        "Your booking ends soon",
        "Slot {slot_label} at {lot_name} ends at {end_time_hm} UTC, in {time_left}. " + RENEW_HINT,
    ),
    (s.BOOKING_EXPIRED, DRIVER): Template(
        "info",
        "normal",
        "Booking ended",
        "Your booking of slot {slot_label} at {lot_name} has ended and the slot was released.",
    ),
    (s.BOOKING_EXPIRED, OWNER): Template(
        "warning",
        "low",
        "Slot released",
        "Slot {slot_label} at {lot_name} is free again: its booking ended.",
    ),
    (s.BOOKING_RENEWED, DRIVER): Template(
        "success",
        "normal",
        "Booking renewed",
        "Slot {slot_label} at {lot_name} is yours until {end_time_hm} UTC.",
    ),
    (s.BOOKING_RENEWAL_FAILED, DRIVER): Template(
        "error",
        "high",
        "Renewal failed",
        "Your booking of slot {slot_label} at {lot_name} could not be renewed: {reason}.",
    ),
    (s.BOOKING_DECLINED, DRIVER): Template(
        "warning",
        "high",
        "Booking declined",
        "Your booking of slot {slot_label} at {lot_name} was declined: {reason}.",
    ),
    (s.BOOKING_CANCELLED, OWNER): Template(
        "info",
        "low",
        "Booking cancelled",
        "The booking of slot {slot_label} at {lot_name} was cancelled; the slot is free.",
    ),
    (s.PAYMENT_VERIFIED, DRIVER): Template(
        "success",
        "normal",
        "Payment verified",
        "Your cash payment of {amount} {currency} for slot {slot_label} at {lot_name} "
        "was verified.",
    ),
    (s.PAYMENT_FAILED, DRIVER): Template(
        "error",
        "high",
        "Payment failed",
        "Your payment of {amount} {currency} for slot {slot_label} at {lot_name} failed: {reason}.",
    ),
    (s.CARWASH_REQUESTED, STAFF): Template(
        "info",
        "normal",
        "Car wash requested",
        "A car wash was ordered for slot {slot_label} at {lot_name}.",
    ),
    (s.CARWASH_REQUESTED, OWNER): Template(
        "info",
        "normal",
        "Car wash requested",
        "A car wash was ordered for slot {slot_label} at {lot_name}.",
    ),
    (s.CARWASH_COMPLETED, DRIVER): Template(
        "success",
        "normal",
        "Car wash done",
        "Your car in slot {slot_label} at {lot_name} has been washed.",
    ),
    (s.STAFF_ASSIGNED, OWNER): Template(
        "info", "normal", "Staff assigned", "An employee was assigned to {lot_name}."
    ),
    (s.STAFF_ASSIGNED, EMPLOYEE): Template(
        "info",
        "normal",
        "You were assigned to a lot",
        "You now work at {lot_name}: you can verify cash payments and run car washes there.",
    ),
}

EVENT_TYPES = {t for t, _ in DEFAULT_TEMPLATES}


def placeholders(text: str) -> set[str]:
    """Names used as `{name}` in `text`."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


class _KeepUnknown(dict):
    """Template fields; a placeholder with no field stays as written. A class of the
    module, not of `render`: making a class per call was 3.8% of the notifier's CPU
    on the replay's busiest hour (py-spy)."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def render(template: Template, fields: dict[str, Any]) -> tuple[str, str]:
    """(title, body) with placeholders filled; unknown ones stay visible as `{name}`.

    Clipped to TITLE_MAX and BODY_MAX characters (ending in an ellipsis): a template may
    use a placeholder many times, and a notification stays as small as an admin's."""
    values = _KeepUnknown(fields)
    return (
        clip(template.title.format_map(values), TITLE_MAX),
        clip(template.body.format_map(values), BODY_MAX),
    )


@dataclass(frozen=True)
class Planned:
    """One notification to store for `user_id`."""

    user_id: str
    type: str
    level: str
    priority: str
    title: str
    body: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Facts:
    """What an event says, flattened: placeholder values, link ids, who is who."""

    fields: dict[str, Any]
    link: dict[str, Any]
    audiences: dict[str, list[str]]


def _iso(value) -> str:
    return value.isoformat().replace("+00:00", "Z")


def time_left(seconds: int) -> str:
    """A warning's lead time in words: "5 min", "1 h 30 min", or "45 s" under a minute."""
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h" + (f" {minutes} min" if minutes else "")


def booking_facts(d: BookingEventData) -> Facts:
    fields = {
        "booking_id": d.booking_id,
        "lot_id": d.lot_id,
        "lot_name": d.lot_name,
        "slot_id": d.slot_id,
        "slot_label": d.slot_label,
        "end_time": _iso(d.end_time),
        "end_time_hm": d.end_time.strftime("%H:%M:%S"),
        "minutes_left": max(1, round(d.warning_seconds / 60)),
        "time_left": time_left(d.warning_seconds),
        "reason": d.reason or "",
        "amount": d.price.amount,
        "currency": d.price.currency,
        "renewals": d.renewals,
    }
    link = {
        "booking_id": d.booking_id,
        "lot_id": d.lot_id,
        "slot_id": d.slot_id,
        "slot_label": d.slot_label,
        "lot_name": d.lot_name,
        "end_time": fields["end_time"],
    }
    if d.reason:
        link["reason"] = d.reason
    if d.renewed_from:
        link["renewed_from"] = d.renewed_from
    return Facts(
        fields, link, {DRIVER: [d.driver_id], OWNER: [d.owner_id], STAFF: list(d.staff_ids)}
    )


def payment_failed_facts(d: PaymentFailedData) -> Facts:
    fields = {
        "booking_id": d.booking_id or "",
        "lot_id": d.lot_id,
        "lot_name": d.lot_name,
        "slot_id": d.slot_id,
        "slot_label": d.slot_label,
        "reason": d.reason,
        "amount": d.amount.amount,
        "currency": d.amount.currency,
    }
    link = {
        "booking_id": d.booking_id,
        "lot_id": d.lot_id,
        "slot_id": d.slot_id,
        "slot_label": d.slot_label,
        "lot_name": d.lot_name,
        "reason": d.reason,
    }
    return Facts(fields, link, {DRIVER: [d.driver_id], OWNER: [d.owner_id]})


def carwash_facts(d: CarwashEventData) -> Facts:
    fields = {
        "order_id": d.order_id,
        "booking_id": d.booking_id,
        "lot_id": d.lot_id,
        "lot_name": d.lot_name,
        "slot_id": d.slot_id,
        "slot_label": d.slot_label,
        "amount": d.price.amount,
        "currency": d.price.currency,
        "status": d.status,
    }
    link = {
        "order_id": d.order_id,
        "booking_id": d.booking_id,
        "lot_id": d.lot_id,
        "slot_id": d.slot_id,
        "slot_label": d.slot_label,
        "lot_name": d.lot_name,
    }
    return Facts(
        fields, link, {DRIVER: [d.driver_id], OWNER: [d.owner_id], STAFF: list(d.staff_ids)}
    )


def staff_facts(d: StaffEventData) -> Facts:
    fields = {"lot_id": d.lot_id, "lot_name": d.lot_name, "employee_id": d.employee_id}
    link = {"lot_id": d.lot_id, "lot_name": d.lot_name, "employee_id": d.employee_id}
    return Facts(fields, link, {OWNER: [d.owner_id], EMPLOYEE: [d.employee_id]})


_DECODERS = {
    BookingEventData: (msgspec.json.Decoder(BookingEventData), booking_facts),
    PaymentFailedData: (msgspec.json.Decoder(PaymentFailedData), payment_failed_facts),
    CarwashEventData: (msgspec.json.Decoder(CarwashEventData), carwash_facts),
    StaffEventData: (msgspec.json.Decoder(StaffEventData), staff_facts),
}

DATA_TYPES: dict[str, type] = {
    s.PAYMENT_FAILED: PaymentFailedData,
    s.CARWASH_REQUESTED: CarwashEventData,
    s.CARWASH_STARTED: CarwashEventData,
    s.CARWASH_COMPLETED: CarwashEventData,
    s.STAFF_ASSIGNED: StaffEventData,
    s.STAFF_UNASSIGNED: StaffEventData,
}


def facts_of(event_type: str, raw_data: bytes) -> Facts:
    """Decode an event's `data` by its type; raises msgspec errors on a bad payload."""
    decoder, facts = _DECODERS[DATA_TYPES.get(event_type, BookingEventData)]
    return facts(decoder.decode(raw_data))


def plan(
    event_type: str, facts: Facts, templates: dict[tuple[str, str], Template] = DEFAULT_TEMPLATES
) -> list[Planned]:
    """The notifications an event causes, one per recipient, per its audiences' templates.

    A person in several audiences of one event (an owner parking in their own lot, an
    owner who is also staff) hears it once, through the first audience that names them.
    """
    seen: set[str] = set()
    out = []
    for (type_, audience), template in templates.items():
        if type_ != event_type:
            continue
        title, body = render(template, facts.fields)
        for user_id in facts.audiences.get(audience, []):
            if user_id in seen:
                continue
            seen.add(user_id)
            out.append(
                Planned(
                    user_id,
                    event_type,
                    template.level,
                    template.priority,
                    title,
                    body,
                    dict(facts.link),
                )
            )
    return out

"""Which message travels on which subject: the catalog the AsyncAPI document is built from.

Domain events (CloudEvents on stream EVENTS, subject = type) map to their `data` Struct;
live subjects and timer subjects map to their message Struct. Request/reply subjects
are listed by the services that serve them (see services/asyncapi.py).
"""

from dataclasses import dataclass

from services.contracts import bookings, identity, notifier, subjects, timers


@dataclass(frozen=True)
class EventChannel:
    """A domain event: CloudEvents envelope whose `data` is `data_type`."""

    subject: str
    data_type: type
    producer: str
    summary: str


@dataclass(frozen=True)
class PlainChannel:
    """A subject carrying `message` as plain JSON (a tuple: one of several types, told
    apart by their `type` field); `{name}` parts are parameters."""

    address: str
    message: type | tuple[type, ...]
    producer: str
    summary: str


B = bookings.BookingEventData
EVENTS = [
    EventChannel(subjects.BOOKING_CREATED, B, "bookings", "A slot was booked."),
    EventChannel(
        subjects.BOOKING_RENEWED,
        B,
        "bookings",
        "A booking was extended, or an expired one rebooked (`renewed_from`).",
    ),
    EventChannel(
        subjects.BOOKING_RENEWAL_FAILED, B, "bookings", "A renewal was refused; `reason` says why."
    ),
    EventChannel(
        subjects.BOOKING_EXPIRING,
        B,
        "bookings",
        "The booking ends in warning_seconds (fired by its timer).",
    ),
    EventChannel(
        subjects.BOOKING_EXPIRED,
        B,
        "bookings",
        "The booking ended on the server; the slot is free.",
    ),
    EventChannel(subjects.BOOKING_CANCELLED, B, "bookings", "The driver cancelled."),
    EventChannel(
        subjects.BOOKING_DECLINED,
        B,
        "bookings",
        "The lot owner or an admin declined, with `reason`.",
    ),
    EventChannel(subjects.PAYMENT_VERIFIED, B, "bookings", "A cash payment was verified."),
    EventChannel(
        subjects.PAYMENT_FAILED,
        bookings.PaymentFailedData,
        "bookings",
        "An online charge was declined.",
    ),
    EventChannel(
        subjects.CARWASH_REQUESTED, bookings.CarwashEventData, "bookings", "A car wash was ordered."
    ),
    EventChannel(
        subjects.CARWASH_STARTED, bookings.CarwashEventData, "bookings", "Staff started a car wash."
    ),
    EventChannel(
        subjects.CARWASH_COMPLETED, bookings.CarwashEventData, "bookings", "A car wash is done."
    ),
    EventChannel(
        subjects.STAFF_ASSIGNED,
        bookings.StaffEventData,
        "bookings",
        "An employee was assigned to a lot.",
    ),
    EventChannel(
        subjects.STAFF_UNASSIGNED,
        bookings.StaffEventData,
        "bookings",
        "An employee was removed from a lot.",
    ),
    EventChannel(
        subjects.USER_REGISTERED, identity.UserRegisteredData, "api", "A user account was created."
    ),
]

PLAIN = [
    PlainChannel(
        "timers.schedule.booking.{booking_id}.{kind}",
        timers.TimerFired,
        "timers",
        "A pending message schedule (stream TIMERS, header `Nats-Schedule: @at "
        "<time>`); replaced on renewal, purged on cancel, decline and expiry.",
    ),
    PlainChannel(
        "timers.fired.booking.{kind}.{booking_id}",
        timers.TimerFired,
        "nats-server",
        "Published by the NATS server when a schedule is due; "
        "consumed by bookings, which drops stale fires.",
    ),
    PlainChannel(
        "slots.lot.{lot_id}",
        bookings.SlotUpdate,
        "bookings",
        "Live availability of a lot's slots (core NATS, no personal data).",
    ),
    PlainChannel(
        "notify.user.{user_id}",
        (notifier.LiveNotification, notifier.LiveUnreadCount, notifier.LiveUpdate),
        "notifier",
        "Live messages of one user's inbox (core NATS), published after each commit: a "
        "stored notification (`push` false when preferences silence it) with the unread "
        "count, an unread count, or read/deleted updates; the api relays them to the "
        "user's sockets.",
    ),
    PlainChannel(
        "notify.sync",
        notifier.SyncAnnouncement,
        "notifier",
        "A notifier started or reconnected to NATS (core NATS): live messages it "
        "published around then may be lost, so each api gateway checks its sockets "
        "against the inbox (notifier.inbox.summaries) and fills the gaps.",
    ),
]

"""Every NATS subject and JetStream name Parkmate uses, in one place.

Domain events: subject = CloudEvents `type`, stored on stream EVENTS.
Timers: schedules and their fired messages live on stream TIMERS (they must share a
stream, see docs/nats.md, "Streams"). Request/reply: NATS micro services `bookings` and
`notifier`. Live per-user messages: core NATS `notify.user.<user_id>`.
"""

from typing import Literal

EVENTS_STREAM = "EVENTS"
TIMERS_STREAM = "TIMERS"

# Domain event types (= subjects on EVENTS).
BOOKING_CREATED = "booking.created"
BOOKING_RENEWED = "booking.renewed"
BOOKING_RENEWAL_FAILED = "booking.renewal_failed"
BOOKING_EXPIRING = "booking.expiring"
BOOKING_EXPIRED = "booking.expired"
BOOKING_CANCELLED = "booking.cancelled"
BOOKING_DECLINED = "booking.declined"
PAYMENT_VERIFIED = "payment.verified"
PAYMENT_FAILED = "payment.failed"
CARWASH_REQUESTED = "carwash.requested"
CARWASH_STARTED = "carwash.started"
CARWASH_COMPLETED = "carwash.completed"
STAFF_ASSIGNED = "staff.assigned"
STAFF_UNASSIGNED = "staff.unassigned"
USER_REGISTERED = "user.registered"

EVENTS_SUBJECTS = ["booking.>", "payment.>", "carwash.>", "staff.>", "user.>"]

# Timers.
TimerKind = Literal["warning", "expiry"]
TIMERS_SUBJECTS = ["timers.>"]
TIMERS_FIRED_BOOKING = "timers.fired.booking.>"


def timer_schedule_subject(booking_id: str, kind: TimerKind) -> str:
    """Subject holding the pending schedule of one booking timer; republished to replace."""
    return f"timers.schedule.booking.{booking_id}.{kind}"


def timer_schedules_of(booking_id: str) -> str:
    """Wildcard matching every pending schedule of a booking, used to purge them."""
    return f"timers.schedule.booking.{booking_id}.>"


def timer_fired_subject(booking_id: str, kind: TimerKind) -> str:
    """Target subject the server publishes a due schedule to."""
    return f"timers.fired.booking.{kind}.{booking_id}"


# Durable consumers; each one's dead letters go to dead.<durable>.
DURABLE_BOOKINGS_TIMERS = "bookings-timers"  # bookings, fired timers on TIMERS
DURABLE_TIMERS = "timers"  # timers, booking events on EVENTS
DURABLE_NOTIFIER = "notifier"  # notifier, every event on EVENTS
DURABLE_NOTIFIER_USERS = "notifier-users"  # notifier, user.registered on EVENTS
DURABLES = (DURABLE_BOOKINGS_TIMERS, DURABLE_TIMERS, DURABLE_NOTIFIER, DURABLE_NOTIFIER_USERS)

# Dead letters: consumer messages that could not be handled (docs/failure-modes.md).
DEAD_STREAM = "DEAD"
DEAD_SUBJECTS = ["dead.>"]


def dead_letter_subject(durable: str) -> str:
    """Subject on DEAD of a message the durable consumer `durable` gave up on."""
    return f"dead.{durable}"


# Request/reply (NATS micro services).
BOOKINGS_SERVICE = "bookings"
BOOKINGS_LOT_CREATE = "bookings.lot.create"
BOOKINGS_LOT_LIST = "bookings.lot.list"
BOOKINGS_LOT_GET = "bookings.lot.get"
BOOKINGS_SLOT_LIST = "bookings.slot.list"
BOOKINGS_BOOKING_CREATE = "bookings.booking.create"
BOOKINGS_BOOKING_LIST = "bookings.booking.list"
BOOKINGS_BOOKING_GET = "bookings.booking.get"
BOOKINGS_LOT_UPDATE = "bookings.lot.update"
BOOKINGS_SLOT_ADD = "bookings.slot.add"
BOOKINGS_SLOT_REMOVE = "bookings.slot.remove"
BOOKINGS_STAFF_ASSIGN = "bookings.staff.assign"
BOOKINGS_STAFF_UNASSIGN = "bookings.staff.unassign"
BOOKINGS_STAFF_LIST = "bookings.staff.list"
BOOKINGS_VEHICLE_CREATE = "bookings.vehicle.create"
BOOKINGS_VEHICLE_LIST = "bookings.vehicle.list"
BOOKINGS_BOOKING_RENEW = "bookings.booking.renew"
BOOKINGS_BOOKING_CANCEL = "bookings.booking.cancel"
BOOKINGS_BOOKING_DECLINE = "bookings.booking.decline"
BOOKINGS_PAYMENT_VERIFY = "bookings.payment.verify"
BOOKINGS_CARWASH_REQUEST = "bookings.carwash.request"
BOOKINGS_CARWASH_STEP = "bookings.carwash.step"

NOTIFIER_SERVICE = "notifier"
NOTIFIER_INBOX_SUMMARY = "notifier.inbox.summary"
NOTIFIER_INBOX_LIST = "notifier.inbox.list"

# Live messages.
SLOTS_LOT_PREFIX = "slots.lot."


def slots_lot_subject(lot_id: str) -> str:
    """Core NATS subject of a lot's live slot availability (SlotUpdate messages)."""
    return f"{SLOTS_LOT_PREFIX}{lot_id}"


NOTIFY_USER_PREFIX = "notify.user."
NOTIFY_USER_WILDCARD = "notify.user.*"
# A notifier publishes here when it starts or reconnects to NATS: live messages it
# published around that moment may be lost, so every api gateway checks its sockets
# against the inbox (services/api/gateway.py).
NOTIFY_SYNC = "notify.sync"


def notify_user_subject(user_id: str) -> str:
    """Core NATS subject carrying one user's live messages (any api replica may listen)."""
    return f"{NOTIFY_USER_PREFIX}{user_id}"


# Notifier: inbox, preferences, templates and admin sends (request/reply), appended
# for the notification center.
NOTIFIER_INBOX_QUERY = "notifier.inbox.query"
NOTIFIER_INBOX_READ = "notifier.inbox.read"
NOTIFIER_INBOX_READ_ALL = "notifier.inbox.read_all"
NOTIFIER_INBOX_DELETE = "notifier.inbox.delete"
NOTIFIER_INBOX_CLEAR_READ = "notifier.inbox.clear_read"
NOTIFIER_INBOX_ACK = "notifier.inbox.ack"
NOTIFIER_INBOX_ACK_BATCH = "notifier.inbox.ack_batch"
NOTIFIER_INBOX_SUMMARIES = "notifier.inbox.summaries"
NOTIFIER_PREFS_GET = "notifier.prefs.get"
NOTIFIER_PREFS_PUT = "notifier.prefs.put"
NOTIFIER_TEMPLATES_LIST = "notifier.templates.list"
NOTIFIER_TEMPLATES_PUT = "notifier.templates.put"
NOTIFIER_TEMPLATES_RESET = "notifier.templates.reset"
NOTIFIER_ADMIN_SEND = "notifier.admin.send"

# Bulk set-up for operators and load replays (appended for `parkmate replay`).
BOOKINGS_VEHICLE_BULK = "bookings.vehicle.bulk"

"""Prometheus metrics shared by the services (one registry per process).

Names follow Prometheus conventions: `parkmate_` prefix, base units (seconds), `_total`
for counters. Labels are bounded sets (subject names, outcomes), never ids.
"""

import re

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "parkmate_requests_total", "Request/reply requests handled", ["service", "subject", "outcome"]
)
REQUEST_SECONDS = Histogram(
    "parkmate_request_seconds", "Request handling time", ["service", "subject"]
)
MESSAGES = Counter(
    "parkmate_consumer_messages_total", "JetStream messages handled", ["durable", "outcome"]
)
CONSUMER_PENDING = Gauge(
    "parkmate_consumer_pending_messages",
    "Messages on the stream that a durable consumer has not delivered yet (its lag), as "
    "this replica last saw it; replicas of one durable report the same number",
    ["durable"],
)
OUTBOX_PUBLISHED = Counter(
    "parkmate_outbox_published_total", "Events published from an outbox", ["schema"]
)
OUTBOX_PENDING = Gauge(
    "parkmate_outbox_pending",
    "Unpublished rows in a schema's outbox, counted at this replica's last poll; "
    "replicas sharing a schema report the same number",
    ["schema"],
)
NOTIFICATION_LATENCY = Histogram(
    "parkmate_notification_latency_seconds",
    "A notification's created_at to its publication on notify.user.<id> by the notifier "
    "(stage=notifier), or to its frame handed to the user's sockets by an api "
    "(stage=gateway)",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DEAD_LETTERS = Counter(
    "parkmate_dead_letters_total",
    "Messages given up on: outbox rows that could not be published, consumer messages "
    "that could not be handled (docs/failure-modes.md)",
    ["service", "subject"],
)
TIMER_LATENESS = Histogram(
    "parkmate_timer_lateness_seconds",
    "Fired timer arrival at bookings minus its scheduled time",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
WEBSOCKETS = Gauge("parkmate_websockets", "Open WebSocket connections in this api process")
WS_REPAIRS = Counter(
    "parkmate_ws_repairs_total",
    "Sockets filled from the inbox because the live path lost a message (kind: gap, "
    "catch_up), or closed with 1013 because the inbox could not fill them (failed)",
    ["kind"],
)
WS_CATCH_UPS = Counter(
    "parkmate_ws_catch_ups_total",
    "Checks of every socket against the inbox, by what triggered them",
    ["reason"],
)
API_IN_FLIGHT = Gauge(
    "parkmate_api_requests_in_flight",
    "HTTP requests this api process is serving (bounded by PARKMATE_MAX_INFLIGHT)",
)
API_WAITING = Gauge(
    "parkmate_api_requests_waiting",
    "HTTP requests waiting for a turn (at most PARKMATE_QUEUE_SECONDS each)",
)
API_REJECTED = Counter(
    "parkmate_api_overload_rejections_total",
    "HTTP requests answered 503 because no turn came within PARKMATE_QUEUE_SECONDS",
)


_ID_TOKEN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)


def subject_label(subject: str) -> str:
    """`subject` with its id tokens (UUIDs) replaced by `*`, so a label stays a bounded
    set: 'timers.fired.booking.expiry.<uuid>' -> 'timers.fired.booking.expiry.*'."""
    return ".".join("*" if _ID_TOKEN.fullmatch(t) else t for t in subject.split("."))

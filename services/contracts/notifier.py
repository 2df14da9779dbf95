"""Messages produced by the notifier: live messages, inbox, preferences, templates and
admin-send request/reply types (docs/contract.md, "Notifications"; docs/websocket.md).

Requests reach the NATS micro service `notifier` (subjects `NOTIFIER_*` in
`subjects.py`). Inbox requests carry the `user_id` the api took from a verified token;
admin requests carry the acting user (`Actor`). Errors come back as micro service
errors whose code is one of `errors.ErrorCode`.
"""

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from services.contracts.bookings import Actor
from services.contracts.limits import (
    MAX_AUDIENCE_USER_IDS,
    MAX_DATA_KEYS,
    MAX_MUTED_TYPES,
    MAX_ROLES,
    Body,
    Cursor,
    Id,
    NotificationType,
    PageLimit,
    Role,
    Seq,
    TemplateAudience,
    TimeOfDay,
    TimeZone,
    Title,
)

Level = Literal["success", "info", "warning", "error"]
Priority = Literal["low", "normal", "high", "urgent"]

# Notification types of admin sends (the others are event types such as booking.expiring).
ADMIN_MESSAGE = "admin.message"  # to user ids
ADMIN_ALERT = "admin.alert"  # to roles
ANNOUNCEMENT = "announcement"  # to everyone
ADMIN_TYPES = (ADMIN_MESSAGE, ADMIN_ALERT, ANNOUNCEMENT)


class Notification(msgspec.Struct, kw_only=True):
    """One inbox entry. `seq` grows by one per user per notification, starting at 1.

    Times are UTC datetimes. `delivered_at` is set when a socket acknowledged the seq
    (`ack` frame); `silent` is true when the user's preferences (muted type, quiet hours,
    websocket off) kept it from being pushed live; `expires_at` is set on announcements
    that expire (they leave every inbox then). `truncated` is true when the stored
    notification could not be served as it is (one stored before the limits existed,
    or written straight into the table): its title and body are cut to TITLE_MAX and
    BODY_MAX characters, its `data` to MAX_DATA_KEYS keys and DATA_MAX_BYTES bytes as
    JSON (or `{}` when it is not an object), an unknown level or priority reads as
    `info` or `normal` (services/notifier/servable.py).
    """

    id: str
    seq: int
    type: str
    level: Level
    priority: Priority
    title: str
    body: str
    data: dict[str, Any]
    created_at: datetime
    read_at: datetime | None = None
    delivered_at: datetime | None = None
    expires_at: datetime | None = None
    silent: bool = False
    truncated: bool = False


# ----- live messages on notify.user.<user_id> (a tagged union, field `type`) -----
#
# `version` counts every change of a user's inbox (new, read, deleted); the gateway
# drops an `unread_count` older than one it already sent, so counts published by
# different notifier replicas cannot go backwards on a socket.


class LiveNotification(msgspec.Struct, tag="notification", tag_field="type", kw_only=True):
    """A notification was stored. `push` is false when preferences silence it: the
    gateway then only updates the count (and uses the seq to see there is no gap)."""

    notification: Notification
    push: bool = True
    unread_count: int | None = None
    version: int = 0


class LiveUnreadCount(msgspec.Struct, tag="unread_count", tag_field="type", kw_only=True):
    """The user's unread count after a change at inbox `version`."""

    count: int
    version: int = 0


class LiveUpdate(msgspec.Struct, tag="notification_update", tag_field="type", kw_only=True):
    """Notifications changed. With `id`: that one was read (`read_at`) or `deleted`.
    Without `id`: every notification with seq <= `up_to_seq` that was unread is now read
    (`deleted` false, mark-all-read) or every read one is gone (`deleted` true, clear)."""

    id: str | None = None
    read_at: datetime | None = None
    deleted: bool = False
    up_to_seq: int | None = None


Live = LiveNotification | LiveUnreadCount | LiveUpdate


# ----- inbox requests -----


class InboxSummaryRequest(msgspec.Struct):
    user_id: str


class InboxSummary(msgspec.Struct):
    """`unread_count`, the user's highest `seq` (0 when they have none) and the inbox
    `version` both were read at."""

    unread_count: int
    last_seq: int
    version: int = 0


class InboxAfterRequest(msgspec.Struct):
    """Notifications with seq > after_seq (and <= `up_to_seq` when given), ascending,
    at most `limit`."""

    user_id: str
    after_seq: int
    limit: int = 200
    up_to_seq: int | None = None


class NotificationList(msgspec.Struct):
    """`more` is true when the list ended early to stay small (PAGE_BYTES_MAX): ask
    again after the last seq even though fewer than `limit` came."""

    items: list[Notification]
    more: bool = False


class InboxSummariesRequest(msgspec.Struct):
    """Up to 1,000 users whose summaries the gateway wants: for the `hello` of many
    sockets opening at once, and to find sockets behind their inbox after live
    messages may have been lost."""

    user_ids: list[str]


class InboxSummaries(msgspec.Struct):
    """`items[i]` is the summary of `user_ids[i]` (all zero for a user with none)."""

    items: list[InboxSummary]


class SyncAnnouncement(msgspec.Struct, kw_only=True):
    """On notify.sync: the notifier `instance` started or reconnected to NATS, so live
    messages it published around then may be lost; gateways check their sockets."""

    instance: str
    reason: str


class InboxQuery(msgspec.Struct, kw_only=True):
    """A page of the inbox, newest first. `cursor` is the opaque `next_cursor` of the
    previous page; `unread` true keeps unread ones only; `type` keeps one type."""

    user_id: str
    unread: bool = False
    type: NotificationType | None = None
    limit: PageLimit = 50
    cursor: Cursor | None = None


class NotificationPage(msgspec.Struct):
    """`next_cursor` is null on the last page. A page may hold fewer than `limit`
    items when they are large (PAGE_BYTES_MAX); `next_cursor` then goes on."""

    items: list[Notification]
    next_cursor: str | None = None


class NotificationRef(msgspec.Struct):
    """One notification of `user_id` (mark read, delete)."""

    user_id: str
    id: Id


class UserRef(msgspec.Struct):
    """All of `user_id`'s notifications (mark all read, clear read)."""

    user_id: str


class AckRequest(msgspec.Struct):
    """A socket received notification `seq`: record `delivered_at`."""

    user_id: str
    seq: Seq


class AckBatch(msgspec.Struct):
    """Acks of many sockets, gathered by an api gateway for a few milliseconds (at most
    1,000): record `delivered_at` of each (user_id, seq), as `AckRequest` does."""

    items: list[AckRequest]


class AckBatchResult(msgspec.Struct):
    """`missing`: indexes into the request's `items` whose user has no such seq."""

    missing: list[int]


class Changed(msgspec.Struct):
    """How many notifications an action changed, and the unread count after it."""

    changed: int
    unread_count: int


class UnreadCount(msgspec.Struct):
    count: int


class Acked(msgspec.Struct):
    """`seq` is recorded as delivered at `delivered_at` (the first ack's time)."""

    seq: int
    delivered_at: datetime


# ----- preferences -----


class QuietHours(msgspec.Struct, forbid_unknown_fields=True):
    """Local wall-clock times "HH:MM" (24 h) in IANA `timezone`; `end` may be earlier
    than `start` (the window spans midnight)."""

    start: TimeOfDay
    end: TimeOfDay
    timezone: TimeZone


class Preferences(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What reaches a user live. Muted types and quiet hours keep notifications in the
    inbox (unread) without a live `notification` frame; `urgent` ignores both.
    `websocket` false stops every live `notification` frame, urgent ones included."""

    muted_types: Annotated[list[NotificationType], msgspec.Meta(max_length=MAX_MUTED_TYPES)] = []
    quiet_hours: QuietHours | None = None
    websocket: bool = True


class PreferencesRequest(msgspec.Struct):
    user_id: str


class PutPreferences(msgspec.Struct):
    user_id: str
    preferences: Preferences


# ----- templates (admin) -----


class TemplateText(msgspec.Struct, kw_only=True):
    level: Level
    priority: Priority
    title: str
    body: str


class TemplateView(msgspec.Struct, kw_only=True):
    """The template in force for (type, audience); `placeholders` are the names its
    title and body may use; `default` is what ships with the code."""

    type: str
    audience: str
    level: Level
    priority: Priority
    title: str
    body: str
    placeholders: list[str]
    overridden: bool
    updated_at: datetime | None = None
    default: TemplateText


class TemplateList(msgspec.Struct):
    items: list[TemplateView]


class ListTemplates(msgspec.Struct):
    actor: Actor


class PutTemplate(msgspec.Struct, kw_only=True):
    """Override (type, audience); `audience` defaults to the type's first audience,
    `level` and `priority` to the default template's."""

    actor: Actor
    type: NotificationType
    audience: TemplateAudience | None = None
    title: Title
    body: Body
    level: Level | None = None
    priority: Priority | None = None


class ResetTemplate(msgspec.Struct, kw_only=True):
    actor: Actor
    type: NotificationType
    audience: TemplateAudience | None = None


# ----- admin sends -----


class Audience(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Who gets an admin send: users by id, everyone with one of `roles`, or `all`."""

    user_ids: Annotated[list[Id], msgspec.Meta(max_length=MAX_AUDIENCE_USER_IDS)] = []
    roles: Annotated[list[Role], msgspec.Meta(max_length=MAX_ROLES)] = []
    all: bool = False


class AdminSend(msgspec.Struct, kw_only=True):
    """Type by audience: `announcement` (all), `admin.alert` (roles), `admin.message`.
    `data` has at most MAX_DATA_KEYS keys and DATA_MAX_BYTES bytes as JSON."""

    actor: Actor
    audience: Audience
    title: Title
    body: Body
    level: Level = "info"
    priority: Priority = "normal"
    data: Annotated[dict[str, Any], msgspec.Meta(max_length=MAX_DATA_KEYS)] = {}
    expires_at: datetime | None = None


class SendResult(msgspec.Struct):
    """`recipients` is how many users got it; `id` identifies the send."""

    id: str
    type: str
    recipients: int

"""Notification routes (docs/contract.md, "Notifications"): the caller's inbox and preferences, and
the admin's templates and sends. Served by `notifier` over NATS request/reply; this
module never touches its tables. Every inbox change is pushed by the notifier to all
the user's sockets (`notification_update`, `unread_count`)."""

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, delete, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery, JSONBody, PathParameter, QueryParameter

from services.api.auth import provide_actor
from services.api.errors import responses
from services.api.routes.common import CursorQuery, PathId
from services.contracts import notifier as n
from services.contracts import subjects
from services.contracts.bookings import Actor
from services.contracts.errors import DomainError
from services.contracts.limits import (
    AUDIENCE_MAX,
    MAX_DATA_KEYS,
    PAGE_MAX,
    SINGLE_LINE,
    TYPE_MAX,
    Body,
    TemplateAudience,
    Title,
)
from services.runtime.micro import call

TypePath = Annotated[str, PathParameter(max_length=TYPE_MAX, pattern=SINGLE_LINE)]


class TemplateIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """An override: `audience` defaults to the type's first; level and priority to the
    default template's. Placeholders are `{name}` from the type's `placeholders`."""

    audience: TemplateAudience | None = None
    title: Title
    body: Body
    level: n.Level | None = None
    priority: n.Priority | None = None


class SendIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """An admin send. `expires_at` (RFC 3339, future) removes it from inboxes then."""

    audience: n.Audience
    title: Title
    body: Body
    level: n.Level = "info"
    priority: n.Priority = "normal"
    data: Annotated[dict[str, Any], msgspec.Meta(max_length=MAX_DATA_KEYS)] = {}
    expires_at: datetime | None = None


class Cleared(msgspec.Struct):
    """How many read notifications were deleted."""

    deleted: int
    unread_count: int


class MarkedRead(msgspec.Struct):
    """How many notifications were marked read; the unread count is then 0."""

    marked: int
    unread_count: int


def _nc(request: Request):
    return request.app.state.nc


deps = {"actor": Provide(provide_actor)}


@get(
    "/notifications",
    dependencies=deps,
    responses=responses(400, 401),
    summary="The caller's notifications, newest first",
)
async def list_notifications(
    request: Request,
    actor: NamedDependency[Actor],
    unread: FromQuery[bool] = False,
    type_: Annotated[
        str | None, QueryParameter(name="type", max_length=TYPE_MAX, pattern=SINGLE_LINE)
    ] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=PAGE_MAX)] = 50,
    cursor: CursorQuery = None,
) -> n.NotificationPage:
    """`{items, next_cursor}`; pass `next_cursor` as `cursor` for the next (older) page.
    Pages are keyed on `seq`, so notifications arriving meanwhile never shift them."""
    return await call(
        _nc(request),
        subjects.NOTIFIER_INBOX_QUERY,
        n.InboxQuery(user_id=actor.user_id, unread=unread, type=type_, limit=limit, cursor=cursor),
        n.NotificationPage,
    )


@get(
    "/notifications/unread-count",
    dependencies=deps,
    responses=responses(401),
    summary="How many of the caller's notifications are unread",
)
async def unread_count(request: Request, actor: NamedDependency[Actor]) -> n.UnreadCount:
    summary = await call(
        _nc(request),
        subjects.NOTIFIER_INBOX_SUMMARY,
        n.InboxSummaryRequest(user_id=actor.user_id),
        n.InboxSummary,
    )
    return n.UnreadCount(count=summary.unread_count)


@post(
    "/notifications/read-all",
    status_code=200,
    dependencies=deps,
    responses=responses(401),
    summary="Mark every notification read",
)
async def read_all(request: Request, actor: NamedDependency[Actor]) -> MarkedRead:
    changed = await call(
        _nc(request),
        subjects.NOTIFIER_INBOX_READ_ALL,
        n.UserRef(user_id=actor.user_id),
        n.Changed,
    )
    return MarkedRead(marked=changed.changed, unread_count=changed.unread_count)


@post(
    "/notifications/{notification_id:str}/read",
    status_code=200,
    dependencies=deps,
    responses=responses(401, 404),
    summary="Mark one notification read",
)
async def read_one(
    request: Request, actor: NamedDependency[Actor], notification_id: PathId
) -> n.Notification:
    """200 the notification with `read_at`; 404 when it is not in the caller's inbox."""
    return await call(
        _nc(request),
        subjects.NOTIFIER_INBOX_READ,
        n.NotificationRef(user_id=actor.user_id, id=notification_id),
        n.Notification,
    )


@delete(
    "/notifications/{notification_id:str}",
    dependencies=deps,
    responses=responses(401, 404),
    summary="Delete one notification",
)
async def delete_one(
    request: Request, actor: NamedDependency[Actor], notification_id: PathId
) -> None:
    """204; 404 when it is not in the caller's inbox."""
    await call(
        _nc(request),
        subjects.NOTIFIER_INBOX_DELETE,
        n.NotificationRef(user_id=actor.user_id, id=notification_id),
        n.Changed,
    )


@delete(
    "/notifications",
    status_code=200,
    dependencies=deps,
    responses=responses(400, 401),
    summary="Delete every read notification (read=true)",
)
async def clear_read(
    request: Request, actor: NamedDependency[Actor], read: FromQuery[bool | None] = None
) -> Cleared:
    """200 `{deleted, unread_count}`. `read=true` is required: unread ones are never
    cleared in bulk."""
    if read is not True:
        raise DomainError(
            "invalid",
            "Add read=true: only read notifications can be cleared in bulk.",
            {"field": "read"},
        )
    changed = await call(
        _nc(request),
        subjects.NOTIFIER_INBOX_CLEAR_READ,
        n.UserRef(user_id=actor.user_id),
        n.Changed,
    )
    return Cleared(deleted=changed.changed, unread_count=changed.unread_count)


@get(
    "/notifications/preferences",
    dependencies=deps,
    responses=responses(401),
    summary="The caller's notification preferences",
)
async def get_preferences(request: Request, actor: NamedDependency[Actor]) -> n.Preferences:
    return await call(
        _nc(request),
        subjects.NOTIFIER_PREFS_GET,
        n.PreferencesRequest(user_id=actor.user_id),
        n.Preferences,
    )


@put(
    "/notifications/preferences",
    dependencies=deps,
    responses=responses(400, 401),
    summary="Replace the caller's notification preferences",
)
async def put_preferences(
    request: Request, data: JSONBody[n.Preferences], actor: NamedDependency[Actor]
) -> n.Preferences:
    """200 the saved preferences; 400 naming the field (`extra.field`) for an unknown
    muted type, a time that is not HH:MM, an unknown IANA time zone, or start == end."""
    return await call(
        _nc(request),
        subjects.NOTIFIER_PREFS_PUT,
        n.PutPreferences(user_id=actor.user_id, preferences=data),
        n.Preferences,
    )


@get(
    "/admin/notification-templates",
    dependencies=deps,
    responses=responses(401, 403),
    summary="Every notification template in force (admin)",
)
async def list_templates(request: Request, actor: NamedDependency[Actor]) -> n.TemplateList:
    return await call(
        _nc(request), subjects.NOTIFIER_TEMPLATES_LIST, n.ListTemplates(actor), n.TemplateList
    )


@put(
    "/admin/notification-templates/{type:str}",
    dependencies=deps,
    responses=responses(400, 401, 403, 404),
    summary="Override a notification template (admin)",
)
async def put_template(
    request: Request,
    data: JSONBody[TemplateIn],
    actor: NamedDependency[Actor],
    type: TypePath,
) -> n.TemplateView:
    """200 the template in force; 400 naming an unknown placeholder or audience; 404 for
    a type without templates. Applies to the next notification on every replica."""
    return await call(
        _nc(request),
        subjects.NOTIFIER_TEMPLATES_PUT,
        n.PutTemplate(actor=actor, type=type, **msgspec.structs.asdict(data)),
        n.TemplateView,
    )


@delete(
    "/admin/notification-templates/{type:str}",
    status_code=200,
    dependencies=deps,
    responses=responses(400, 401, 403, 404),
    summary="Drop a template override: the default applies again (admin)",
)
async def reset_template(
    request: Request,
    actor: NamedDependency[Actor],
    type: TypePath,
    audience: Annotated[
        str | None, QueryParameter(max_length=AUDIENCE_MAX, pattern=SINGLE_LINE)
    ] = None,
) -> n.TemplateView:
    return await call(
        _nc(request),
        subjects.NOTIFIER_TEMPLATES_RESET,
        n.ResetTemplate(actor=actor, type=type, audience=audience),
        n.TemplateView,
    )


@post(
    "/admin/notifications",
    status_code=202,
    dependencies=deps,
    responses=responses(400, 401, 403),
    summary="Send a notification to users, roles or everyone (admin)",
)
async def admin_send(
    request: Request, data: JSONBody[SendIn], actor: NamedDependency[Actor]
) -> n.SendResult:
    """202 `{id, type, recipients}` (a count). Type by audience: `admin.message`
    (user_ids), `admin.alert` (roles), `announcement` (all). 400 for an empty or
    mixed audience, unknown roles or user ids, or a past `expires_at`."""
    return await call(
        _nc(request),
        subjects.NOTIFIER_ADMIN_SEND,
        n.AdminSend(actor=actor, **msgspec.structs.asdict(data)),
        n.SendResult,
        timeout=30.0,
    )


routes = [
    list_notifications,
    unread_count,
    read_all,
    read_one,
    delete_one,
    clear_read,
    get_preferences,
    put_preferences,
    list_templates,
    put_template,
    reset_template,
    admin_send,
]

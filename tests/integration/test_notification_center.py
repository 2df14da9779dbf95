"""The notifier's notification center against real NATS and PostgreSQL, in-process with
a fixed clock: users from user.registered, admin sends, inbox paging and changes with
their live messages, preferences (mutes, quiet hours, urgent), template overrides and
the retention purge."""

import asyncio
import contextlib
import functools
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from services.contracts import notifier as n
from services.contracts import subjects
from services.contracts.bookings import Actor
from services.contracts.envelope import new_event
from services.contracts.identity import UserRegisteredData
from services.contracts.ids import uuid7
from services.notifier.config import Settings
from services.notifier.entrypoints import serve
from services.runtime.config import Common
from services.runtime.micro import RemoteError, call
from tests.integration.test_notifier_service import event, publish
from tests.support import Collector, eventually, running

# 23:30 in Berlin on a winter night (UTC+1): inside 22:00-07:00 quiet hours there.
NIGHT = datetime(2026, 1, 15, 22, 30, tzinfo=UTC)
NOON = datetime(2026, 1, 15, 11, 0, tzinfo=UTC)


class Clock:
    """A clock tests move by hand."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def clock():
    return Clock(NOON)


@pytest.fixture
async def notifier(nc, nats_url, database_url, clock):
    settings = Settings(Common(nats_url, database_url), purge_seconds=3600)
    async with running(functools.partial(serve, clock=clock), settings):
        yield settings


ADMIN = Actor(user_id=str(uuid7()), roles=["admin"])


async def register(nc, roles=("driver",)) -> str:
    user_id = str(uuid7())
    ev = new_event(
        subjects.USER_REGISTERED,
        "test",
        UserRegisteredData(
            user_id=user_id, email=f"{user_id}@x.io", full_name="U", roles=list(roles)
        ),
        user_id,
    )
    await nc.jetstream().publish(ev.type, msgspec.json.encode(ev), headers={"Nats-Msg-Id": ev.id})
    return user_id


async def known(nc, user_ids) -> None:
    """Wait until the notifier has consumed these users' registrations."""

    async def check():
        info = await nc.jetstream().consumer_info("EVENTS", "notifier-users")
        return info.num_pending == 0 and info.num_ack_pending == 0 and info.delivered.stream_seq

    await eventually(check)


async def send(nc, **kw) -> n.SendResult:
    kw.setdefault("title", "Hello")
    kw.setdefault("body", "World")
    return await call(
        nc, subjects.NOTIFIER_ADMIN_SEND, n.AdminSend(actor=ADMIN, **kw), n.SendResult
    )


async def page(nc, user_id, **kw) -> n.NotificationPage:
    return await call(
        nc, subjects.NOTIFIER_INBOX_QUERY, n.InboxQuery(user_id=user_id, **kw), n.NotificationPage
    )


async def count(nc, user_id) -> int:
    s = await call(
        nc, subjects.NOTIFIER_INBOX_SUMMARY, n.InboxSummaryRequest(user_id), n.InboxSummary
    )
    return s.unread_count


async def test_admin_sends_to_ids_roles_and_everyone(nc, notifier):
    drivers = [await register(nc) for _ in range(3)]
    owner = await register(nc, ["owner"])
    await known(nc, [*drivers, owner])
    live = await Collector().start(nc, "notify.user.*")

    one = await send(nc, audience=n.Audience(user_ids=[drivers[0]]))
    assert (one.type, one.recipients) == ("admin.message", 1)
    alert = await send(nc, audience=n.Audience(roles=["owner"]), level="warning")
    assert (alert.type, alert.recipients) == ("admin.alert", 1)
    everyone = await send(nc, audience=n.Audience(all=True), expires_at=NOON + timedelta(days=1))
    assert (everyone.type, everyone.recipients) == ("announcement", 4)

    await eventually(lambda: _n(live, 6))
    by_user: dict[str, list] = {}
    for _, subject, body in live.items:
        by_user.setdefault(subject.rsplit(".", 1)[1], []).append(body)
    assert [m["notification"]["seq"] for m in by_user[drivers[0]]] == [1, 2]
    assert [m["unread_count"] for m in by_user[drivers[0]]] == [1, 2]
    assert by_user[owner][0]["notification"]["type"] == "admin.alert"
    assert by_user[drivers[2]][0]["notification"]["expires_at"] is not None
    for d in drivers[1:]:
        assert (await page(nc, d)).items[0].type == "announcement"
        assert await count(nc, d) == 1

    for bad, field in (
        (n.Audience(), "audience"),
        (n.Audience(all=True, roles=["owner"]), "audience"),
        (n.Audience(roles=["wizard"]), "audience.roles"),
        (n.Audience(user_ids=["nope"]), "audience.user_ids"),
        (n.Audience(user_ids=[str(uuid7())]), "audience.user_ids"),
    ):
        with pytest.raises(RemoteError) as e:
            await send(nc, audience=bad)
        assert e.value.code == "invalid" and e.value.extra["field"] == field
    with pytest.raises(RemoteError) as e:
        await send(nc, audience=n.Audience(all=True), expires_at=NOON - timedelta(hours=1))
    assert e.value.extra["field"] == "expires_at"
    with pytest.raises(RemoteError) as e:
        await call(
            nc,
            subjects.NOTIFIER_ADMIN_SEND,
            n.AdminSend(
                actor=Actor(drivers[0], ["driver"]),
                audience=n.Audience(all=True),
                title="t",
                body="b",
            ),
            n.SendResult,
        )
    assert e.value.code == "forbidden"


async def _n(collector, k):
    return len(collector.items) >= k


async def test_paging_is_stable_while_new_ones_arrive(nc, notifier):
    user = await register(nc)
    await known(nc, [user])
    for i in range(7):
        await send(nc, audience=n.Audience(user_ids=[user]), title=f"m{i}")
    first = await page(nc, user, limit=3)
    assert [x.seq for x in first.items] == [7, 6, 5] and first.next_cursor
    for i in range(4):  # newer ones must not shift the next pages
        await send(nc, audience=n.Audience(user_ids=[user]), title=f"new{i}")
    second = await page(nc, user, limit=3, cursor=first.next_cursor)
    third = await page(nc, user, limit=3, cursor=second.next_cursor)
    assert [x.seq for x in second.items] == [4, 3, 2]
    assert [x.seq for x in third.items] == [1] and third.next_cursor is None
    assert [x.seq for x in (await page(nc, user, limit=200)).items] == list(range(11, 0, -1))
    with pytest.raises(RemoteError) as e:
        await page(nc, user, cursor="garbage")
    assert e.value.code == "invalid"
    with pytest.raises(RemoteError) as e:
        await page(nc, user, limit=201)
    assert e.value.code == "invalid"


async def test_read_delete_and_clear_publish_updates_and_counts(nc, notifier, clock):
    user = await register(nc)
    await known(nc, [user])
    for i in range(4):
        await send(nc, audience=n.Audience(user_ids=[user]), title=f"m{i}")
    items = (await page(nc, user)).items  # seq 4, 3, 2, 1
    live = await Collector().start(nc, f"notify.user.{user}")

    read = await call(
        nc, subjects.NOTIFIER_INBOX_READ, n.NotificationRef(user, items[0].id), n.Notification
    )
    assert read.read_at == clock.now and await count(nc, user) == 3
    again = await call(
        nc, subjects.NOTIFIER_INBOX_READ, n.NotificationRef(user, items[0].id), n.Notification
    )
    assert again.read_at == read.read_at  # reading twice changes nothing
    deleted = await call(
        nc, subjects.NOTIFIER_INBOX_DELETE, n.NotificationRef(user, items[1].id), n.Changed
    )
    assert deleted == n.Changed(changed=1, unread_count=2)
    everything = await call(nc, subjects.NOTIFIER_INBOX_READ_ALL, n.UserRef(user), n.Changed)
    assert everything == n.Changed(changed=2, unread_count=0)
    cleared = await call(nc, subjects.NOTIFIER_INBOX_CLEAR_READ, n.UserRef(user), n.Changed)
    assert cleared == n.Changed(changed=3, unread_count=0)
    assert (await page(nc, user)).items == []

    await eventually(lambda: _n(live, 8))
    kinds = [
        (b["type"], b.get("id"), b.get("deleted"), b.get("up_to_seq")) for _, _, b in live.items
    ]
    assert kinds[0] == ("notification_update", items[0].id, False, None)
    assert kinds[2] == ("notification_update", items[1].id, True, None)
    assert kinds[4] == ("notification_update", None, False, 2)
    assert kinds[6] == ("notification_update", None, True, 4)
    counts = [b for _, _, b in live.items if b["type"] == "unread_count"]
    assert [b["count"] for b in counts] == [3, 2, 0, 0]
    versions = [b["version"] for b in counts]
    assert versions == sorted(versions) and len(set(versions)) == 4

    for subject, req in (
        (subjects.NOTIFIER_INBOX_READ, n.NotificationRef(user, items[0].id)),
        (subjects.NOTIFIER_INBOX_READ, n.NotificationRef(user, "not-an-id")),
        (subjects.NOTIFIER_INBOX_DELETE, n.NotificationRef(str(uuid7()), items[2].id)),
    ):
        with pytest.raises(RemoteError) as e:
            await call(nc, subject, req, n.Notification)
        assert e.value.code == "not_found"


async def test_ack_records_delivered_at(nc, notifier, clock):
    user = await register(nc)
    await known(nc, [user])
    await send(nc, audience=n.Audience(user_ids=[user]))
    acked = await call(nc, subjects.NOTIFIER_INBOX_ACK, n.AckRequest(user, 1), n.Acked)
    assert acked.delivered_at == clock.now
    clock.now += timedelta(minutes=1)
    again = await call(nc, subjects.NOTIFIER_INBOX_ACK, n.AckRequest(user, 1), n.Acked)
    assert again.delivered_at == acked.delivered_at  # the first delivery counts
    assert (await page(nc, user)).items[0].delivered_at == acked.delivered_at
    with pytest.raises(RemoteError) as e:
        await call(nc, subjects.NOTIFIER_INBOX_ACK, n.AckRequest(user, 2), n.Acked)
    assert e.value.code == "not_found"


async def test_a_batch_of_acks_records_each_and_names_the_missing(nc, notifier, clock):
    ann, bob = await register(nc), await register(nc)
    await known(nc, [ann, bob])
    for _ in range(2):
        await send(nc, audience=n.Audience(user_ids=[ann, bob]))
    first = clock.now
    await call(nc, subjects.NOTIFIER_INBOX_ACK, n.AckRequest(ann, 1), n.Acked)
    clock.now += timedelta(minutes=1)
    items = [
        n.AckRequest(ann, 1),  # acked before: keeps its first time
        n.AckRequest(ann, 2),
        n.AckRequest(ann, 2),  # twice in one batch
        n.AckRequest(bob, 1),
        n.AckRequest(bob, 3),  # no such seq
        n.AckRequest("not-a-uuid", 1),
    ]
    result = await call(
        nc, subjects.NOTIFIER_INBOX_ACK_BATCH, n.AckBatch(items=items), n.AckBatchResult
    )
    assert result.missing == [4, 5]
    delivered = {x.seq: x.delivered_at for x in (await page(nc, ann)).items}
    assert delivered == {1: first, 2: clock.now}
    delivered = {x.seq: x.delivered_at for x in (await page(nc, bob)).items}
    assert delivered == {1: clock.now, 2: None}


async def put_prefs(nc, user, **kw) -> n.Preferences:
    return await call(
        nc,
        subjects.NOTIFIER_PREFS_PUT,
        n.PutPreferences(user, n.Preferences(**kw)),
        n.Preferences,
    )


async def test_quiet_hours_mutes_and_urgent_with_a_fixed_clock(nc, notifier, clock):
    driver, owner = await register(nc), await register(nc, ["owner"])
    await known(nc, [driver, owner])
    assert (
        await call(nc, subjects.NOTIFIER_PREFS_GET, n.PreferencesRequest(driver), n.Preferences)
        == n.Preferences()
    )
    saved = await put_prefs(
        nc,
        driver,
        muted_types=["booking.created", "booking.created"],
        quiet_hours=n.QuietHours("22:00", "07:00", "Europe/Berlin"),
    )
    assert saved.muted_types == ["booking.created"]
    live = await Collector().start(nc, f"notify.user.{driver}")

    # Noon in Berlin: a muted type is silent, another type is pushed.
    await publish(nc, event(subjects.BOOKING_CREATED, driver, owner))
    await publish(nc, event(subjects.BOOKING_EXPIRING, driver, owner))
    await eventually(lambda: _n(live, 2))
    # 23:30 in Berlin: quiet; urgent still goes out.
    clock.now = NIGHT
    await publish(nc, event(subjects.BOOKING_EXPIRING, driver, owner))
    await eventually(lambda: _n(live, 3))
    await send(nc, audience=n.Audience(user_ids=[driver]), priority="urgent", title="Fire")
    await send(nc, audience=n.Audience(user_ids=[driver]), priority="high", title="Later")
    await eventually(lambda: _n(live, 5))
    # 07:00 in Berlin: quiet hours are over.
    clock.now = datetime(2026, 1, 16, 6, 0, tzinfo=UTC)
    await publish(nc, event(subjects.BOOKING_EXPIRING, driver, owner))
    await eventually(lambda: _n(live, 6))

    got = sorted((b["notification"]["seq"], b["push"], b["unread_count"]) for _, _, b in live.items)
    assert got == [
        (1, False, 1),  # muted booking.created
        (2, True, 2),
        (3, False, 3),  # quiet hours
        (4, True, 4),  # urgent
        (5, False, 5),  # quiet hours
        (6, True, 6),
    ]
    inbox = (await page(nc, driver)).items
    assert [x.silent for x in inbox] == [False, True, False, True, False, True]
    assert all(x.read_at is None for x in inbox) and await count(nc, driver) == 6

    await put_prefs(nc, driver, websocket=False)
    await send(nc, audience=n.Audience(user_ids=[driver]), priority="urgent", title="Off")
    await eventually(lambda: _n(live, 7))
    assert live.items[-1][2]["push"] is False


@pytest.mark.parametrize(
    ("prefs", "field"),
    [
        ({"muted_types": ["booking.nope"]}, "muted_types"),
        ({"quiet_hours": n.QuietHours("25:00", "07:00", "UTC")}, "quiet_hours.start"),
        ({"quiet_hours": n.QuietHours("22:00", "7am", "UTC")}, "quiet_hours.end"),
        ({"quiet_hours": n.QuietHours("22:00", "07:00", "Mars/Olympus")}, "quiet_hours.timezone"),
        ({"quiet_hours": n.QuietHours("22:00", "22:00", "UTC")}, "quiet_hours.end"),
    ],
)
async def test_bad_preferences_name_the_field(nc, notifier, prefs, field):
    with pytest.raises(RemoteError) as e:
        await put_prefs(nc, str(uuid7()), **prefs)
    assert e.value.code == "invalid" and e.value.extra["field"] == field
    assert field.split(".")[-1] in e.value.detail


async def test_template_override_applies_to_the_next_event_on_every_replica(
    nc, nats_url, database_url, notifier
):
    driver, owner = str(uuid7()), str(uuid7())
    listed = await call(
        nc, subjects.NOTIFIER_TEMPLATES_LIST, n.ListTemplates(ADMIN), n.TemplateList
    )
    created = [t for t in listed.items if t.type == "booking.created"]
    assert [t.audience for t in created] == ["driver", "owner"]
    assert "slot_label" in created[0].placeholders and not created[0].overridden

    with pytest.raises(RemoteError) as e:
        await call(
            nc,
            subjects.NOTIFIER_TEMPLATES_PUT,
            n.PutTemplate(actor=ADMIN, type="booking.created", title="Hi {nickname}", body="x"),
            n.TemplateView,
        )
    assert e.value.code == "invalid" and "{nickname}" in e.value.detail
    for bad in ("{slot_label.__class__}", "{0}", "{", "{slot_label!r}"):
        with pytest.raises(RemoteError) as e:
            await call(
                nc,
                subjects.NOTIFIER_TEMPLATES_PUT,
                n.PutTemplate(actor=ADMIN, type="booking.created", title="t", body=bad),
                n.TemplateView,
            )
        assert e.value.code == "invalid", bad
    with pytest.raises(RemoteError) as e:
        await call(
            nc,
            subjects.NOTIFIER_TEMPLATES_PUT,
            n.PutTemplate(actor=ADMIN, type="booking.nope", title="t", body="b"),
            n.TemplateView,
        )
    assert e.value.code == "not_found"

    settings = Settings(Common(nats_url, database_url))
    async with running(serve, settings):  # a second replica, started before the change
        # Both replicas cache the overrides as they are before the change.
        warm = str(uuid7())
        for _ in range(4):
            await publish(nc, event(subjects.BOOKING_CREATED, warm, owner))
        await eventually(lambda: _last(nc, warm, 4))
        assert {x.title for x in (await page(nc, warm)).items} == {"Booking confirmed"}
        view = await call(
            nc,
            subjects.NOTIFIER_TEMPLATES_PUT,
            n.PutTemplate(
                actor=ADMIN,
                type="booking.created",
                title="Yours: {slot_label}",
                body="{lot_name}, until {end_time_hm}. {{literal}}",
                level="warning",
            ),
            n.TemplateView,
        )
        assert view.overridden and view.audience == "driver" and view.level == "warning"
        for _ in range(4):  # whichever replica takes each event renders the override
            await publish(nc, event(subjects.BOOKING_CREATED, driver, owner))
        await eventually(lambda: _last(nc, driver, 4))
        inbox = (await page(nc, driver)).items
        assert {x.title for x in inbox} == {"Yours: A1"}
        assert inbox[0].body.startswith("Main St, until ") and "{literal}" in inbox[0].body
        assert {x.level for x in inbox} == {"warning"}
        assert (await page(nc, owner)).items[0].title == "New booking"

    reset = await call(
        nc,
        subjects.NOTIFIER_TEMPLATES_RESET,
        n.ResetTemplate(actor=ADMIN, type="booking.created"),
        n.TemplateView,
    )
    assert not reset.overridden and reset.title == "Booking confirmed"
    await publish(nc, event(subjects.BOOKING_CREATED, driver, owner))
    await eventually(lambda: _last(nc, driver, 5))
    assert (await page(nc, driver)).items[0].title == "Booking confirmed"
    with pytest.raises(RemoteError) as e:
        await call(
            nc,
            subjects.NOTIFIER_TEMPLATES_LIST,
            n.ListTemplates(Actor(driver, ["driver"])),
            n.TemplateList,
        )
    assert e.value.code == "forbidden"


async def _last(nc, user, seq):
    s = await call(nc, subjects.NOTIFIER_INBOX_SUMMARY, n.InboxSummaryRequest(user), n.InboxSummary)
    return s.last_seq >= seq


async def test_purge_drops_old_read_and_expired_ones_once_across_replicas(
    nc, nats_url, database_url, clock
):
    from services.notifier import handlers, retention
    from services.runtime.db import make_engine

    settings = Settings(Common(nats_url, database_url))
    async with running(functools.partial(serve, clock=clock), settings):
        old, fresh = await register(nc), await register(nc)
        await known(nc, [old, fresh])
        clock.now = NOON - timedelta(days=100)
        await send(nc, audience=n.Audience(user_ids=[old]), title="ancient, read")
        await send(nc, audience=n.Audience(user_ids=[old]), title="ancient, unread")
        await call(nc, subjects.NOTIFIER_INBOX_READ_ALL, n.UserRef(old), n.Changed)
        await send(nc, audience=n.Audience(user_ids=[old]), title="ancient, unread 2")
        clock.now = NOON
        await send(nc, audience=n.Audience(all=True), expires_at=NOON + timedelta(hours=1))
        assert await count(nc, fresh) == 1
        live = await Collector().start(nc, f"notify.user.{fresh}")
        clock.now = NOON + timedelta(hours=2)
        assert await count(nc, fresh) == 0  # expired ones stop counting at once

        engines = [make_engine(database_url) for _ in range(3)]
        try:
            results = await asyncio.gather(
                *(retention.purge(handlers.Deps(e, nc, clock), 90) for e in engines)
            )
        finally:
            for e in engines:
                await e.dispose()
        assert sum(r[0] for r in results) == 2 and sum(r[1] for r in results) == 2
        titles = [x.title for x in (await page(nc, old)).items]
        assert titles == ["ancient, unread 2"]
        assert (await page(nc, fresh)).items == []
        await eventually(lambda: _n(live, 2))
        assert live.items[0][2]["deleted"] is True
        assert live.items[1][2] == {"type": "unread_count", "count": 0, "version": 2}


async def test_announcement_reaches_many_users_in_one_statement(nc, notifier):
    users = [await register(nc) for _ in range(50)]
    await known(nc, users)
    # Some already have notifications: each gets their own next seq.
    await send(nc, audience=n.Audience(user_ids=users[:10]))
    live = await Collector().start(nc, "notify.user.*")
    result = await send(nc, audience=n.Audience(all=True), title="Maintenance tonight")
    assert result.recipients == 50
    await eventually(lambda: _n(live, 50))
    seqs = {s.rsplit(".", 1)[1]: b["notification"]["seq"] for _, s, b in live.items}
    assert all(seqs[u] == 2 for u in users[:10]) and all(seqs[u] == 1 for u in users[10:])
    ids = {b["notification"]["id"] for _, _, b in live.items}
    assert len(ids) == 50
    with contextlib.suppress(Exception):
        pass


async def test_probes_when_a_probe_port_is_set(nc, nats_url, database_url):
    import httpx

    from services.runtime.embedded import free_port

    port = free_port()
    settings = Settings(Common(nats_url, database_url), probe_port=port)
    async with running(serve, settings), httpx.AsyncClient() as http:
        assert (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
        assert (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
        assert "parkmate" in (await http.get(f"http://127.0.0.1:{port}/metrics")).text

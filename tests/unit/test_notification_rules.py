"""Pure rules of the notification center: quiet hours and mutes, template placeholders,
cursors and the WebSocket rate limit (the per-socket seq bookkeeping is in
test_ws_connection.py)."""

from datetime import UTC, datetime

import pytest

from services.api.wslimits import RateLimit, Verdict
from services.contracts import notifier as n
from services.contracts.errors import DomainError
from services.notifier import paging, prefs, templates

KNOWN = {"booking.created", "booking.expiring", "announcement"}
BERLIN_NIGHT = n.QuietHours("22:00", "07:00", "Europe/Berlin")


def at(hour: int, minute: int = 0, month: int = 1) -> datetime:
    return datetime(2026, month, 15, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "quiet"),
    [
        (at(20, 59), False),  # 21:59 in Berlin (UTC+1 in winter)
        (at(21, 0), True),  # 22:00: start is inside
        (at(23, 30), True),  # past midnight in Berlin
        (at(5, 59), True),  # 06:59
        (at(6, 0), False),  # 07:00: end is outside
        (at(12, 0), False),
        (at(20, 0, month=7), True),  # 22:00 in summer (UTC+2)
    ],
)
def test_quiet_hours_spanning_midnight_in_a_zone(now, quiet):
    assert prefs.in_quiet_hours(BERLIN_NIGHT, now) is quiet


def test_quiet_hours_within_one_day():
    lunch = n.QuietHours("12:00", "13:30", "UTC")
    assert prefs.in_quiet_hours(lunch, at(13, 29)) and not prefs.in_quiet_hours(lunch, at(13, 30))
    assert not prefs.in_quiet_hours(lunch, at(11, 59))


def test_live_allowed_mutes_quiet_hours_urgent_and_websocket_off():
    p = n.Preferences(muted_types=["booking.created"], quiet_hours=BERLIN_NIGHT)
    noon, night = at(11), at(23)
    assert not prefs.live_allowed(p, "booking.created", "high", noon)
    assert prefs.live_allowed(p, "booking.expiring", "high", noon)
    assert not prefs.live_allowed(p, "booking.expiring", "high", night)
    assert prefs.live_allowed(p, "booking.created", "urgent", night)
    off = n.Preferences(websocket=False)
    assert not prefs.live_allowed(off, "booking.expiring", "urgent", noon)
    assert prefs.live_allowed(prefs.DEFAULT, "announcement", "low", night)


@pytest.mark.parametrize(
    ("p", "field"),
    [
        (n.Preferences(muted_types=["nope"]), "muted_types"),
        (n.Preferences(quiet_hours=n.QuietHours("7:00", "08:00", "UTC")), "quiet_hours.start"),
        (n.Preferences(quiet_hours=n.QuietHours("07:00", "08:60", "UTC")), "quiet_hours.end"),
        (
            n.Preferences(quiet_hours=n.QuietHours("07:00", "08:00", "Nowhere")),
            "quiet_hours.timezone",
        ),
        (
            n.Preferences(quiet_hours=n.QuietHours("07:00", "08:00", "../etc/x")),
            "quiet_hours.timezone",
        ),
        (n.Preferences(quiet_hours=n.QuietHours("07:00", "07:00", "UTC")), "quiet_hours.end"),
    ],
)
def test_invalid_preferences_name_the_field(p, field):
    with pytest.raises(DomainError) as e:
        prefs.validate(p, KNOWN)
    assert e.value.code == "invalid" and e.value.extra["field"] == field


def test_validate_normalises_muted_types():
    p = prefs.validate(n.Preferences(muted_types=["booking.created"] * 2 + ["announcement"]), KNOWN)
    assert p.muted_types == ["announcement", "booking.created"]


def test_placeholders_come_from_the_event_data():
    assert {"slot_label", "lot_name", "end_time_hm", "minutes_left"} <= templates.placeholders_for(
        "booking.expiring"
    )
    assert templates.placeholders_for("staff.assigned") == {"lot_id", "lot_name", "employee_id"}
    assert templates.placeholders_for("nope") == frozenset()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("Hi {nickname}", "{nickname}"),
        ("{slot_label.__class__}", "{slot_label.__class__}"),
        ("{0}", "{0}"),
        ("{}", "placeholder"),
        ("{slot_label!r}", "conversion"),
        ("{slot_label:>9}", "format spec"),
        ("unclosed {", "literal braces"),
    ],
)
def test_template_text_is_checked(text, fragment):
    with pytest.raises(DomainError) as e:
        templates.check_text("booking.created", "body", text)
    assert e.value.code == "invalid" and fragment in e.value.detail
    assert e.value.extra["field"] == "body"


def test_template_text_accepts_known_placeholders_and_literal_braces():
    templates.check_text("booking.created", "title", "{slot_label} at {lot_name} {{x}}")


def test_audience_defaults_to_the_first_and_is_checked():
    assert templates.resolve_audience("booking.created", None) == "driver"
    assert templates.resolve_audience("booking.created", "owner") == "owner"
    with pytest.raises(DomainError) as e:
        templates.resolve_audience("booking.created", "staff")
    assert e.value.code == "invalid"
    with pytest.raises(DomainError) as e:
        templates.resolve_audience("booking.nope", None)
    assert e.value.code == "not_found"


def test_cursor_round_trip_and_garbage():
    assert paging.decode_cursor(paging.encode_cursor(42)) == 42
    for bad in ("", "42", "bm90LW91cnM", paging.encode_cursor(0)):
        with pytest.raises(DomainError):
            paging.decode_cursor(bad)


def test_rate_limit_bursts_drops_and_closes_a_persistent_flood():
    limit = RateLimit(rate=5, burst=5)
    assert [limit.check(0.0) for _ in range(5)] == [Verdict.OK] * 5
    assert limit.check(0.0) is Verdict.DROP
    assert limit.check(1.0) is Verdict.OK  # refilled
    flood = [limit.check(1.0 + i / 100) for i in range(100)]
    assert Verdict.CLOSE in flood
    calm = RateLimit(rate=5, burst=5)
    verdicts = [calm.check(i * 0.25) for i in range(200)]  # 4 per second, forever
    assert set(verdicts) == {Verdict.OK}


def test_every_notifier_request_subject_is_served_and_documented():
    from services import asyncapi
    from services.contracts import subjects

    served = [ep.subject for ep in asyncapi.request_endpoints()["notifier"]]
    names = {v for k, v in vars(subjects).items() if k.startswith("NOTIFIER_")}
    assert len(served) == len(set(served))
    assert set(served) == names - {subjects.NOTIFIER_SERVICE}
    doc = asyncapi.build()
    assert "NotifyUserUserId" in doc["channels"]
    for name in ("LiveNotification", "LiveUnreadCount", "LiveUpdate", "AdminSend"):
        assert name in doc["components"]["schemas"]

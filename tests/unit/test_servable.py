"""The cut form of a stored notification (services/notifier/servable.py)."""

from datetime import UTC, datetime

import msgspec

from services.contracts.limits import BODY_MAX, DATA_MAX_BYTES, MAX_DATA_KEYS, TITLE_MAX
from services.contracts.notifier import Notification
from services.notifier.servable import DATA_STRING_MAX, bounded_data, servable


def item(**changes) -> Notification:
    fields = {
        "id": "01a22994-8045-725c-8675-8c99fab9e55f",
        "seq": 7,
        "type": "booking.created",
        "level": "info",
        "priority": "normal",
        "title": "Booking confirmed",
        "body": "Slot A1 is yours.",
        "data": {"booking_id": "b", "lot_name": "Quick Park"},
        "created_at": datetime(2026, 11, 29, tzinfo=UTC),
    }
    return Notification(**(fields | changes))


def test_a_notification_within_the_limits_is_served_as_it_is():
    good = item()
    assert servable(good) == (good, [])
    assert servable(good)[0] is good


def test_title_and_body_are_cut_to_their_limits_with_an_ellipsis():
    safe, changed = servable(item(title="T" * 10_000, body="B" * (BODY_MAX + 1)))
    assert changed == ["title", "body"] and safe.truncated
    assert len(safe.title) == TITLE_MAX and safe.title.endswith("\u2026")
    assert len(safe.body) == BODY_MAX and safe.body.endswith("\u2026")
    assert (safe.id, safe.seq, safe.created_at) == (item().id, 7, item().created_at)


def test_unknown_level_and_priority_read_as_the_defaults():
    safe, changed = servable(item(level="critical", priority="asap"))
    assert (safe.level, safe.priority, changed) == ("info", "normal", ["level", "priority"])


def test_data_that_is_not_an_object_becomes_empty():
    for value in ([1, 2], None, "text", 42):
        assert bounded_data(value) == ({}, True)


def test_data_too_large_keeps_its_entries_in_order_with_long_strings_cut():
    data = {"booking_id": "b" * 36, "lot_name": "L" * 1_000_000, "reason": "r" * 10}
    out, changed = bounded_data(data)
    assert changed and list(out) == ["booking_id", "lot_name", "reason"]
    assert out["booking_id"] == "b" * 36 and out["reason"] == "r" * 10
    assert len(out["lot_name"]) == DATA_STRING_MAX


def test_data_keeps_at_most_the_keys_and_bytes_allowed():
    many = {f"k{i}": i for i in range(1000)}
    out, changed = bounded_data(many)
    assert changed and list(out) == [f"k{i}" for i in range(MAX_DATA_KEYS)]
    wide = {f"k{i}": "\U0001f697" * 400 for i in range(20)}  # 1,600 bytes a value
    out, changed = bounded_data(wide)
    encoded = msgspec.json.encode(out)
    assert changed and 0 < len(out) < 20 and len(encoded) <= DATA_MAX_BYTES
    # Exactly: the entries that fit, measured as the encoder writes them.
    assert len(msgspec.json.encode(dict(list(wide.items())[: len(out) + 1]))) > DATA_MAX_BYTES
    huge_key = {"x" * 5000: 1, "ok": 2}
    assert bounded_data(huge_key) == ({"ok": 2}, True)

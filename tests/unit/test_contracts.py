from datetime import UTC, datetime

import msgspec

from services.contracts.envelope import decode_envelope, new_event
from services.contracts.identity import UserRegisteredData
from services.contracts.ids import uuid7
from services.runtime.natsconn import NatsTooOld, check_server_version, parse_version


def test_uuid7_is_version_7_and_time_ordered():
    a, b = uuid7(), uuid7()
    assert a.version == 7 and a.variant == "specified in RFC 4122"
    assert str(a)[:8] <= str(b)[:8]


def test_cloudevent_envelope_round_trip_uses_utc_z_times():
    event = new_event(
        "user.registered",
        "parkmate/api",
        UserRegisteredData(user_id="u", email="e", full_name="f", roles=["driver"]),
        "u",
    )
    raw = msgspec.json.encode(event)
    assert b'"specversion":"1.0"' in raw and b'Z"' in raw
    back = decode_envelope(raw)
    assert back.id == event.id and back.type == "user.registered"
    assert msgspec.json.decode(back.data, type=UserRegisteredData).email == "e"
    assert back.time.tzinfo is not None and back.time <= datetime.now(UTC)


def test_nats_older_than_2_12_is_refused_with_a_clear_message():
    check_server_version(*parse_version("v2.12.0"))
    try:
        check_server_version(*parse_version("2.9.25"), url="nats://old:4222")
    except NatsTooOld as e:
        assert "2.12" in str(e) and "nats://old:4222" in str(e)
    else:
        raise AssertionError("2.9 accepted")

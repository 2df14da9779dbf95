"""End to end: the bookings benchmark (benchmarks/bookings.py) for two seconds at a low
rate, two drivers racing for each slot, against the system the e2e fixtures start: its
JSON has every figure, each slot is won once, and nothing is double booked. No speed
is asserted."""

import dataclasses
import json

import pytest

from benchmarks.bookings import Options, run
from tests.e2e.conftest import System

pytestmark = pytest.mark.e2e


async def test_bookings_benchmark_reports_races_consumers_and_no_double_booking(
    system: System,
):
    system.admin()  # admin@example.com / secret-pw
    result = await run(
        Options(
            url=system.base,
            rate=10,
            seconds=2,
            contention=2,
            renew_after=0.5,
            admin_password="secret-pw",
            nats_url=system.nats_url,
            quiet=True,
        )
    )
    figures = json.loads(json.dumps(dataclasses.asdict(result)))
    for key in (
        "creates_per_second",
        "offered_creates_per_second",
        "launch_lag_ms_max",
        "client_in_flight_max",
        "client_cpu_seconds",
        "bookings_without_201",
        "races",
        "consumers",
        "bookings_checked",
        "double_bookings",
    ):
        assert key in figures, key
    creates, renewals = figures["creates"], figures["renewals"]
    assert creates["sent"] == 20 and result.slots == 10 and result.drivers == 20
    assert figures["client_cpu_seconds"] > 0
    assert sum(creates["statuses"].values()) + sum(creates["errors"].values()) == 20
    assert {"latency_ms_p50", "latency_ms_p99", "latency_ms_by_status"} <= creates.keys()
    wins = creates["statuses"].get("201", 0)
    assert wins > 0 and renewals["sent"] > 0
    assert set(figures["consumers"]) == {"timers", "notifier"}
    # the load started once the 21 accounts' user.registered events were consumed
    assert figures["setup_lag_at_load"] == 0 and figures["setup_settled_seconds"] is not None
    for consumer in figures["consumers"].values():
        assert {"lag_at_stop", "seconds_to_zero", "kept_up"} <= consumer.keys()
    races = figures["races"]
    assert races["slots"] == 10 and races["won_more_than_once"] == 0, races
    assert races["as_expected"] + races["no_winner"] == 10, races
    assert figures["bookings_checked"] == wins  # one booking per win, renewed in place
    assert figures["double_bookings"] == 0, figures["double_booking_examples"]
    assert result.failures() == []

"""The replay report's arithmetic and its verdict (no services)."""

from collections import Counter
from types import SimpleNamespace

from services.replay.report import (
    expiry_figures,
    failures,
    notification_figures,
    percentile,
    spread,
)
from services.replay.simulation import WARNING, Period, Received


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) is None
    assert spread([0.2, 0.1, 0.4]) == {"count": 3, "p50": 0.2, "p95": 0.4, "p99": 0.4, "max": 0.4}


def clean_report() -> dict:
    kinds = {
        k: {
            "missing": 0,
            "early": 0,
            "duplicates": 0,
            "unexpected": 0,
            "lateness_seconds": {"p99": 0.4},
        }
        for k in ("warnings", "expiries")
    }
    return {
        "notifications": kinds,
        "expiry_check": {
            "never_expired": 0,
            "expired_more_than_once": 0,
            "expired_without_reaching_end": 0,
        },
        "occupancy": {"mismatches": 0, "checks": 200},
        "active_after_drain": 0,
        "bookings": {"errors": {}},
        "interrupted_at_day_time": None,
        "bounds": {"max_lateness_p99_seconds": 1.0, "min_occupancy_share": 0.99},
    }


def test_a_clean_report_has_no_failures_and_each_defect_is_named():
    assert failures(clean_report()) == []
    r = clean_report()
    r["notifications"]["warnings"]["missing"] = 2
    r["notifications"]["expiries"]["early"] = 1
    r["occupancy"]["mismatches"] = 3
    assert failures(r) == [
        "2 warnings missing",
        "1 expiries early",
        "occupancy equal to the data at 197 of 200 lot-boundary checks (98.5%), under the "
        "bound of 99.0%",
    ]


def test_lateness_p99_over_the_bound_fails_and_at_the_bound_passes():
    r = clean_report()
    r["notifications"]["warnings"]["lateness_seconds"]["p99"] = 1.0
    assert failures(r) == []
    r["notifications"]["expiries"]["lateness_seconds"]["p99"] = 1.25
    assert failures(r) == ["expiries lateness p99 1.250 s over the bound of 1 s"]
    r["bounds"]["max_lateness_p99_seconds"] = 2.0
    assert failures(r) == []
    r["notifications"]["expiries"]["lateness_seconds"]["p99"] = None  # none received
    assert failures(r) == []


def test_occupancy_fails_only_under_its_share_of_the_checks():
    r = clean_report()
    r["occupancy"]["mismatches"] = 2  # 198 of 200 = 99.0%: at the bound
    assert failures(r) == []
    r["bounds"]["min_occupancy_share"] = 1.0
    assert failures(r) == [
        "occupancy equal to the data at 198 of 200 lot-boundary checks (99.0%), under the "
        "bound of 100.0%"
    ]
    r["occupancy"] = {"mismatches": 0, "checks": 0}  # interrupted before the first boundary
    assert failures(r) == []


def test_an_interrupted_run_skips_the_end_of_day_checks():
    r = clean_report()
    r["interrupted_at_day_time"] = "11:00"
    r["expiry_check"]["never_expired"] = 50
    r["active_after_drain"] = 7
    assert failures(r) == []


def test_only_this_runs_bookings_count_in_the_expiry_check():
    """A reused lot's owner also holds an earlier run's expiries: those are not this
    run's "expired without reaching end"; a booking of this run that was renewed and
    still expired is."""
    sim = SimpleNamespace(
        periods=[SimpleNamespace(booking_id=b) for b in ("ended", "renewed")],
        reached_end=lambda: {"ended"},
    )
    figures = expiry_figures(sim, Counter({"ended": 1, "earlier-run": 1}))
    assert figures["expired_once"] == 1 and figures["expired_without_reaching_end"] == 0
    figures = expiry_figures(sim, Counter({"ended": 1, "renewed": 1}))
    assert figures["expired_without_reaching_end"] == 1


def test_missing_and_unexpected_notifications_are_listed_to_look_up():
    start = 1_700_000_000.0  # 2023-11-14T22:13:20Z
    kept, lost = Period(0, "b1", start), Period(0, "b2", start + 600)
    frames = [
        Received(WARNING, "b1", start, start - 299, start - 299.5, 1),
        Received(WARNING, "b9", start + 1200, start + 901, start + 900.5, 2),
    ]
    sim = SimpleNamespace(
        lots=[SimpleNamespace(warning_seconds=300)],
        plan=SimpleNamespace(cars=[SimpleNamespace(lot=0)]),
        watchers={0: SimpleNamespace(received=frames, reconnects=0)},
        periods=[kept, lost],
        expected=lambda: [(WARNING, kept), (WARNING, lost)],
    )
    warnings = notification_figures(sim)["warnings"]
    assert (warnings["missing"], warnings["unexpected"]) == (1, 1)
    assert warnings["missing_examples"] == [
        {"car": 0, "booking_id": "b2", "end": "2023-11-14T22:23:20+00:00"}
    ]
    assert warnings["unexpected_examples"] == [
        {"car": 0, "booking_id": "b9", "end": "2023-11-14T22:33:20+00:00", "arrival": start + 901}
    ]

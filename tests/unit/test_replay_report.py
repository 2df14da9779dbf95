"""The replay report's arithmetic and its verdict (no services)."""

from services.replay.report import failures, percentile, spread


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
        k: {"missing": 0, "early": 0, "duplicates": 0, "unexpected": 0}
        for k in ("warnings", "expiries")
    }
    return {
        "notifications": kinds,
        "expiry_check": {
            "never_expired": 0,
            "expired_more_than_once": 0,
            "expired_without_reaching_end": 0,
        },
        "occupancy": {"mismatches": 0},
        "active_after_drain": 0,
        "bookings": {"errors": {}},
        "interrupted_at_day_time": None,
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
        "3 lot-boundary occupancy mismatches",
    ]


def test_an_interrupted_run_skips_the_end_of_day_checks():
    r = clean_report()
    r["interrupted_at_day_time"] = "11:00"
    r["expiry_check"]["never_expired"] = 50
    r["active_after_drain"] = 7
    assert failures(r) == []

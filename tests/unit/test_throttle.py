"""Login throttling rules (GCRA): a burst of attempts, then one per interval."""

import pytest

from services.api import throttle
from services.api.throttle import Limit, Refused

FIVE = Limit(attempts=5, window_seconds=300)  # then one a minute


def attempts(limit: Limit, times: list[float], tat: float = 0.0) -> list[bool]:
    """Whether each attempt at `times` is admitted, carrying the tat along."""
    out = []
    for now in times:
        after = throttle.take(tat, now, limit)
        out.append(after is not None)
        if after is not None:
            tat = after
    return out


def test_the_whole_allowance_at_once_then_one_per_interval():
    assert attempts(FIVE, [1000.0] * 6) == [True] * 5 + [False]
    # Then one more each minute, not sooner.
    assert attempts(FIVE, [1000.0] * 5 + [1059.0, 1060.0, 1061.0, 1119.0, 1120.0]) == (
        [True] * 5 + [False, True, False, False, True]
    )


def test_the_allowance_comes_back_a_window_after_the_last_attempt():
    assert attempts(FIVE, [1000.0] * 5 + [1300.0] * 5 + [1300.0]) == [True] * 10 + [False]


@pytest.mark.parametrize(("count", "window"), [(3, 1.0), (7, 10.0), (20, 300.0), (1, 0.1)])
def test_exactly_the_allowance_fits_in_one_instant_despite_float_rounding(count, window):
    limit = Limit(count, window)
    assert attempts(limit, [1_700_000_000.123] * (count + 1)) == [True] * count + [False]


def test_wait_seconds_says_when_the_next_attempt_fits():
    tat = 1000.0 + 300.0  # five attempts at t=1000
    assert throttle.wait_seconds(tat, 1000.0, FIVE) == pytest.approx(60.0)
    assert throttle.wait_seconds(tat, 1045.5, FIVE) == pytest.approx(14.5)
    assert throttle.wait_seconds(tat, 1060.0, FIVE) == 0.0
    assert throttle.take(tat, 1060.0, FIVE) is not None


def test_admit_takes_from_every_key_or_from_none():
    limits = {"account:a": Limit(2, 60), "address:x": Limit(10, 60)}
    now = 1000.0
    first = throttle.admit({}, limits, now)
    assert first == {"account:a": 1030.0, "address:x": 1006.0}
    second = throttle.admit(first, limits, now)
    assert second == {"account:a": 1060.0, "address:x": 1012.0}
    refused = throttle.admit(second, limits, now)
    assert refused == Refused("account:a", 30)


def test_admit_names_the_key_that_makes_the_caller_wait_longest():
    limits = {"account:a": Limit(1, 10), "address:x": Limit(1, 100)}
    tats = {"account:a": 1010.0, "address:x": 1100.0}
    assert throttle.admit(tats, limits, 1000.0) == Refused("address:x", 100)


def test_retry_after_is_whole_seconds_and_at_least_one():
    limit = Limit(1, 10)
    assert throttle.admit({"k": 1010.0}, {"k": limit}, 1009.6) == Refused("k", 1)
    assert throttle.admit({"k": 1010.0}, {"k": limit}, 1000.5) == Refused("k", 10)
    assert throttle.admit({"k": 1010.0}, {"k": limit}, 1010.0) == {"k": 1020.0}

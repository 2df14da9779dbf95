"""The replay's data cleaning, binning and traffic plan (no I/O, no services)."""

from datetime import date, datetime

import pytest

from services.replay.data import Reading, clean_day, parse_csv
from services.replay.plan import make_plan, planned_end, summarise

DAY = date(2016, 12, 16)
HEADER = "SystemCodeNumber,Capacity,Occupancy,LastUpdated\n"


def r(code: str, occupancy: int, at: str, capacity: int = 100) -> Reading:
    return Reading(code, capacity, occupancy, datetime.fromisoformat(f"2016-12-16 {at}"))


def test_parse_reads_rows_and_names_the_bad_line():
    rows = parse_csv(HEADER + "Broad Street,690,48,2016-12-16 07:59:09\n")
    assert rows == [r("Broad Street", 48, "07:59:09", 690)]
    with pytest.raises(ValueError, match="line 3"):
        parse_csv(HEADER + "A,1,1,2016-12-16 08:00:00\nA,one,1,2016-12-16 08:30:00\n")
    with pytest.raises(ValueError, match="line 1"):
        parse_csv("code,cap\n")


def test_readings_round_to_the_nearest_boundary_and_duplicates_go():
    readings = [
        r("A", 10, "07:59:09"),
        r("A", 10, "07:59:09"),  # exact duplicate
        r("A", 20, "08:26:00"),  # rounds to 08:30
        r("A", 30, "09:03:07"),
    ]
    day = clean_day(readings, DAY, 8, 9)
    assert day.boundaries == [8 * 3600, 8 * 3600 + 1800, 9 * 3600]
    assert day.lots[0].occupancy == (10, 20, 30)
    assert day.log.duplicates == 1 and day.log.rows == 4


def test_the_closer_of_two_readings_in_one_bin_wins():
    day = clean_day(
        [r("A", 5, "08:00:00"), r("A", 7, "08:14:00"), r("A", 9, "08:20:00")], DAY, 8, 8.5
    )
    assert day.lots[0].occupancy == (5, 9)
    assert day.log.same_bin == 1


def test_a_reading_just_outside_the_window_counts_for_its_edge():
    # NCP Grand Central's first reading on 2016-12-16 is at 07:40.
    day = clean_day([r("A", 33, "07:40:07"), r("A", 39, "08:30:12")], DAY, 8, 8.5)
    assert day.lots[0].occupancy == (33, 39)
    far = clean_day(
        [r("A", 1, "06:00:00"), r("A", 2, "08:00:00"), r("A", 3, "08:30:00")], DAY, 8, 8.5
    )
    assert far.log.off_grid == 1 and far.lots[0].occupancy == (2, 3)


def test_occupancy_is_clamped_to_capacity_and_zero():
    day = clean_day([r("A", 403, "08:00:00", 387), r("A", -8, "08:30:00", 387)], DAY, 8, 8.5)
    assert day.lots[0].occupancy == (387, 0)
    assert (day.log.clamped_high, day.log.clamped_low) == (1, 1)


def test_missing_boundaries_are_interpolated_and_sparse_lots_left_out():
    readings = [r("A", 10, "08:00:00"), r("A", 30, "09:00:00"), r("B", 1, "08:00:00")]
    day = clean_day(readings, DAY, 8, 9)
    assert [lot.code for lot in day.lots] == ["A"]
    assert day.lots[0].occupancy == (10, 20, 30)
    assert day.log.interpolated == 1
    assert "B" in day.log.dropped_lots


def test_other_days_and_other_lots_are_ignored_and_bad_windows_refused():
    other = Reading("A", 100, 50, datetime(2016, 12, 15, 8, 0))
    day = clean_day([other, r("A", 1, "08:00:00"), r("B", 2, "08:00:00")], DAY, 8, 8.5, ["A"])
    assert [lot.code for lot in day.lots] == ["A"] and day.lots[0].occupancy == (1, 1)
    with pytest.raises(ValueError, match="grid"):
        clean_day([r("A", 1, "08:00:00")], DAY, 8.25, 9)
    with pytest.raises(ValueError, match="unknown car park"):
        clean_day([r("A", 1, "08:00:00")], DAY, 8, 9, ["Z"])
    with pytest.raises(ValueError, match="no car park"):
        clean_day([r("A", 1, "08:00:00")], date(2016, 12, 17), 8, 9)


def series(values: list[int], capacity: int = 100):
    times = [f"{8 + i // 2:02d}:{30 * (i % 2):02d}:00" for i in range(len(values))]
    readings = [r("A", v, t, capacity) for v, t in zip(values, times, strict=True)]
    return clean_day(readings, DAY, 8, 8 + (len(values) - 1) / 2)


def test_the_plan_follows_the_data_at_every_boundary():
    day = series([20, 35, 35, 10, 25, 5, 5])
    plan = make_plan(day, seed=7)
    for k, t in enumerate(day.boundaries):
        assert plan.occupancy(0, t) == day.lots[0].occupancy[k]
    s = summarise(plan)
    assert s.cars == 20 + 15 + 15 and s.warm_up == 20 and s.arrivals == 30
    assert s.cancels + s.expiries_in_day == 25 + 20 and s.stay == 5


def test_flows_stay_inside_their_bins_away_from_the_boundaries():
    day = series([0, 40, 10])
    plan = make_plan(day, seed=3)
    start, size, margin = day.start_seconds, day.bin_seconds, plan.margin
    for car in plan.cars:
        assert start + margin <= car.arrive <= start + size - margin
        if car.leave is not None:
            assert start + size + margin <= car.leave <= start + 2 * size - margin
    assert [c.index for c in plan.cars] == list(range(len(plan.cars)))
    assert all(a.arrive <= b.arrive for a, b in zip(plan.cars, plan.cars[1:], strict=False))


def test_cars_present_at_the_start_arrive_during_a_warm_up_hour():
    plan = make_plan(series([50, 50]), seed=1)
    start = plan.data.start_seconds
    assert plan.first == start - 3600
    assert all(start - 3600 <= c.arrive <= start - plan.margin for c in plan.cars)


def test_a_car_leaving_at_its_booking_end_lets_it_expire_inside_the_bin():
    plan = make_plan(series([60, 60, 60, 0]), seed=5)
    for car in plan.cars:
        if car.at_end:
            end = planned_end(car.arrive, car.leave - 1e-6, 3600)
            assert car.leave == end
            assert car.leave <= plan.bin_end(car.leave) - 2 * plan.margin
    kinds = {c.at_end for c in plan.cars if c.leave is not None}
    assert kinds == {True, False}  # both ways of leaving occur


def test_the_plan_is_deterministic_by_seed():
    day = series([30, 60, 20, 40])
    assert make_plan(day, seed=11) == make_plan(day, seed=11)
    assert make_plan(day, seed=11).cars != make_plan(day, seed=12).cars
    plan = make_plan(day, seed=11)
    assert plan.sample(5) == plan.sample(5) and len(set(plan.sample(5))) == 5


def test_renewals_count_every_period_a_car_outlives():
    plan = make_plan(series([1, 1, 1, 1, 1]), seed=2)  # one car, 07:xx to 10:00
    (car,) = plan.cars
    # It stays until the last boundary (10:00): one renewal per period end before it.
    ends = [car.arrive + 3600 * n for n in range(1, 5) if car.arrive + 3600 * n < plan.last]
    assert summarise(plan).renewals == len(ends)

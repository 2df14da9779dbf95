"""The bookings benchmark's double-booking rule (benchmarks/bookings.py), no services."""

from benchmarks.bookings import double_bookings


def booking(id_: str, slot: str, status: str, start: str, end: str) -> dict:
    return {
        "id": id_,
        "slot_id": slot,
        "status": status,
        "start_time": f"2026-11-29T10:{start}+00:00",
        "end_time": f"2026-11-29T10:{end}+00:00",
    }


def test_back_to_back_bookings_and_other_slots_are_fine():
    assert (
        double_bookings(
            [
                booking("a", "s1", "expired", "00:00", "00:30"),
                booking("b", "s1", "active", "00:30", "01:00"),
                booking("c", "s2", "active", "00:10", "00:40"),
            ]
        )
        == []
    )


def test_overlapping_periods_and_two_active_bookings_are_double_bookings():
    found = double_bookings(
        [
            booking("a", "s1", "expired", "00:00", "00:30"),
            booking("b", "s1", "expired", "00:29", "00:59"),
            booking("c", "s2", "active", "00:00", "00:30"),
            booking("d", "s2", "active", "00:40", "01:10"),
        ]
    )
    assert len(found) == 2
    assert found[0].startswith("slot s1: a (") and "overlaps b" in found[0]
    assert found[1] == "slot s2: 2 active bookings ['c', 'd']"


def test_a_cancelled_booking_may_overlap_the_next_one():
    # Cancelled at 00:10 with end_time still 00:30; the next driver booked at 00:12.
    assert (
        double_bookings(
            [
                booking("a", "s1", "cancelled", "00:00", "00:30"),
                booking("b", "s1", "active", "00:12", "00:42"),
            ]
        )
        == []
    )

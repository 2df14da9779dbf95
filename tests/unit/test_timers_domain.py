from datetime import UTC, datetime, timedelta

from services.contracts.bookings import BookingEventData, Money
from services.timers import domain

END = datetime(2026, 11, 23, 12, 0, 6, 123456, tzinfo=UTC)


def booking(version=1) -> BookingEventData:
    return BookingEventData(
        booking_id="b1",
        lot_id="l",
        lot_name="L",
        slot_id="s",
        slot_label="1",
        driver_id="d",
        owner_id="o",
        status="active",
        start_time=END - timedelta(seconds=6),
        end_time=END,
        version=version,
        renewals=0,
        booking_seconds=6,
        warning_seconds=3,
        price=Money("0.00"),
        payment_method="cash",
        payment_status="pending",
    )


def test_warning_and_expiry_times_and_subjects():
    warning, expiry = domain.schedules_for(booking())
    assert warning.fire_at == END - timedelta(seconds=3)
    assert expiry.fire_at == END
    assert warning.subject == "timers.schedule.booking.b1.warning"
    assert expiry.target == "timers.fired.booking.expiry.b1"
    assert warning.body.version == expiry.body.version == 1


def test_message_ids_change_with_the_version_so_a_replacement_is_not_deduplicated():
    old = {s.msg_id for s in domain.schedules_for(booking(1))}
    new = {s.msg_id for s in domain.schedules_for(booking(2))}
    assert old.isdisjoint(new)
    assert "b1:2:expiry" in new


def test_rfc3339_is_utc_with_milliseconds_rounded_up_and_z():
    assert domain.rfc3339(END) == "2026-11-23T12:00:06.124Z"  # 06.123456: never early
    assert domain.rfc3339(END.replace(microsecond=123000)) == "2026-11-23T12:00:06.123Z"
    assert domain.rfc3339(END.replace(microsecond=999001)) == "2026-11-23T12:00:07.000Z"


def test_only_a_newer_version_replaces_a_pending_schedule():
    assert domain.replaces(None, 1)  # nothing pending: it fired, or was never made
    assert domain.replaces(1, 2)  # a renewal
    assert not domain.replaces(2, 2)  # the same schedule again: a redelivery
    assert not domain.replaces(3, 2)  # a late event must not undo a renewal


def test_the_schedule_book_guesses_the_sequence_a_publish_should_expect():
    book = domain.ScheduleBook()
    now = END - timedelta(seconds=10)
    assert book.expected("s", 1, now) == 0  # nothing known: expect an empty subject
    book.stored("s", 7, 1, END)
    assert book.expected("s", 1, now) is None  # stored already: nothing to publish
    assert book.expected("s", 0, now) is None  # a late, older event: nothing either
    assert book.expected("s", 2, now) == 7  # a renewal replaces what we stored
    assert book.expected("s", 2, END + timedelta(seconds=1)) == 0  # it fired: gone
    book.forget("s")
    assert book.expected("s", 1, now) == 0


def test_the_schedule_book_forgets_the_oldest_beyond_its_bound():
    book = domain.ScheduleBook(max_subjects=2)
    book.stored("a", 1, 1, END)
    book.stored("b", 2, 1, END)
    book.stored("a", 3, 2, END)  # written again: now the newest
    book.stored("c", 4, 1, END)
    assert len(book) == 2
    assert book.expected("b", 1, END - timedelta(seconds=1)) == 0  # forgotten
    assert book.expected("a", 2, END - timedelta(seconds=1)) is None

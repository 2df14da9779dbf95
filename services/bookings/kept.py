"""Bookings as this replica last wrote them, so a renewal can skip its read.

A renewal needs the booking with its lot's terms (services/bookings/storage.py,
`BookingRow`) to decide; reading it was one of a renewal's two PostgreSQL round trips.
A driver renews the same booking again and again (every warning, all day), and this
replica has usually written that booking itself last: at its create or its previous
renewal. So the bookings service keeps the rows it wrote, and a renewal decided on a
kept row writes only if nothing it decided on has changed since, checked in its own
statement (`storage.extend_kept`): the booking's status, version and payment status
(every change of its period, price or renewals bumps its version; cancel, decline,
expiry and payment verification change the other two) and the lot's `terms_version`
(bumped by triggers on every change of the lot, its slots or its staff). The parts a
renewal does not decide on but answers with (the car-wash order) come back from that
statement. A stale kept row, for instance one renewed through another replica, writes
nothing and the same statement returns the booking as it is, so a miss costs what a
read would have. No I/O here.
"""

from collections import OrderedDict

from services.bookings.storage import BookingRow

MAX_BOOKINGS = 50_000  # a large city's active bookings; about 1.2 kB each, 60 MB at the bound


class KeptBookings:
    """The last `BookingRow` written per booking id, at most `max_bookings` (the ones
    written longest ago dropped first)."""

    def __init__(self, max_bookings: int = MAX_BOOKINGS):
        self._max = max_bookings
        self._rows: OrderedDict[str, BookingRow] = OrderedDict()

    def get(self, booking_id: str) -> BookingRow | None:
        """The row kept for `booking_id`, or None."""
        return self._rows.get(booking_id)

    def put(self, row: BookingRow) -> None:
        """Keep `row` (as just written, with the lot terms it was decided on) in place of
        what was kept of that booking."""
        self._rows[row.id] = row
        self._rows.move_to_end(row.id)
        while len(self._rows) > self._max:
            self._rows.popitem(last=False)

    def drop(self, booking_id: str) -> None:
        """Forget `booking_id` (its kept row was found stale)."""
        self._rows.pop(booking_id, None)

    def __len__(self) -> int:
        return len(self._rows)

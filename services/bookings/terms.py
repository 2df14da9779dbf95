"""What a create copies from a lot, its slots and its staff, kept between creates.

A create needs the slot's label, the lot's terms (booking and warning seconds, grace,
renewal limit, prices, currency), its owner and name, and its staff: for the booking
row and the `booking.created` event. Reading them is one of a create's two PostgreSQL
round trips. They hardly ever change, so the bookings service keeps them per lot, with
the labels of all the lot's slots and the lot's `terms_version`: a counter triggers
bump on every change of the lot, its slots or its staff (migration bookings_0005). A
create from kept terms writes only if that version is still current, checked in its
own statement (storage.create_booking, `terms_version`); otherwise it writes nothing
and the handler reads afresh. So a lot edited through any replica applies to the next
create on every replica, as if nothing were kept. No I/O here.
"""

from typing import NamedTuple

from services.bookings.storage import SlotToBook

MAX_SLOTS = 200_000


class _Lot(NamedTuple):
    terms: SlotToBook  # a fresh read of one of its slots, at terms.terms_version
    labels: dict[str, str]  # slot id -> label, the slots not removed at that version


class SlotTerms:
    """Kept lot terms and slot labels, at most about `max_slots` slots in all (the
    lots kept longest ago dropped first).

    `get` gives a `SlotToBook` whose terms fields (lot id to staff ids, and
    `terms_version`) are the lot's as kept and `label` the slot's; its per-request
    fields (`booked_until`, `vehicle_is_mine`, `booked_by_request`) are not to be read.
    """

    def __init__(self, max_slots: int = MAX_SLOTS):
        self._max = max_slots
        self._lots: dict[str, _Lot] = {}
        self._lot_of: dict[str, str] = {}  # slot id -> lot id, for the kept lots

    def get(self, slot_id: str) -> SlotToBook | None:
        """The kept terms of `slot_id`'s lot with its label, or None."""
        lot_id = self._lot_of.get(slot_id)
        kept = None if lot_id is None else self._lots.get(lot_id)
        if kept is None:
            return None
        return kept.terms._replace(label=kept.labels[slot_id])

    def keeps(self, lot_id: str, version: int) -> bool:
        """Whether the lot's terms are kept as of `version`."""
        kept = self._lots.get(lot_id)
        return kept is not None and kept.terms.terms_version == version

    def put(self, terms: SlotToBook, labels: dict[str, str]) -> None:
        """Keep `terms` (a fresh read of one slot of the lot `terms.lot_id`) with the
        lot's slot labels, read at the same `terms.terms_version`, in place of what
        was kept of that lot."""
        self.drop(terms.lot_id)
        while self._lots and len(self._lot_of) + len(labels) > self._max:
            self.drop(next(iter(self._lots)))
        self._lots[terms.lot_id] = _Lot(terms, labels)
        for slot_id in labels:
            self._lot_of[slot_id] = terms.lot_id

    def drop(self, lot_id: str) -> None:
        """Forget the lot (its terms turned out stale, or it is gone)."""
        kept = self._lots.pop(lot_id, None)
        if kept is not None:
            for slot_id in kept.labels:
                if self._lot_of.get(slot_id) == lot_id:
                    del self._lot_of[slot_id]

    def __len__(self) -> int:
        """How many slots' terms are kept."""
        return len(self._lot_of)

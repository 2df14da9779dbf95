"""services/bookings/terms.py: kept lot terms and slot labels, bounded by slots."""

from decimal import Decimal

from services.bookings.storage import SlotToBook
from services.bookings.terms import SlotTerms


def terms(lot_id: str, version: int = 1) -> SlotToBook:
    return SlotToBook(
        lot_id=lot_id,
        label="read",
        booking_seconds=3600,
        warning_seconds=600,
        renew_grace_seconds=900,
        max_renewals=None,
        price_per_hour=Decimal("2.40"),
        currency="GBP",
        owner_id="owner",
        name="Lot",
        carwash_price=None,
        booked_until=None,
        vehicle_is_mine=False,
        staff_ids=[],
        booked_by_request=None,
        terms_version=version,
    )


def test_a_kept_lot_gives_each_of_its_slots_with_its_label():
    kept = SlotTerms()
    assert kept.get("s1") is None and not kept.keeps("L", 1)
    kept.put(terms("L", 1), {"s1": "A1", "s2": "A2"})
    assert kept.keeps("L", 1) and not kept.keeps("L", 2)
    assert kept.get("s2").label == "A2" and kept.get("s2").lot_id == "L"
    assert kept.get("s3") is None


def test_a_lot_put_again_replaces_its_slots_and_drop_forgets_it():
    kept = SlotTerms()
    kept.put(terms("L", 1), {"s1": "A1", "s2": "A2"})
    kept.put(terms("L", 2), {"s1": "A1"})  # s2 removed since
    assert kept.get("s2") is None and kept.get("s1").terms_version == 2 and len(kept) == 1
    kept.drop("L")
    kept.drop("L")
    assert kept.get("s1") is None and len(kept) == 0


def test_at_most_max_slots_the_lots_kept_longest_ago_dropped_first():
    kept = SlotTerms(max_slots=3)
    kept.put(terms("L1"), {"a": "A"})
    kept.put(terms("L2"), {"b": "B", "c": "C"})
    kept.put(terms("L3"), {"d": "D"})
    assert kept.get("a") is None and kept.get("b").label == "B" and kept.get("d").label == "D"
    assert len(kept) == 3

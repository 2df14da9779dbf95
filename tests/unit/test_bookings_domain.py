from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.bookings import domain
from services.bookings.domain import BookingClock, ExpiryDecision
from services.contracts.errors import DomainError

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("per_hour", "seconds", "expected"),
    [
        ("2.40", 3600, "2.40"),
        ("2.40", 6, "0.00"),
        ("3.00", 900, "0.75"),
        ("1.99", 1800, "1.00"),  # 0.995 rounds half-up
        ("10.00", 5400, "15.00"),
    ],
)
def test_booking_price_rounds_half_up_to_the_cent(per_hour, seconds, expected):
    assert domain.booking_price(Decimal(per_hour), seconds) == Decimal(expected)


@pytest.mark.parametrize("bad", ["abc", "-1.00", "1.234", "NaN", "Infinity", "10000000.00"])
def test_parse_money_rejects_what_is_not_a_price(bad):
    with pytest.raises(DomainError) as e:
        domain.parse_money(bad, "price_per_hour")
    assert e.value.code == "invalid" and "price_per_hour" in e.value.detail


def test_validate_lot_numbers_slots_from_a_count():
    labels = domain.validate_lot("A", "B", domain.LotSettings(60, 10), None, 3)
    assert labels == ["1", "2", "3"]


@pytest.mark.parametrize(
    ("settings", "labels", "count", "field"),
    [
        (domain.LotSettings(0, 0), None, 1, "booking_seconds"),
        (domain.LotSettings(60, 60), None, 1, "warning_seconds"),
        (domain.LotSettings(60, -1), None, 1, "warning_seconds"),
        (domain.LotSettings(60, 10), ["A", "A"], None, "unique"),
        (domain.LotSettings(60, 10), ["A", " "], None, "empty"),
        (domain.LotSettings(60, 10), None, None, "exactly one"),
        (domain.LotSettings(60, 10), ["A"], 1, "exactly one"),
        (domain.LotSettings(60, 10), None, 0, "slot_count"),
    ],
)
def test_validate_lot_names_the_broken_field(settings, labels, count, field):
    with pytest.raises(DomainError) as e:
        domain.validate_lot("A", "B", settings, labels, count)
    assert field in e.value.detail


def test_only_drivers_book_and_only_owners_or_admins_create_lots():
    assert domain.may_book(["driver"]) and not domain.may_book(["owner"])
    assert domain.may_create_lot(["owner"]) and domain.may_create_lot(["admin"])
    assert not domain.may_create_lot(["driver", "employee"])


def test_remaining_seconds_rounds_up_and_never_goes_negative():
    end = T0 + timedelta(seconds=10)
    assert domain.remaining_seconds(end, T0) == 10
    assert domain.remaining_seconds(end, T0 + timedelta(seconds=9.2)) == 1
    assert domain.remaining_seconds(end, T0 + timedelta(seconds=11)) == 0


def clock(status="active", version=1, end=T0, warned=None):
    return BookingClock(status, version, end, warned)


def test_an_expiry_warns_first_when_its_period_was_not_warned():
    assert domain.expiry_warns_first(clock())
    assert domain.expiry_warns_first(clock(version=2, warned=1))  # warned the last period only
    assert not domain.expiry_warns_first(clock(warned=1))


def test_warning_counts_once_per_period():
    assert domain.warning_is_due(clock(), 1)
    assert not domain.warning_is_due(clock(warned=1), 1)
    assert not domain.warning_is_due(clock(version=2), 1)  # renewed since
    assert not domain.warning_is_due(clock(status="cancelled"), 1)
    assert domain.warning_is_due(clock(version=2, warned=1), 2)


def test_expiry_only_for_the_same_active_period_and_never_early():
    after = T0 + timedelta(milliseconds=200)
    assert domain.decide_expiry(clock(), 1, after) is ExpiryDecision.EXPIRE
    assert domain.decide_expiry(clock(), 1, T0) is ExpiryDecision.EXPIRE
    assert domain.decide_expiry(clock(version=2), 1, after) is ExpiryDecision.DROP
    assert domain.decide_expiry(clock(status="expired"), 1, after) is ExpiryDecision.DROP
    assert domain.decide_expiry(clock(), 1, T0 - timedelta(seconds=1)) is ExpiryDecision.RETRY


TERMS = domain.RenewalTerms(booking_seconds=60, renew_grace_seconds=900, max_renewals=None)


def state(status="active", end=T0, version=3, renewals=0):
    return domain.BookingState(status, end, version, renewals)


def test_renewing_an_active_booking_moves_its_end_from_the_current_end():
    plan = domain.plan_renewal(state(), TERMS, T0 - timedelta(seconds=5), slot_free=False)
    assert plan == domain.Extend(T0 + timedelta(seconds=60), version=4, renewals=1)


def test_renewing_in_the_last_moment_still_extends_the_same_period():
    # The expiry may already be in flight; the new version makes it stale.
    plan = domain.plan_renewal(state(), TERMS, T0 + timedelta(milliseconds=50), False)
    assert isinstance(plan, domain.Extend) and plan.version == 4


def test_an_expired_booking_is_rebooked_from_now_within_the_grace():
    now = T0 + timedelta(seconds=100)
    plan = domain.plan_renewal(state("expired"), TERMS, now, slot_free=True)
    assert plan == domain.Rebook(now, now + timedelta(seconds=60), renewals=1)


@pytest.mark.parametrize(
    ("b", "now", "free", "terms", "reason"),
    [
        (state("expired"), T0 + timedelta(seconds=901), True, TERMS, "window closed"),
        (state("expired"), T0 + timedelta(seconds=10), False, TERMS, "taken"),
        (state("cancelled"), T0, True, TERMS, "cancelled booking cannot be renewed"),
        (state("declined"), T0, True, TERMS, "declined booking"),
        (state(renewals=2), T0, False, domain.RenewalTerms(60, 900, 2), "at most 2 renewals"),
    ],
)
def test_renewal_refusals_say_why(b, now, free, terms, reason):
    plan = domain.plan_renewal(b, terms, now, free)
    assert isinstance(plan, domain.Refuse) and reason in plan.reason


def test_the_largest_booking_price_fits_and_renewals_stop_before_the_column_overflows():
    # The most an hour may cost, for the longest booking: one period fits numeric(12, 2).
    period = domain.booking_price(Decimal("9999999.99"), 30 * 24 * 3600)
    assert period == Decimal("7199999992.80") <= domain.PRICE_MAX
    terms = domain.RenewalTerms(30 * 24 * 3600, 900, None, period)
    b = domain.BookingState("active", T0, 3, 0, period)
    plan = domain.plan_renewal(b, terms, T0, slot_free=False)
    assert isinstance(plan, domain.Refuse) and "book again" in plan.reason
    cheap = domain.BookingState("active", T0, 3, 0, Decimal("100.00"))
    assert isinstance(domain.plan_renewal(cheap, terms, T0, False), domain.Extend)


def test_carwash_moves_requested_in_progress_completed_in_order():
    assert domain.carwash_step("start", "requested") == "in_progress"
    assert domain.carwash_step("complete", "in_progress") == "completed"
    with pytest.raises(DomainError):
        domain.carwash_step("complete", "requested")
    with pytest.raises(DomainError):
        domain.carwash_step("start", "completed")


def test_carwash_needs_an_offer_an_active_booking_and_no_order_yet():
    domain.check_carwash_orderable("active", Decimal("5.00"), has_order=False)
    for args in (
        ("active", None, False),
        ("expired", Decimal("5"), False),
        ("active", Decimal("5"), True),
    ):
        with pytest.raises(DomainError):
            domain.check_carwash_orderable(*args)


def test_only_pending_cash_is_verified_by_hand():
    domain.check_verifiable("cash", "pending")
    for method, status in (("online", "paid"), ("cash", "verified")):
        with pytest.raises(DomainError):
            domain.check_verifiable(method, status)


@pytest.mark.parametrize(("raw", "plate"), [("ab-12 cd", "AB12CD"), (" b 123 ", "B123")])
def test_plates_are_normalised(raw, plate):
    assert domain.normalise_plate(raw) == plate


@pytest.mark.parametrize("raw", ["", "a", "AB!12", "X" * 13])
def test_bad_plates_are_refused(raw):
    with pytest.raises(DomainError):
        domain.normalise_plate(raw)


@pytest.mark.parametrize(
    ("status", "last_key", "slot_taken", "key", "expected"),
    [
        ("active", "k1", False, "k1", domain.Retry.EXTENDED),  # the first try extended it
        ("active", "k0", False, "k1", domain.Retry.NONE),  # another request changed it last
        ("active", None, False, "k1", domain.Retry.NONE),
        ("active", "k1", False, None, domain.Retry.NONE),  # no key: nothing to recognise
        ("expired", "k0", True, "k1", domain.Retry.REBOOKED),  # look for the new booking
        ("expired", "k0", False, "k1", domain.Retry.NONE),  # slot free: nobody rebooked it
        ("expired", "k1", True, None, domain.Retry.NONE),
        ("cancelled", "k1", True, "k1", domain.Retry.NONE),
    ],
)
def test_a_renewal_recognises_an_earlier_try_of_itself_only_by_its_key(
    status, last_key, slot_taken, key, expected
):
    assert domain.retried_renewal(status, last_key, slot_taken, key) is expected

from datetime import UTC, datetime, timedelta

from services.contracts import subjects
from services.contracts.bookings import BookingEventData, Money
from services.notifier import domain

END = datetime(2026, 11, 23, 12, 0, 6, tzinfo=UTC)


def data(driver="d", owner="o") -> BookingEventData:
    return BookingEventData(
        booking_id="b1",
        lot_id="l1",
        lot_name="Main St",
        slot_id="s1",
        slot_label="A3",
        driver_id=driver,
        owner_id=owner,
        status="active",
        start_time=END - timedelta(hours=1),
        end_time=END,
        version=1,
        renewals=0,
        booking_seconds=3600,
        warning_seconds=300,
        price=Money("2.40"),
        payment_method="cash",
        payment_status="pending",
    )


def test_created_tells_driver_and_owner_with_their_levels():
    planned = domain.plan(subjects.BOOKING_CREATED, domain.booking_facts(data()))
    by_user = {p.user_id: p for p in planned}
    assert by_user["d"].level == "success" and by_user["o"].level == "info"
    assert "A3" in by_user["d"].body and "Main St" in by_user["d"].body
    assert by_user["d"].data["booking_id"] == "b1" and by_user["o"].data["lot_id"] == "l1"


def test_expiring_goes_to_the_driver_only_and_says_how_to_renew():
    (p,) = domain.plan(subjects.BOOKING_EXPIRING, domain.booking_facts(data()))
    assert p.user_id == "d" and p.level == "warning"
    assert "/api/v1/bookings/b1/renew" in p.body and "5 min" in p.body


def test_owner_booking_own_lot_hears_once():
    planned = domain.plan(
        subjects.BOOKING_CREATED, domain.booking_facts(data(driver="x", owner="x"))
    )
    assert [p.user_id for p in planned] == ["x"]


def test_render_keeps_unknown_placeholders_visible():
    t = domain.Template("info", "normal", "Hi {name}", "{missing} stays")
    assert domain.render(t, {"name": "Ann"}) == ("Hi Ann", "{missing} stays")


def test_every_default_template_uses_only_known_placeholders():
    from services.contracts.bookings import CarwashEventData, PaymentFailedData, StaffEventData

    samples = {
        "booking": domain.booking_facts(data()),
        PaymentFailedData: domain.payment_failed_facts(
            PaymentFailedData(
                booking_id=None,
                lot_id="l",
                lot_name="L",
                slot_id="s",
                slot_label="1",
                driver_id="d",
                owner_id="o",
                amount=Money("1.00"),
                reason="card declined",
            )
        ),
        CarwashEventData: domain.carwash_facts(
            CarwashEventData(
                order_id="c",
                booking_id="b",
                lot_id="l",
                lot_name="L",
                slot_id="s",
                slot_label="1",
                driver_id="d",
                owner_id="o",
                status="requested",
                price=Money("5.00"),
            )
        ),
        StaffEventData: domain.staff_facts(
            StaffEventData(lot_id="l", lot_name="L", owner_id="o", employee_id="e", by_user_id="o")
        ),
    }
    for (type_, _), template in domain.DEFAULT_TEMPLATES.items():
        facts = samples[domain.DATA_TYPES.get(type_, "booking")]
        assert domain.placeholders(template.title + template.body) <= set(facts.fields), type_
        for audience in (a for (t, a) in domain.DEFAULT_TEMPLATES if t == type_):
            assert audience in facts.audiences, (type_, audience)


def test_time_left_reads_naturally():
    assert [domain.time_left(s) for s in (4, 59, 60, 300, 3600, 5400)] == [
        "4 s",
        "59 s",
        "1 min",
        "5 min",
        "1 h",
        "1 h 30 min",
    ]

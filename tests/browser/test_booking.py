"""A driver books in a real browser and watches the clock while the lot's owner watches
the dashboard in a second browser context: the countdown, the warning and expiry
toasts at the right moments, renewing after expiry, live slot status, no reloads.

Timing is asserted in windows (the machine is shared and the services are separate
processes), never as exact times.
"""

import re
import time

import pytest

from tests.browser.people import (
    countdown,
    expect,
    log_in,
    make_lot,
    people,
    slot,
    toast_arrives,
)
from tests.support import eventually

pytestmark = pytest.mark.e2e

BOOKING_SECONDS = 8
WARNING_SECONDS = 4
PHONE = {"width": 390, "height": 844}


async def test_driver_books_is_warned_expires_and_renews_while_the_owner_watches(
    system, browser, output
):
    who = await people(system)
    lot = await make_lot(
        system,
        who["owner"][1],
        booking_seconds=BOOKING_SECONDS,
        warning_seconds=WARNING_SECONDS,
        carwash_price={"amount": "5.00", "currency": "EUR"},
    )
    lot_id = lot["id"]

    # The owner's dashboard, on a desktop-sized window: every slot free.
    owner = await browser.open(system.base + "/")
    await log_in(owner, "olga@example.com")
    await expect(owner).to_have_url(re.compile("#/dashboard$"))
    await expect(slot(owner, lot_id, "1")).to_have_class(re.compile("slot-free"))

    # The driver, on a phone-sized window: lots, then the lot, a vehicle, a slot.
    driver = await browser.open(system.base + "/", **PHONE)
    await log_in(driver, "dan@example.com")
    card = driver.locator(f'.lot-card[data-lot="{lot_id}"]')
    await expect(card).to_contain_text("3 of 3 free")
    await card.get_by_role("link", name="Choose a slot").click()
    await driver.get_by_label("Plate").fill("ab-12 cd")
    await driver.get_by_role("button", name="Add vehicle").click()
    await expect(driver.get_by_label("Park with")).to_have_value(re.compile(".+"))
    await driver.get_by_label("Slot 1, free").check(force=True)
    async with driver.expect_response(
        lambda r: r.url.endswith("/api/v1/bookings") and r.request.method == "POST"
    ) as answer:
        await driver.get_by_role("button", name="Book slot 1").click()
    booked = (await (await answer.value).json())["id"]
    t0 = time.monotonic()

    # The booking page: a countdown from the server's remaining_seconds, going down.
    await expect(driver).to_have_url(re.compile(f"#/bookings/{booked}$"))
    await expect(driver.locator(".booking")).to_have_attribute("data-state", "active")
    first = await countdown(driver)
    assert BOOKING_SECONDS - 3 <= first <= BOOKING_SECONDS, first

    async def went_down() -> bool:
        return await countdown(driver) < first

    await eventually(went_down)

    # Coming back to the tab re-reads the booking from the server.
    async with driver.expect_request(
        lambda r: r.url.endswith(f"/api/v1/bookings/{booked}") and r.method == "GET"
    ):
        await driver.evaluate("window.dispatchEvent(new Event('focus'))")

    # The owner sees the slot booked and the booking listed, without reloading.
    await expect(slot(owner, lot_id, "1")).to_have_class(re.compile("slot-booked"))
    row = owner.locator(f'[data-lot="{lot_id}"] .booking-row[data-slot="1"]')
    await expect(row).to_contain_text("cash pending")
    await expect(row.get_by_role("button", name="Verify cash payment for slot 1")).to_be_visible()
    await owner.screenshot(path=str(output / "owner-dashboard.png"), full_page=True)

    # The warning toast at end - warning_seconds, with the page in its expiring state.
    warned = await toast_arrives(driver, "booking.expiring") - t0
    assert WARNING_SECONDS - 2 <= warned <= WARNING_SECONDS + 4, warned
    await expect(driver.locator(".toast-warning")).to_be_visible()
    await expect(driver.locator(".booking")).to_have_attribute(
        "data-state", re.compile("expiring|ending")
    )
    await driver.screenshot(path=str(output / "booking-page-expiring.png"), full_page=True)

    # The expiry toast at the end; the page says expired and offers to renew.
    expired = await toast_arrives(driver, "booking.expired") - t0
    assert BOOKING_SECONDS - 1 <= expired <= BOOKING_SECONDS + 6, expired
    assert expired > warned
    await expect(driver.locator(".booking")).to_have_attribute("data-state", "expired")
    await expect(driver.locator(".countdown")).to_have_text("00:00:00")
    await driver.screenshot(path=str(output / "booking-page-expired.png"), full_page=True)

    # The owner sees the slot free again, still without reloading.
    await expect(slot(owner, lot_id, "1")).to_have_class(re.compile("slot-free"), timeout=10_000)
    await expect(row).to_have_count(0)

    # Renewing after expiry books the same slot again from now: a new booking page.
    await driver.get_by_role("button", name="Renew (book again)").click()
    await expect(driver).not_to_have_url(re.compile(f"#/bookings/{booked}$"))
    await expect(driver.locator(".booking")).to_have_attribute("data-state", "active")
    again = await countdown(driver)
    assert WARNING_SECONDS < again <= BOOKING_SECONDS, again
    await expect(slot(owner, lot_id, "1")).to_have_class(re.compile("slot-booked"))
    await expect(row).to_have_count(1)
    await driver.screenshot(path=str(output / "booking-page.png"), full_page=True)
    await owner.screenshot(path=str(output / "owner-dashboard-renewed.png"), full_page=True)

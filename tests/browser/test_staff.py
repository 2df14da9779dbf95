"""Everyone's other jobs in real browsers: a driver registers and books with a car wash;
the admin creates an employee and assigns them to the lot; the employee verifies the
cash and runs the wash; the owner declines with a reason; the driver cancels another
booking. Each side sees the others' changes live."""

import re

import pytest

from tests.browser.people import expect, log_in, make_lot, people, toast_arrives

pytestmark = pytest.mark.e2e


async def test_register_book_assign_verify_wash_decline_and_cancel(system, browser, output):
    who = await people(system)
    lot = await make_lot(
        system,
        who["owner"][1],
        name="Harbour Park",
        booking_seconds=600,
        warning_seconds=60,
        carwash_price={"amount": "5.00", "currency": "EUR"},
    )

    # A new driver registers on the login page and books slot 1 with a car wash.
    driver = await browser.open(system.base + "/")
    await driver.get_by_role("link", name="Create an account").click()
    await driver.get_by_label("Full name").fill("Rita Driver")
    await driver.get_by_label("Email").fill("rita@example.com")
    await driver.get_by_label("Password").fill("rita-secret")
    await driver.get_by_role("button", name="Create account").click()
    await expect(driver.locator(".conn")).to_have_text("Live")
    await expect(driver.locator(".who")).to_have_text("Rita Driver")
    await driver.locator(f'.lot-card[data-lot="{lot["id"]}"]').get_by_role("link").first.click()
    await driver.get_by_label("Slot 1, free").check(force=True)
    await driver.get_by_label("Add a car wash").check()
    await driver.get_by_role("button", name="Book slot 1").click()
    await expect(driver.locator(".booking")).to_have_attribute("data-state", "active")
    booking_url = driver.url

    # The admin creates an employee and assigns them to the lot.
    admin = await browser.open(system.base + "/")
    await log_in(admin, "admin@example.com")
    await admin.get_by_text("Create a user").click()
    await admin.get_by_label("Full name").fill("Emma Employee")
    await admin.get_by_label("Email").fill("emma@example.com")
    await admin.get_by_label("Password").fill("emma-secret")
    await admin.get_by_role("button", name="Create user").click()
    await expect(admin.locator(".toast-success")).to_contain_text("emma@example.com")
    await admin.get_by_label("Lot", exact=True).select_option(label="Harbour Park")
    await expect(admin.get_by_text("Nobody is assigned yet.")).to_be_visible()
    await admin.get_by_label("Employee", exact=True).select_option(
        label="Emma Employee · emma@example.com"
    )
    await admin.get_by_role("button", name="Assign", exact=True).click()
    await expect(admin.get_by_role("list", name="Staff of this lot")).to_contain_text(
        "Emma Employee"
    )

    # The employee's dashboard has the lot and the booking; employees do not decline.
    employee = await browser.open(system.base + "/")
    await log_in(employee, "emma@example.com", "emma-secret")
    row = employee.locator(f'[data-lot="{lot["id"]}"] .booking-row[data-slot="1"]')
    await expect(row).to_contain_text("wash requested")
    await expect(row.get_by_role("button", name=re.compile("^Decline"))).to_have_count(0)
    await row.get_by_role("button", name="Verify cash payment for slot 1").click()
    await expect(row).to_contain_text("cash verified")
    await toast_arrives(driver, "payment.verified")
    await row.get_by_role("button", name="Start car wash at slot 1").click()
    await expect(row).to_contain_text("wash in progress")
    await row.get_by_role("button", name="Complete car wash at slot 1").click()
    await expect(row).to_contain_text("wash completed")
    await toast_arrives(driver, "carwash.completed")
    await expect(driver.locator(".facts")).to_contain_text(re.compile("verified", re.I))
    await expect(driver.locator(".facts")).to_contain_text(re.compile("completed", re.I))
    await employee.screenshot(path=str(output / "employee-dashboard.png"), full_page=True)

    # The owner declines it with a reason; the driver hears why and the page says so.
    owner = await browser.open(system.base + "/")
    await log_in(owner, "olga@example.com")
    owner_row = owner.locator(f'[data-lot="{lot["id"]}"] .booking-row[data-slot="1"]')
    await owner_row.get_by_role("button", name="Decline the booking of slot 1").click()
    await owner_row.get_by_label("Reason (told to the driver)").fill("the lot closes early")
    await owner_row.get_by_role("button", name="Decline booking").click()
    await expect(owner_row).to_have_count(0)
    await toast_arrives(driver, "booking.declined", text="the lot closes early")

    # The owner opens a second lot from the dashboard.
    await owner.get_by_text("Open a new lot").click()
    await owner.get_by_label("Name").fill("Pier Lot")
    await owner.get_by_label("Address").fill("3 Pier Road")
    await owner.get_by_label("Number of slots").fill("2")
    await owner.get_by_label("Booking length (minutes)").fill("1.5")
    await owner.get_by_label("Warning before the end (minutes)").fill("0.5")
    await owner.get_by_role("button", name="Open lot").click()
    pier = owner.locator(".lot-panel").filter(has_text="Pier Lot")
    await expect(pier).to_contain_text("2 of 2 free")
    await expect(pier).to_contain_text("bookings of 90 s")
    await expect(driver.locator(".booking")).to_have_attribute("data-state", "declined")
    assert driver.url == booking_url

    # The driver books slot 2 and cancels it (after confirming).
    await driver.goto(system.base + f"/#/lots/{lot['id']}")
    await driver.get_by_label("Slot 2, free").check(force=True)
    await driver.get_by_role("button", name="Book slot 2").click()
    await expect(driver.locator(".booking")).to_have_attribute("data-state", "active")
    await driver.get_by_role("button", name="Cancel booking").click()
    await driver.get_by_role("button", name="Yes, cancel").click()
    await expect(driver.locator(".booking")).to_have_attribute("data-state", "cancelled")
    await toast_arrives(owner, "booking.cancelled")
    await driver.get_by_role("link", name="Bookings", exact=True).click()
    await expect(driver.locator(".list-row")).to_have_count(2)
    await driver.screenshot(path=str(output / "driver-bookings.png"), full_page=True)

"""Notifications in real browsers: an admin sends from the admin page, the driver's two
browser contexts both get the toast and the bell, reading in one changes the bell in
the other; and a driver whose socket is cut gets what was missed once it reconnects."""

import asyncio
import re

import pytest

from tests.browser.people import bell, expect, log_in, make_lot, people, toast_arrives

pytestmark = pytest.mark.e2e


async def test_the_bell_follows_reads_made_in_another_context_of_the_same_user(
    system, browser, output
):
    who = await people(system)
    phone = await browser.open(system.base + "/", width=390, height=844)
    laptop = await browser.open(system.base + "/")
    for page in (phone, laptop):
        await log_in(page, "dan@example.com")
        assert await bell(page) == 0

    # The admin sends an alert to every driver, then one more, from the admin page.
    admin = await browser.open(system.base + "/")
    await log_in(admin, "admin@example.com")
    await expect(admin).to_have_url(re.compile("#/admin$"))
    for title, level in (("Lot closes at 22:00", "warning"), ("Welcome aboard", "success")):
        await admin.get_by_label("Title", exact=True).fill(title)
        await admin.get_by_label("Message", exact=True).fill(
            f"{title}: a message from the admin page."
        )
        await admin.get_by_label("Level", exact=True).select_option(level)
        await admin.get_by_role("button", name="Send").click()
        await expect(
            admin.locator(".toast-success").filter(has_text="Sent to 1 person")
        ).to_have_count(1)
        await admin.locator(".toast-success .toast-close").first.click()
        for page in (phone, laptop):
            await toast_arrives(page, "admin.alert", text=title)
            await expect(page.locator(f".toast-{level}").filter(has_text=title)).to_be_visible()
    for page in (phone, laptop):
        await expect(page.locator("#unread-count")).to_have_text("2")

    # Toasts can be dismissed by hand.
    await phone.locator(".toast-success").get_by_role("button", name="Dismiss").click()
    await expect(phone.locator(".toast-success")).to_have_count(0)

    # The laptop reads one in the notification center: the phone's bell drops to 1.
    await laptop.get_by_role("link", name=re.compile("^Notifications, 2 unread")).click()
    await expect(laptop.locator(".inbox-item")).to_have_count(2)
    await laptop.get_by_role("button", name="Mark “Welcome aboard” read").click()
    await expect(phone.locator("#unread-count")).to_have_text("1")
    await expect(laptop.locator("#unread-count")).to_have_text("1")

    # The phone opens its center and marks all read: the laptop's list and bell follow.
    await phone.locator(".bell").click()
    await expect(phone.locator(".inbox-item.is-read")).to_have_count(1)
    await phone.get_by_role("button", name="Mark all read").click()
    await expect(laptop.locator("#unread-count")).to_have_text("0")
    await expect(laptop.locator(".inbox-item.is-read")).to_have_count(2)
    await laptop.screenshot(path=str(output / "notification-center.png"), full_page=True)
    await admin.screenshot(path=str(output / "admin-page.png"), full_page=True)

    # Paging: 21 more make 23, a page holds 20, "Load older" brings the rest.
    async with system.http() as http:
        for i in range(21):
            r = await http.post(
                "/admin/notifications",
                headers={"Authorization": f"Bearer {who['admin'][1]}"},
                json={"audience": {"user_ids": [who["driver"][0]]}, "title": f"N{i}", "body": "."},
            )
            assert r.status_code == 202, r.text
    await expect(laptop.locator("#unread-count")).to_have_text("21")
    await laptop.reload()
    await expect(laptop.locator(".inbox-item")).to_have_count(20)
    await expect(laptop.locator(".inbox-item").first).to_contain_text("N20")
    await laptop.get_by_role("button", name="Load older").click()
    await expect(laptop.locator(".inbox-item")).to_have_count(23)
    await expect(laptop.get_by_role("button", name="Load older")).to_have_count(0)
    await laptop.get_by_label("Unread only").check()
    await expect(laptop.locator(".inbox-item")).to_have_count(20)


async def test_a_driver_offline_during_warning_and_expiry_gets_both_on_reconnect(
    system, browser, output
):
    who = await people(system)
    lot = await make_lot(system, who["owner"][1], booking_seconds=6, warning_seconds=3)
    driver = await browser.open(system.base + "/")
    await log_in(driver, "dan@example.com")
    await driver.goto(system.base + f"/#/lots/{lot['id']}")
    await driver.get_by_label("Slot 2, free").check(force=True)
    await driver.get_by_role("button", name="Book slot 2").click()
    await expect(driver.locator(".booking")).to_have_attribute("data-state", "active")
    await toast_arrives(driver, "booking.created")

    # The api goes away: the page says so and keeps counting down on its own.
    system.stop("api")
    await expect(driver.locator(".conn")).to_have_text(re.compile("Reconnecting|Offline"))
    await asyncio.sleep(7)  # on purpose: warning and expiry happen on the server meanwhile
    await expect(driver.locator(".countdown")).to_have_text("00:00:00")

    # Back: the socket reconnects by itself, resumes, and the missed toasts show.
    system.start("api")
    await system.wait_ready()
    await expect(driver.locator(".conn")).to_have_text("Live", timeout=30_000)
    await toast_arrives(driver, "booking.expiring", timeout=10)
    await toast_arrives(driver, "booking.expired", timeout=10)
    await expect(driver.locator(".booking")).to_have_attribute("data-state", "expired")
    await expect(driver.locator("#unread-count")).to_have_text("3")
    await driver.screenshot(path=str(output / "after-reconnect.png"), full_page=True)

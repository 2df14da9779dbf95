"""What a new user gets from the README's first command: `parkmate dev` prints an
address, the page there offers the demo accounts, and the demo driver can book."""

import asyncio
import re
import signal

import pytest

from services.runtime.embedded import free_port
from tests.browser.people import expect, toast_arrives
from tests.e2e.test_dev import start_dev, wait_for_address

pytestmark = pytest.mark.e2e


async def test_parkmate_dev_page_logs_in_a_demo_account_that_books(browser, tmp_path, output):
    port = free_port()
    proc = start_dev(tmp_path / "state", port)
    try:
        address = await asyncio.to_thread(wait_for_address, proc)
        page = await browser.open(address, width=390, height=844)
        await expect(page.get_by_role("heading", name="Log in with a demo account")).to_be_visible()
        await page.screenshot(path=str(output / "dev-login.png"), full_page=True)
        await page.get_by_role("button", name="Log in as driver@example.com").click()
        await expect(page.locator(".conn")).to_have_text("Live", timeout=15_000)
        card = page.locator(".lot-card").filter(has_text="Demo lot")
        await expect(card).to_contain_text("10 of 10 free")
        await card.get_by_role("link", name="Choose a slot").click()
        await page.get_by_label("Slot 3, free").check(force=True)
        await page.get_by_role("button", name="Book slot 3").click()
        # The demo lot's bookings last two minutes.
        await expect(page.locator(".countdown")).to_have_text(re.compile(r"00:0[12]:\d\d"))
        await toast_arrives(page, "booking.created")
        await page.screenshot(path=str(output / "dev-booking.png"), full_page=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 60) == 0

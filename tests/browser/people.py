"""What a person does in the web UI, as Playwright steps, and the setup the tests share.

Playwright is imported inside the functions, so that without it the tests are skipped
by the `chromium_path` fixture (conftest.py) instead of failing to import.
"""

import re
import time
from typing import Any

PASSWORD = "secret-pw"  # what tests.e2e.conftest.System.user gives everyone


def expect(locator):
    from playwright.async_api import expect

    return expect(locator)


async def log_in(page: Any, email: str, password: str = PASSWORD) -> None:
    """Log in through the form and wait for the live socket to be up."""
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in", exact=True).click()
    await expect(page.locator(".conn")).to_have_text("Live", timeout=15_000)


def seconds(hms: str) -> int:
    """Seconds of an "HH:MM:SS" countdown."""
    assert re.fullmatch(r"\d\d:\d\d:\d\d", hms), hms
    h, m, s = map(int, hms.split(":"))
    return h * 3600 + m * 60 + s


async def countdown(page: Any) -> int:
    return seconds(await page.locator(".countdown").inner_text())


async def toast_arrives(
    page: Any, type_: str, timeout: float = 20.0, text: str | None = None
) -> float:
    """Wait for a toast of notification `type_` (with `text` in it, if given); the
    monotonic time it was seen."""
    toast = page.locator(f'.toast[data-type="{type_}"]')
    if text is not None:
        toast = toast.filter(has_text=text)
    await expect(toast.first).to_be_visible(timeout=timeout * 1000)
    return time.monotonic()


def slot(page: Any, lot_id: str, label: str):
    """A slot tile inside a lot's panel (owner dashboard) or on the lot page."""
    return page.locator(f'[data-lot="{lot_id}"] .slot[data-slot="{label}"]')


async def bell(page: Any) -> int:
    return int(await page.locator("#unread-count").inner_text())


async def make_lot(system, owner_token: str, **settings) -> dict:
    async with system.http() as http:
        r = await http.post(
            "/lots",
            headers={"Authorization": f"Bearer {owner_token}"},
            json={
                "name": "Quick Park",
                "address": "1 Main St",
                "slot_count": 3,
                "price_per_hour": {"amount": "2.40", "currency": "EUR"},
                **settings,
            },
        )
        assert r.status_code == 201, r.text
        return r.json()


async def people(system) -> dict[str, tuple[str, str]]:
    """An admin (made with the CLI), an owner and a driver: {name: (id, token)}."""
    system.admin("admin@example.com")
    async with system.http() as http:
        login = await http.post(
            "/auth/login", json={"email": "admin@example.com", "password": PASSWORD}
        )
        admin = login.json()["access_token"]
        me = (await http.get("/me", headers={"Authorization": f"Bearer {admin}"})).json()
        return {
            "admin": (me["id"], admin),
            "owner": await system.user(http, "olga@example.com", ["owner"], admin),
            "driver": await system.user(http, "dan@example.com"),
        }

"""Backup and restore (docs/operations.md, "Backup and restore"): bookings whose warnings
and expiries are pending are backed up with `parkmate backup`; every server is stopped
and its data wiped; new, empty servers get `parkmate restore`; then the services start.
Every pending warning and expiry must fire exactly once, and none before its time.

Three lots, three bookings each, whose timers fall at different moments of the outage:
- `before`: warned 3 s after booking, before the backup (must not be warned again),
  expired after the restart;
- `outage`: warned while no NATS server runs at all, expired while NATS runs again but
  no service does: both fire late, once;
- `after`: due after the restore: warned and expired on time, or as soon as the services
  are back if they start slowly, never early.

The overdue sweep is pushed out of reach (PARKMATE_OVERDUE_SECONDS), so every expiry
here is a fired timer from the restored TIMERS stream, not the safety net.
"""

import os
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import pytest

from services.contracts import subjects
from services.contracts.envelope import decode_envelope
from services.runtime import embedded
from tests.e2e.conftest import System, auth
from tests.support import eventually

pytestmark = pytest.mark.e2e

# name -> (booking_seconds, warning_seconds)
LOTS = {"before": (70, 67), "outage": (40, 20), "after": (70, 25)}
PER_LOT = 3
KINDS = (subjects.BOOKING_EXPIRING, subjects.BOOKING_EXPIRED)


def parkmate(env: dict[str, str], *args: str) -> str:
    """Run the operator command `parkmate ARGS` and return its output; fail on exit != 0."""
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def start_servers(folder: Path) -> tuple[embedded.ManagedProcess, embedded.ManagedProcess]:
    nats_server = embedded.start_nats(folder / "nats")
    try:
        return nats_server, embedded.start_postgres(folder / "postgres", fast_unsafe=True)
    except BaseException:
        nats_server.stop()
        raise


def operator_env(nats_url: str, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARKMATE_")}
    return env | {"PARKMATE_NATS_URL": nats_url, "PARKMATE_DATABASE_URL": database_url}


def system_on(nats_url: str, database_url: str, log_dir: Path) -> System:
    log_dir.mkdir(parents=True, exist_ok=True)
    system = System(nats_url, database_url, log_dir)
    system.env["PARKMATE_OVERDUE_SECONDS"] = "3600"
    return system


async def timer_events(nats_url: str) -> list[tuple[str, str, datetime]]:
    """(type, booking id, event time) of every booking.expiring and booking.expired on
    EVENTS, in stream order."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        last = (await js.stream_info(subjects.EVENTS_STREAM)).state.last_seq
        out = []
        for seq in range(1, last + 1):
            msg = await js.get_msg(subjects.EVENTS_STREAM, seq)
            if msg.subject in KINDS:
                event = decode_envelope(msg.data)
                out.append((event.type, event.subject or "", event.time))
        return out
    finally:
        await nc.close()


async def wait_until(moment: datetime) -> None:
    """Return once this host's clock has passed `moment` (the outage lasts until then)."""
    await eventually(lambda: datetime.now(UTC) > moment, timeout=120, interval=0.1)


async def book_everything(system: System) -> dict[str, list[dict]]:
    """Lots as in LOTS and one booking per driver: lot name -> its bookings (API views)."""
    system.admin()
    booked: dict[str, list[dict]] = {}
    async with system.http() as http:
        login = await http.post(
            "/auth/login", json={"email": "admin@example.com", "password": "secret-pw"}
        )
        admin = login.json()["access_token"]
        _, owner = await system.user(http, "owner@example.com", ["owner"], admin)
        drivers = [
            (await system.user(http, f"driver{i}@example.com"))[1]
            for i in range(len(LOTS) * PER_LOT)
        ]
        lots = {}
        for name, (booking_seconds, warning_seconds) in LOTS.items():
            r = await http.post(
                "/lots",
                headers=auth(owner),
                json={
                    "name": f"Lot {name}",
                    "address": "1 Backup Street",
                    "slot_count": PER_LOT,
                    "booking_seconds": booking_seconds,
                    "warning_seconds": warning_seconds,
                    "price_per_hour": {"amount": "3.60", "currency": "EUR"},
                },
            )
            assert r.status_code == 201, r.text
            lots[name] = r.json()
        for k, (name, lot) in enumerate(lots.items()):
            booked[name] = []
            for i, slot in enumerate(lot["slots"]):
                token = drivers[k * PER_LOT + i]
                r = await http.post("/bookings", headers=auth(token), json={"slot_id": slot["id"]})
                assert r.status_code == 201, r.text
                booked[name].append(r.json() | {"token": token})
    return booked


def due(booking: dict, lot: str) -> tuple[datetime, datetime]:
    """(warning time, expiry time) of a booking of lot `lot`."""
    end = datetime.fromisoformat(booking["end_time"])
    return end - timedelta(seconds=LOTS[lot][1]), end


async def test_a_restored_backup_fires_every_pending_timer_once_and_never_early(tmp_path):
    backup_dir = tmp_path / "backup"
    first = tmp_path / "first"
    nats_url_1, db_url_1 = "", ""
    nats_server, postgres = start_servers(first)
    try:
        nats_url_1, db_url_1 = nats_server.url, postgres.url
        parkmate(operator_env(nats_url_1, db_url_1), "migrate")
        system = system_on(nats_url_1, db_url_1, tmp_path / "logs-1")
        for name in ("bookings", "timers", "notifier", "api"):
            system.start(name)
        try:
            await system.wait_ready()
            booked = await book_everything(system)
            # The `before` lot's warnings fire and are handled before the backup.
            await eventually(
                lambda: _count(timer_events(nats_url_1), subjects.BOOKING_EXPIRING, PER_LOT),
                timeout=30,
            )
            for stream, durable in (
                ("EVENTS", "timers"),
                ("EVENTS", "notifier"),
                ("TIMERS", "bookings-timers"),
            ):
                await system.consumer_caught_up(stream, durable)
        finally:
            codes = system.shutdown()
        assert all(code == 0 for code in codes.values()), codes
        out = parkmate(operator_env(nats_url_1, db_url_1), "backup", str(backup_dir))
        backed_up_at = datetime.now(UTC)
        assert "EVENTS" in out and "TIMERS" in out, out
        # The `outage` lot's timers are still to come at the backup, or this test does not
        # test what it says (a very slow machine).
        assert all(due(b, "outage")[0] > backed_up_at for b in booked["outage"]), backed_up_at
    finally:
        nats_server.stop()
        postgres.stop()
    shutil.rmtree(first)  # nothing of the old servers is left

    # Nothing runs until the `outage` lot's warnings are due.
    last_warning = max(due(b, "outage")[0] for b in booked["outage"])
    await wait_until(last_warning + timedelta(seconds=0.5))
    nats_server, postgres = start_servers(tmp_path / "second")
    system = None
    try:
        env = operator_env(nats_server.url, postgres.url)
        out = parkmate(env, "restore", str(backup_dir))
        restored_at = datetime.now(UTC)
        assert "restored PostgreSQL" in out, out
        # Services stay down until the `outage` lot's expiries are due too.
        last_expiry = max(due(b, "outage")[1] for b in booked["outage"])
        await wait_until(last_expiry + timedelta(seconds=0.5))
        restarted_at = datetime.now(UTC)
        system = system_on(nats_server.url, postgres.url, tmp_path / "logs-2")
        for name in ("bookings", "timers", "notifier", "api"):
            system.start(name)
        await system.wait_ready()
        ready_at = datetime.now(UTC)
        # The `after` lot's timers were still to come at the restore (the server must not
        # fire them early) and its expiries once everything runs again; else this test
        # does not test what it says (a very slow machine).
        for b in booked["after"]:
            assert due(b, "after")[0] > restored_at, restored_at
            assert due(b, "after")[1] > ready_at, ready_at

        every = len(LOTS) * PER_LOT
        await eventually(
            lambda: _count(timer_events(nats_server.url), subjects.BOOKING_EXPIRED, every),
            timeout=90,
            interval=0.5,
        )
        # Settle: every fired timer handled, every event turned into notifications.
        await system.consumer_caught_up("TIMERS", "bookings-timers")
        await system.notifier_caught_up()
        events = await timer_events(nats_server.url)

        counts = Counter((kind, booking) for kind, booking, _ in events)
        when = {(kind, booking): at for kind, booking, at in events}
        for lot, bookings in booked.items():
            for b in bookings:
                warn_at, end = due(b, lot)
                for kind, at in ((subjects.BOOKING_EXPIRING, warn_at), (KINDS[1], end)):
                    key = (kind, b["id"])
                    assert counts[key] == 1, (lot, kind, counts[key])
                    assert when[key] >= at, (lot, kind, "early", when[key], at)
                if lot == "before":
                    assert when[(subjects.BOOKING_EXPIRING, b["id"])] < backed_up_at
                if lot == "outage":  # late, once the restored servers and services ran
                    assert when[(subjects.BOOKING_EXPIRING, b["id"])] > restarted_at
                    assert when[(subjects.BOOKING_EXPIRED, b["id"])] > restarted_at

        # What each driver sees: one warning and one expiry in the inbox, the booking over.
        async with system.http() as http:
            for bookings in booked.values():
                for b in bookings:
                    r = await http.get("/notifications", headers=auth(b["token"]))
                    assert r.status_code == 200, r.text
                    kinds = Counter(n["type"] for n in r.json()["items"])
                    assert kinds[subjects.BOOKING_EXPIRING] == 1, kinds
                    assert kinds[subjects.BOOKING_EXPIRED] == 1, kinds
                    r = await http.get(f"/bookings/{b['id']}", headers=auth(b["token"]))
                    assert r.json()["status"] == "expired", r.text
    finally:
        codes = system.shutdown() if system else {}
        nats_server.stop()
        postgres.stop()
    assert all(code == 0 for code in codes.values()), codes


@dataclass(frozen=True)
class Seen:
    """How many events of `kind` are on EVENTS: true once `expected` are; shown as
    "7 of 9 booking.expired" when a wait gives up."""

    kind: str
    count: int
    expected: int

    def __bool__(self) -> bool:
        return self.count >= self.expected

    def __repr__(self) -> str:
        return f"{self.count} of {self.expected} {self.kind}"


async def _count(events, kind: str, expected: int) -> Seen:
    """`Seen` of `kind` in `events` (an awaitable of timer_events)."""
    return Seen(kind, sum(1 for k, _, _ in await events if k == kind), expected)

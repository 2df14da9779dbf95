"""`parkmate dev`: the whole system on one machine, supervised, stopped cleanly.

Order of start: NATS and PostgreSQL (embedded unless PARKMATE_NATS_URL /
PARKMATE_DATABASE_URL are set), migrations, the four services as child processes
(bookings, timers and notifier each with a free PARKMATE_PROBE_PORT, so each serves
/metrics), readiness checks, demo data, the process list (`<state-dir>/processes.json`,
see services/runtime/processes.py), then the address is printed. A service that exits on its
own is reported and everything stops with a non-zero exit code: nothing is restarted
behind the operator's back. Ctrl-C or SIGTERM stops the services first, then the
servers it started.
"""

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from services.runtime import embedded, natsconn, processes
from services.runtime.migrate import upgrade_all

SERVICES = ("bookings", "timers", "notifier", "api")
WORKERS = ("bookings", "timers", "notifier")  # no HTTP port of their own: a probe port each
DEMO_PASSWORD = "parkmate"
DEMO_USERS = (
    ("admin@example.com", "Demo Admin", ["admin"]),
    ("owner@example.com", "Demo Owner", ["owner"]),
    ("driver@example.com", "Demo Driver", ["driver"]),
)


@dataclass(frozen=True)
class DevOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    state_dir: str = processes.DEFAULT_STATE_DIR
    demo: bool = True


def say(text: str) -> None:
    print(f"parkmate dev: {text}", file=sys.stderr, flush=True)


def run_dev(options: DevOptions) -> int:
    """Run until a signal (exit 0) or a failure (exit 1 or 2); return the exit code."""
    state = Path(options.state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    started: list[embedded.ManagedProcess] = []
    servers: dict[str, int] = {}  # process list name -> pid of the servers started here
    try:
        nats_url = os.environ.get("PARKMATE_NATS_URL")
        if not nats_url:
            say(f"starting nats-server (JetStream data in {state / 'nats'})")
            started.append(embedded.start_nats(state / "nats"))
            nats_url = started[-1].url
            servers["nats-server"] = started[-1].proc.pid
        db_url = os.environ.get("PARKMATE_DATABASE_URL")
        if not db_url:
            say(f"starting PostgreSQL (data in {state / 'postgres'})")
            started.append(embedded.start_postgres(state / "postgres"))
            db_url = started[-1].url
            servers["postgres"] = started[-1].proc.pid  # the postmaster
        return asyncio.run(_run(options, state, nats_url, db_url, servers))
    except natsconn.NatsTooOld as e:
        say(str(e))
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in reversed(started):
            proc.stop()
        if started:
            say("stopped nats-server and PostgreSQL")


def _connect_host(host: str) -> str:
    """Where a client on this machine reaches a server bound to `host`."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


async def _run(
    options: DevOptions, state: Path, nats_url: str, db_url: str, servers: dict[str, int]
) -> int:
    nc = await natsconn.connect(nats_url, "parkmate-dev")  # raises NatsTooOld
    await natsconn.ensure_streams(nc.jetstream())
    say("applying migrations")
    await asyncio.to_thread(upgrade_all, db_url)
    secret = os.environ.get("PARKMATE_JWT_SECRET") or _dev_secret(state)
    env = {
        **os.environ,
        "PARKMATE_NATS_URL": nats_url,
        "PARKMATE_DATABASE_URL": db_url,
        "PARKMATE_HOST": options.host,
        "PARKMATE_PORT": str(options.port),
        "PARKMATE_JWT_SECRET": secret,
    }
    if options.demo:
        # The web UI's login page offers the demo accounts (services/api/web.py).
        env["PARKMATE_DEMO_ACCOUNTS"] = ",".join(email for email, _, _ in DEMO_USERS)
        env["PARKMATE_DEMO_PASSWORD"] = DEMO_PASSWORD
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    host = _connect_host(options.host)
    probes = {name: embedded.free_port() for name in WORKERS}
    metrics = {name: f"http://127.0.0.1:{port}/metrics" for name, port in probes.items()}
    metrics["api"] = f"http://{host}:{options.port}/metrics"
    table_path = state / processes.FILE_NAME
    procs: dict[str, asyncio.subprocess.Process] = {}
    try:
        for name in SERVICES:
            extra = {"PARKMATE_PROBE_PORT": str(probes[name])} if name in probes else {}
            procs[name] = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                f"services.{name}",
                env=env | extra,
                preexec_fn=embedded._die_with_parent(signal.SIGTERM),
            )
        failed = await _wait_ready(options, nc, procs, stop, metrics)
        if failed:
            say(failed)
            return 1
        if stop.is_set():
            return 0
        if options.demo:
            await _seed(db_url, nc)
        table = processes.ProcessFile(
            url=f"http://{host}:{options.port}",
            nats_url=nats_url,
            processes={
                **{
                    name: processes.ProcessInfo(pid=p.pid, metrics_url=metrics[name])
                    for name, p in procs.items()
                },
                **{name: processes.ProcessInfo(pid=pid) for name, pid in servers.items()},
            },
        )
        processes.write(table_path, table)
        say(
            "metrics: "
            + ", ".join(f"{name} {metrics[name]}" for name in SERVICES)
            + f"; pids and metrics URLs in {table_path}"
        )
        print(f"Parkmate is ready at http://{options.host}:{options.port}/", flush=True)
        waits = {asyncio.create_task(p.wait()): name for name, p in procs.items()}
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopper, *waits], return_when=asyncio.FIRST_COMPLETED)
        if stopper in done:
            say("stopping")
            return 0
        for task in done:
            say(
                f"service {waits[task]} exited with code {task.result()}; stopping everything "
                "(see its log above)"
            )
        return 1
    finally:
        table_path.unlink(missing_ok=True)  # a stale list would name dead or reused pids
        await _stop_all(procs)
        await nc.close()


async def _stop_all(procs: dict[str, asyncio.subprocess.Process]) -> None:
    # The api first, so no new request arrives while the others drain.
    for name in reversed(SERVICES):
        p = procs.get(name)
        if p is not None and p.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
    for p in procs.values():
        try:
            await asyncio.wait_for(p.wait(), 15)
        except TimeoutError:
            p.kill()
            await p.wait()


def _dev_secret(state: Path) -> str:
    path = state / "jwt-secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


async def _wait_ready(
    options: DevOptions,
    nc,
    procs,
    stop: asyncio.Event,
    metrics: dict[str, str],
    timeout: float = 60.0,
) -> str | None:
    """None once every service answers, the workers' probes included; else why not (a
    service exited, or too slow). `metrics`: service name -> its /metrics URL."""
    js = nc.jetstream()
    deadline = time.monotonic() + timeout
    url = f"http://{_connect_host(options.host)}:{options.port}/healthz"
    readyz = [metrics[name].removesuffix("/metrics") + "/readyz" for name in WORKERS]
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline and not stop.is_set():
            for name, p in procs.items():
                if p.returncode is not None:
                    return f"service {name} exited with code {p.returncode} while starting"
            try:
                ok = (await http.get(url, timeout=1.0)).status_code == 200
                for probe in readyz:
                    ok = ok and (await http.get(probe, timeout=1.0)).status_code == 200
                for service in ("bookings", "notifier"):
                    await nc.request(f"$SRV.PING.{service}", b"", timeout=1.0)
                for durable in ("timers", "notifier"):
                    await js.consumer_info("EVENTS", durable)
                await js.consumer_info("TIMERS", "bookings-timers")
                if ok:
                    return None
            except Exception:
                pass
            await asyncio.sleep(0.2)
    return None if stop.is_set() else f"services not ready within {timeout:.0f} s"


async def _seed(db_url: str, nc) -> None:
    """Demo accounts (password `parkmate`) and one demo lot owned by the demo owner."""
    import sqlalchemy as sa

    from services.api import storage
    from services.api.users import Identity
    from services.contracts import bookings as c
    from services.contracts import subjects
    from services.runtime.db import make_engine
    from services.runtime.micro import call

    engine = make_engine(db_url, pool_size=1)
    try:
        identity = Identity(engine)
        ids = {}
        for email, name, roles in DEMO_USERS:
            async with engine.connect() as conn:
                row = (
                    await conn.execute(
                        sa.select(storage.users.c.id).where(storage.users.c.email == email)
                    )
                ).first()
            ids[email] = (
                row.id
                if row
                else (await identity.create_user(email, DEMO_PASSWORD, name, roles)).id
            )
    finally:
        await engine.dispose()
    admin = c.Actor(user_id=ids["admin@example.com"], roles=["admin"])
    owner_id = ids["owner@example.com"]
    page = await call(nc, subjects.BOOKINGS_LOT_LIST, c.ListLots(actor=admin, limit=200), c.LotPage)
    if not any(lot.owner_id == owner_id for lot in page.items):
        await call(
            nc,
            subjects.BOOKINGS_LOT_CREATE,
            c.CreateLot(
                actor=admin,
                owner_id=owner_id,
                name="Demo lot",
                address="1 Demo Street",
                slot_count=10,
                booking_seconds=120,
                warning_seconds=60,
                price_per_hour=c.MoneyIn("2.40"),
            ),
            c.LotView,
        )
    say(
        "demo accounts admin@, owner@, driver@example.com (password parkmate) and a demo lot "
        "(2-minute bookings) are ready"
    )

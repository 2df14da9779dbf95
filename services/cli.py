"""`parkmate`: run the whole system on one machine, one service, or operator tasks.

parkmate dev [--host] [--port] [--state-dir] [--no-demo]
parkmate run api|bookings|timers|notifier
parkmate migrate
parkmate users create --email E --password P --full-name N --role admin
parkmate dead-letters list [--service S] | replay ID... | replay --all [--service S]
parkmate backup DIR [--pg-bin DIR] | parkmate restore DIR [--pg-bin DIR]
parkmate replay [--day 2016-12-16] [--speed 120] [--url] [--sockets] [--seed] [--report DIR]
    [--processes FILE] [--max-lateness 1] [--min-occupancy 99]
"""

import asyncio
import os
import sys

import click

from services.runtime.processes import DEFAULT_PATH as DEFAULT_PROCESSES
from services.runtime.processes import DEFAULT_STATE_DIR
from services.version import VERSION

SERVICES = ("api", "bookings", "timers", "notifier")


@click.group()
@click.version_option(VERSION, prog_name="parkmate")
def main() -> None:
    """Parkmate: parking bookings whose clock the server owns, with live notifications."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option("--port", default=8000, show_default=True, type=int, help="HTTP port.")
@click.option(
    "--state-dir",
    default=DEFAULT_STATE_DIR,
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where NATS and PostgreSQL keep data, and the process list (processes.json).",
)
@click.option("--no-demo", is_flag=True, help="Do not seed the demo accounts and lot.")
def dev(host: str, port: int, state_dir: str, no_demo: bool) -> None:
    """Run everything on this machine: NATS, PostgreSQL and the four services.

    Uses PARKMATE_NATS_URL / PARKMATE_DATABASE_URL when set, else starts its own
    servers with data under STATE_DIR. Ctrl-C or SIGTERM stops all it started.
    """
    from services.devserver import DevOptions, run_dev
    from services.runtime.limits import raise_open_file_limit

    raise_open_file_limit()  # the services inherit it: 10,000 sockets need the fds
    sys.exit(run_dev(DevOptions(host=host, port=port, state_dir=state_dir, demo=not no_demo)))


@main.command()
@click.argument("service", type=click.Choice(SERVICES))
def run(service: str) -> None:
    """Run one service against PARKMATE_NATS_URL and PARKMATE_DATABASE_URL.

    It checks every setting before connecting to anything, keeps trying to reach NATS
    and PostgreSQL for PARKMATE_STARTUP_TIMEOUT_SECONDS, and stops at once on SIGTERM.
    A bad setting, or a dependency still out of reach, is one line and exit code 1.
    """
    import importlib
    import signal

    # A signal while the service's modules load (a second or more) ends the process
    # quietly with 0, as one while it connects does; the service's own handlers take
    # over once its loop runs.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))

    from services.runtime.config import SettingError
    from services.runtime.natsconn import NatsTooOld
    from services.runtime.startup import StartupFailed

    entry = importlib.import_module(f"services.{service}.entrypoints")
    try:
        asyncio.run(entry.main())
    except (SettingError, StartupFailed, NatsTooOld) as e:
        raise click.ClickException(str(e)) from None


@main.command()
def migrate() -> None:
    """Apply every service's Alembic migrations to PARKMATE_DATABASE_URL."""
    from services.runtime.migrate import upgrade_all

    upgrade_all(_database_url())
    click.echo("migrations applied")


@main.command()
@click.option("--output", type=click.Path(dir_okay=False), help="Write to FILE, not stdout.")
def asyncapi(output: str | None) -> None:
    """Print the AsyncAPI 3.0 document of every NATS subject (from the message types)."""
    from services.asyncapi import render

    text = render()
    if output:
        with open(output, "w") as f:
            f.write(text)
    else:
        click.echo(text, nl=False)


@main.command()
@click.option(
    "--data",
    "data_path",
    type=click.Path(dir_okay=False, exists=True),
    help="A Parking Birmingham CSV file, plain or gzip (default: the copy packaged with "
    "Parkmate; see docs/data.md).",
)
@click.option("--day", default="2016-12-16", show_default=True, help="Day to replay.")
@click.option("--speed", default=120.0, show_default=True, help="Day seconds per second.")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="Parkmate.")
@click.option("--sockets", default=1000, show_default=True, help="Drivers watched on a socket.")
@click.option("--seed", default=1, show_default=True, help="Seed of the traffic plan.")
@click.option(
    "--report",
    "report_dir",
    default="replay-report",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for report.json, report.txt and occupancy.png.",
)
@click.option("--lots", help="Comma-separated car-park codes (default: all that day).")
@click.option("--start", default=8.0, show_default=True, help="First boundary, hours.")
@click.option("--end", default=16.5, show_default=True, help="Last boundary, hours.")
@click.option("--admin-email", default="admin@example.com", show_default=True)
@click.option("--admin-password", default="parkmate", show_default=True)
@click.option("--concurrency", default=100, show_default=True, help="HTTP connections.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option(
    "--processes",
    "processes_path",
    default=str(DEFAULT_PROCESSES),
    show_default=True,
    type=click.Path(dir_okay=False),
    help="parkmate dev's process list (pids, metrics URLs), to measure each process's CPU.",
)
@click.option(
    "--max-lateness",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Fail when warning or expiry lateness p99 exceeds this many seconds.",
)
@click.option(
    "--min-occupancy",
    default=99.0,
    show_default=True,
    type=click.FloatRange(0, 100),
    help="Fail when fewer than this percentage of occupancy checks match the data.",
)
def replay(
    data_path: str | None,
    day: str,
    speed: float,
    url: str,
    sockets: int,
    seed: int,
    report_dir: str,
    lots: str | None,
    start: float,
    end: float,
    admin_email: str,
    admin_password: str,
    concurrency: int,
    no_progress: bool,
    processes_path: str,
    max_lateness: float,
    min_occupancy: float,
) -> None:
    """Replay a real day of Birmingham's car parks through the API and WebSocket.

    Exits 1 when a notification was missing, early, doubled or unexpected, warning or
    expiry lateness p99 exceeded --max-lateness, or fewer than --min-occupancy percent
    of the occupancy checks matched the data (the report says what). Measures each
    process's CPU when the process list of `parkmate dev` is found (--processes).
    """
    from datetime import date
    from pathlib import Path

    from services.replay.cpu import Meter
    from services.replay.report import Bounds
    from services.replay.runner import load_plan
    from services.replay.runner import replay as run_replay
    from services.replay.simulation import Options, ReplayError

    try:
        plan = load_plan(
            Path(data_path) if data_path else None,
            date.fromisoformat(day),
            start,
            end,
            [x.strip() for x in lots.split(",")] if lots else None,
            seed,
        )
    except (ValueError, OSError) as e:
        raise click.ClickException(str(e)) from None
    options = Options(
        url=url.rstrip("/"),
        speed=speed,
        sockets=sockets,
        seed=seed,
        admin_email=admin_email,
        admin_password=admin_password,
        concurrency=concurrency,
    )
    bounds = Bounds(max_lateness=max_lateness, min_occupancy=min_occupancy / 100)
    meter = Meter.for_replay(Path(processes_path), options.url)
    try:
        result = asyncio.run(
            run_replay(plan, options, Path(report_dir), not no_progress, bounds, meter)
        )
    except ReplayError as e:
        raise click.ClickException(str(e)) from None
    if result.failures:
        sys.exit(1)


def _database_url() -> str:
    """PARKMATE_DATABASE_URL, checked; a missing or bad one is a one-line error."""
    from services.runtime.config import SettingError, env, parse_database_url

    try:
        return parse_database_url("DATABASE_URL", env("DATABASE_URL"))
    except SettingError as e:
        raise click.ClickException(str(e)) from None


@main.group("dead-letters")
def dead_letters() -> None:
    """Messages Parkmate gave up on (PARKMATE_DATABASE_URL, PARKMATE_NATS_URL); see
    docs/failure-modes.md."""


SERVICE_OPTION = click.option(
    "--service", type=click.Choice(SERVICES), help="Only those this service gave up."
)


async def _one_shot_nats(name: str):
    """A NATS client for a one-shot command, from PARKMATE_NATS_URL and the NATS
    credential and TLS settings: it neither reconnects forever nor logs its close."""
    import nats

    from services.runtime.config import NatsAuth, SettingError, env, parse_nats_url, redact
    from services.runtime.natsconn import auth_options

    try:
        nats_url, auth = parse_nats_url("NATS_URL", env("NATS_URL")), NatsAuth.from_env()
    except SettingError as e:
        raise click.ClickException(str(e)) from None
    errors: list[Exception] = []

    async def keep(error: Exception) -> None:  # instead of the library's traceback
        errors.append(error)

    try:
        return await nats.connect(
            nats_url,
            name=name,
            connect_timeout=5,
            max_reconnect_attempts=2,
            error_cb=keep,
            **auth_options(auth),
        )
    except (nats.errors.Error, OSError, TimeoutError) as e:
        why = errors[-1] if errors else e
        raise click.ClickException(
            f"cannot reach NATS at {redact(nats_url)} ({why}); check PARKMATE_NATS_URL"
        ) from None


async def _with_stores(work):
    """Run `work(engine, js)` against PARKMATE_DATABASE_URL and PARKMATE_NATS_URL."""
    from services.runtime.db import make_engine

    database_url = _database_url()
    nc = await _one_shot_nats("parkmate-dead-letters")
    engine = make_engine(database_url, pool_size=1)
    try:
        return await work(engine, nc.jetstream())
    finally:
        await nc.close()
        await engine.dispose()


@dead_letters.command("list")
@SERVICE_OPTION
def dead_letters_list(service: str | None) -> None:
    """Print every dead letter: id, service, subject, tries, when, size, origin, error."""
    from services.deadletters import list_dead

    found = asyncio.run(_with_stores(lambda e, js: list_dead(e, js, service)))
    for d in found:
        when = d.dead_at.isoformat(timespec="seconds") if d.dead_at else "-"
        click.echo(
            f"{d.id}\t{d.service}\t{d.subject}\ttries={d.tries}\t{when}\t"
            f"{d.size} B\t{d.origin}\t{d.error}"
        )
    click.echo(f"{len(found)} dead letter(s)", err=True)


@dead_letters.command("replay")
@click.argument("ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every dead letter (of --service).")
@SERVICE_OPTION
def dead_letters_replay(ids: tuple[str, ...], everything: bool, service: str | None) -> None:
    """Publish dead letters again: IDS as printed by `list` (bookings:42, DEAD:7), or
    --all. Fix the cause first, or they die again."""
    from services.deadletters import NoSuchDeadLetter, replay, replay_all

    if everything == bool(ids):
        raise click.UsageError("give dead-letter ids or --all (not both)")
    if ids and service:
        raise click.UsageError("--service goes with --all")

    async def work(engine, js) -> list[str]:
        if everything:
            return await replay_all(engine, js, service)
        return [await replay(engine, js, i) for i in ids]

    try:
        for line in asyncio.run(_with_stores(work)):
            click.echo(line)
    except (NoSuchDeadLetter, RuntimeError) as e:
        raise click.ClickException(str(e)) from None


PG_BIN_OPTION = click.option(
    "--pg-bin",
    type=click.Path(file_okay=False, exists=True),
    envvar="PARKMATE_PG_BIN",
    help="Folder of pg_dump / pg_restore (default: the newest of the one on PATH and "
    "pgserver's); its major version must be the server's or newer.",
)


@main.command()
@click.argument("folder", type=click.Path(file_okay=False))
@PG_BIN_OPTION
def backup(folder: str, pg_bin: str | None) -> None:
    """Back up PostgreSQL (pg_dump) and then the JetStream streams EVENTS, TIMERS and
    DEAD (server snapshots, consumers included) into FOLDER, a new or empty folder.
    Uses PARKMATE_DATABASE_URL and PARKMATE_NATS_URL. See docs/operations.md."""
    from pathlib import Path

    from services.backup import BackupError, folder_size
    from services.backup import backup as take

    database_url = _database_url()

    async def work():
        nc = await _one_shot_nats("parkmate-backup")
        try:
            return await take(nc, database_url, Path(folder), pg_bin)
        finally:
            await nc.close()

    try:
        manifest = asyncio.run(work())
    except BackupError as e:
        raise click.ClickException(str(e)) from None
    streams = ", ".join(f"{name} {n} messages" for name, n in manifest.streams.items())
    click.echo(
        f"backup of {manifest.created_at} in {folder} ({folder_size(Path(folder))} B): "
        f"PostgreSQL, {streams}"
    )


@main.command()
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
@PG_BIN_OPTION
def restore(folder: str, pg_bin: str | None) -> None:
    """Restore a backup FOLDER: PostgreSQL into the empty database PARKMATE_DATABASE_URL,
    then the streams onto PARKMATE_NATS_URL, which must not have them yet. Run it
    before starting any service; pending warnings and expiries then fire (late if
    their time passed meanwhile, never early). See docs/operations.md."""
    from pathlib import Path

    from services.backup import BackupError
    from services.backup import restore as put_back

    database_url = _database_url()

    async def work():
        nc = await _one_shot_nats("parkmate-restore")
        try:
            return await put_back(nc, database_url, Path(folder), pg_bin)
        finally:
            await nc.close()

    try:
        counts = asyncio.run(work())
    except BackupError as e:
        raise click.ClickException(str(e)) from None
    streams = ", ".join(f"{name} {n} messages" for name, n in counts.items())
    click.echo(f"restored PostgreSQL and {streams}; start the services now")


@main.group()
def users() -> None:
    """Manage users (writes schema identity at PARKMATE_DATABASE_URL)."""


@users.command("create")
@click.option("--email", required=True)
@click.option("--password", required=True, prompt=True, hide_input=True)
@click.option("--full-name", required=True)
@click.option(
    "--role",
    "roles",
    multiple=True,
    default=["driver"],
    show_default=True,
    type=click.Choice(["driver", "owner", "employee", "admin"]),
)
def users_create(email: str, password: str, full_name: str, roles: tuple[str, ...]) -> None:
    """Create a user, for example the first admin (`--role admin`)."""
    from services.api.users import Identity
    from services.contracts.errors import DomainError
    from services.runtime.db import make_engine

    url = _database_url()

    async def create() -> None:
        engine = make_engine(url, pool_size=1)
        try:
            user = await Identity(engine).create_user(email, password, full_name, list(roles))
            click.echo(f"created {user.email} ({', '.join(user.roles)}) id={user.id}")
        finally:
            await engine.dispose()

    try:
        asyncio.run(create())
    except DomainError as e:
        raise click.ClickException(e.detail) from None


if __name__ == "__main__":
    main(prog_name=os.path.basename(sys.argv[0]))

"""`parkmate`: run the whole system on one machine, one service, or operator tasks.

parkmate dev [--host] [--port] [--state-dir] [--no-demo]
parkmate run api|bookings|timers|notifier
parkmate migrate
parkmate users create --email E --password P --full-name N --role admin
parkmate dead-letters list [--service S] | replay ID... | replay --all [--service S]
parkmate replay [--day 2016-12-16] [--speed 120] [--url] [--sockets] [--seed] [--report DIR]
"""

import asyncio
import os
import sys

import click

SERVICES = ("api", "bookings", "timers", "notifier")


@click.group()
def main() -> None:
    """Parkmate: parking bookings whose clock the server owns, with live notifications."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option("--port", default=8000, show_default=True, type=int, help="HTTP port.")
@click.option(
    "--state-dir",
    default=".parkmate",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where NATS and PostgreSQL keep data.",
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
    """Run one service against PARKMATE_NATS_URL and PARKMATE_DATABASE_URL."""
    import importlib

    entry = importlib.import_module(f"services.{service}.entrypoints")
    try:
        asyncio.run(entry.main())
    except Exception as e:  # a clear one-line reason for operators; the log has the rest
        from services.runtime.natsconn import NatsTooOld

        if isinstance(e, NatsTooOld):
            raise click.ClickException(str(e)) from None
        raise


@main.command()
def migrate() -> None:
    """Apply every service's Alembic migrations to PARKMATE_DATABASE_URL."""
    from services.runtime.config import env
    from services.runtime.migrate import upgrade_all

    upgrade_all(env("DATABASE_URL"))
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
) -> None:
    """Replay a real day of Birmingham's car parks through the API and WebSocket.

    Exits 1 when a notification was missing or early, or occupancy did not follow the
    data (the report says what).
    """
    from datetime import date
    from pathlib import Path

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
    try:
        result = asyncio.run(run_replay(plan, options, Path(report_dir), not no_progress))
    except ReplayError as e:
        raise click.ClickException(str(e)) from None
    if result.failures:
        sys.exit(1)


@main.group("dead-letters")
def dead_letters() -> None:
    """Messages Parkmate gave up on (PARKMATE_DATABASE_URL, PARKMATE_NATS_URL); see
    docs/failure-modes.md."""


SERVICE_OPTION = click.option(
    "--service", type=click.Choice(SERVICES), help="Only those this service gave up."
)


async def _with_stores(work):
    """Run `work(engine, js)` against PARKMATE_DATABASE_URL and PARKMATE_NATS_URL."""
    import nats

    from services.runtime.config import env
    from services.runtime.db import make_engine

    engine = make_engine(env("DATABASE_URL"), pool_size=1)
    # A plain client: a one-shot command neither reconnects forever nor logs its close.
    nc = await nats.connect(env("NATS_URL"), name="parkmate-dead-letters", connect_timeout=5)
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
    from services.runtime.config import env
    from services.runtime.db import make_engine

    async def create() -> None:
        engine = make_engine(env("DATABASE_URL"), pool_size=1)
        try:
            user = await Identity(engine, "", 0).create_user(
                email, password, full_name, list(roles)
            )
            click.echo(f"created {user.email} ({', '.join(user.roles)}) id={user.id}")
        finally:
            await engine.dispose()

    try:
        asyncio.run(create())
    except DomainError as e:
        raise click.ClickException(e.detail) from None


if __name__ == "__main__":
    main(prog_name=os.path.basename(sys.argv[0]))

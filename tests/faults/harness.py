"""Fault-test harness: the whole system as OS processes, with servers of its own to break.

`Harness(root)` owns, under the folder `root`:

- a nats-server with JetStream (store `root/nats`, one fixed port for its whole life)
  and a PostgreSQL (data `root/postgres`, one fixed port), both started with the
  project's own `services.runtime.embedded` and never the machine's shared servers,
  because the harness stops, kills and restarts them;
- the migrations (`services.runtime.migrate.upgrade_all`, as `parkmate migrate`);
- each service as its own process, launched as `parkmate run <service>` (that is
  `python -m services.cli run <service>`), logging to `root/logs/<name>.log`.

Processes are `Instance`s with a name (`bookings`, or `bookings-2` for a second replica)
and a port that stays theirs across restarts: the api's HTTP port, or a worker's
PARKMATE_PROBE_PORT (for /readyz). What the harness does to them:

- `kill(x)`: SIGKILL (`kill -9`), reaped; nothing of the process runs on.
- `terminate(x, grace)`: SIGTERM, wait up to `grace` s for its drain, then SIGKILL;
  returns the exit code.
- `restart(x, hard=True)`: `kill` (or, `hard=False`, `terminate`), stay down `down` s,
  then a new process with the same name and port, waited ready.
- `spawn(service, name=)`: one more process (a replica); `start_service` also waits
  until it is ready.
- `restart_nats(hard=True)`: kill -9 (or SIGTERM) nats-server, then start it again:
  same store, same port.
- `restart_postgres(hard=False)`: fast shutdown (SIGINT; `hard=True`: SIGQUIT, an
  immediate shutdown, like a crash, recovered from the WAL at the next start), then
  start it again: same data, same port.

`restart(x, hard=False)` is the rolling restart of one process as Kubernetes does it
(SIGTERM, a grace period, then a new process). For a surge-style roll, `spawn` a
replica first and `terminate` the old one.

Each `restart*` returns a `Fault` with the monotonic times it went down and came back,
so a test can measure how long the system takes to heal (`backlog`, `drained`).
Times are `time.monotonic()` seconds. Nothing here sleeps to wait for a condition; the
only sleep is the outage a caller asks for (`down`).
"""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import nats
import sqlalchemy as sa
from nats.js.errors import NotFoundError

from services.runtime import embedded
from services.runtime.db import make_engine
from services.runtime.migrate import upgrade_all

SERVICES = ("bookings", "timers", "notifier", "api")
SECRET = "faults-test-secret-that-is-32-bytes-long"

# Every durable consumer the services run: (stream, durable).
CONSUMERS = (
    ("EVENTS", "timers"),
    ("EVENTS", "notifier"),
    ("EVENTS", "notifier-users"),
    ("TIMERS", "bookings-timers"),
)
# Every outbox table (schema.table): rows not yet published are a backlog.
OUTBOXES = ("bookings.outbox", "identity.outbox")


@dataclass
class Instance:
    """One service process. `port`: the api's HTTP port, or a worker's probe port."""

    service: str
    name: str
    port: int
    log: Path
    proc: subprocess.Popen | None = None
    started_at: float = 0.0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code of the last process (negative: killed by that signal)."""
        return self.proc.returncode if self.proc else None

    @property
    def readyz(self) -> str:
        return f"http://127.0.0.1:{self.port}/readyz"

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@dataclass
class Fault:
    """One fault: what, and when (monotonic s) it went down and was started again."""

    what: str
    down_at: float
    up_at: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def outage(self) -> float:
        """Seconds from the fault until the process or server was started again."""
        return self.up_at - self.down_at


@dataclass
class Backlog:
    """Unpublished outbox rows per table, and per consumer (`stream/durable`) the
    messages not yet delivered plus those delivered and not yet acknowledged."""

    outbox: dict[str, int]
    consumers: dict[str, int]

    @property
    def empty(self) -> bool:
        return not any(self.outbox.values()) and not any(self.consumers.values())


class Harness:
    """nats-server, PostgreSQL and the service processes of one fault test."""

    def __init__(self, root: Path, env: dict[str, str] | None = None, fast_unsafe: bool = True):
        """`env`: extra PARKMATE_* settings for every service. `fast_unsafe`: PostgreSQL
        without fsync (a kill of the server loses nothing, a machine crash could)."""
        self.root = root
        self.nats_dir = root / "nats"
        self.pg_dir = root / "postgres"
        self.log_dir = root / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.nats_port = embedded.free_port()
        self.pg_port = embedded.free_port()
        self.api_port = embedded.free_port()
        self.nats_url = f"nats://127.0.0.1:{self.nats_port}"
        self.database_url = f"postgresql://postgres@127.0.0.1:{self.pg_port}/parkmate"
        self.base = f"http://127.0.0.1:{self.api_port}"
        self.fast_unsafe = fast_unsafe
        self.extra_env = env or {}
        self.nats: embedded.ManagedProcess | None = None
        self.postgres: embedded.ManagedProcess | None = None
        self.instances: dict[str, Instance] = {}
        self.faults: list[Fault] = []

    # ----- the whole thing -----

    async def start(self, services: Iterable[str] = SERVICES) -> None:
        """Start both servers, apply the migrations, start `services` and wait until
        each is ready."""
        self.start_nats()
        self.start_postgres()
        await asyncio.to_thread(upgrade_all, self.database_url)
        for service in services:
            self.spawn(service)
        await self.wait_ready()

    async def close(self) -> dict[str, int]:
        """SIGTERM every service (api first, as `parkmate dev` does), then stop the
        servers. Returns each service's exit code (0 is a clean drain)."""
        codes: dict[str, int] = {}
        order = sorted(self.instances.values(), key=lambda i: SERVICES.index(i.service))
        for inst in reversed(order):
            if inst.alive:
                codes[inst.name] = await asyncio.to_thread(self.terminate, inst, 20.0)
        for server in (self.nats, self.postgres):
            if server is not None:
                await asyncio.to_thread(server.stop)
        return codes

    @property
    def env(self) -> dict[str, str]:
        """The environment every service gets (before its own port)."""
        return {
            **os.environ,
            "PARKMATE_NATS_URL": self.nats_url,
            "PARKMATE_DATABASE_URL": self.database_url,
            "PARKMATE_JWT_SECRET": SECRET,
            **self.extra_env,
        }

    # ----- service processes -----

    def spawn(
        self,
        service: str,
        name: str | None = None,
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> Instance:
        """Start `service` as a new process named `name` (default: the service's name),
        without waiting. An existing instance of that name must not be alive; it keeps
        its port unless `port` is given. The first api gets `self.api_port`."""
        name = name or service
        inst = self.instances.get(name)
        if inst is not None and inst.alive:
            raise RuntimeError(f"{name} is still running (pid {inst.pid})")
        if inst is None:
            default = self.api_port if name == "api" else embedded.free_port()
            inst = Instance(service, name, port or default, self.log_dir / f"{name}.log")
            self.instances[name] = inst
        elif port is not None:
            inst.port = port
        port_var = "PARKMATE_PORT" if service == "api" else "PARKMATE_PROBE_PORT"
        with open(inst.log, "ab") as log:
            log.write(f"----- harness: start {name} at {time.monotonic():.3f}\n".encode())
            log.flush()
            inst.proc = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "run", service],
                env=self.env | {port_var: str(inst.port)} | (env or {}),
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=embedded._die_with_parent(signal.SIGKILL),
            )
        inst.started_at = time.monotonic()
        return inst

    async def start_service(self, service: str, name: str | None = None, **kw) -> Instance:
        """`spawn`, then wait until it answers /readyz."""
        inst = self.spawn(service, name, **kw)
        await self.wait_ready([inst])
        return inst

    async def wait_ready(self, instances: Iterable[Instance] | None = None, timeout=60.0) -> None:
        """Wait until every instance (default: all alive) answers 200 on /readyz.
        Raises RuntimeError with its log when one exits, AssertionError on timeout."""
        todo = list(instances) if instances is not None else list(self.instances.values())
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1.0) as http:
            while todo:
                for inst in list(todo):
                    if not inst.alive:
                        raise RuntimeError(f"{inst.name} exited: {inst.log_tail()}")
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get(inst.readyz)).status_code == 200:
                            todo.remove(inst)
                if todo and time.monotonic() > deadline:
                    raise AssertionError(
                        f"not ready within {timeout} s: {[i.name for i in todo]}; "
                        f"{todo[0].log_tail()}"
                    )
                if todo:
                    await asyncio.sleep(0.1)

    def _instance(self, target: "Instance | str") -> Instance:
        return self.instances[target] if isinstance(target, str) else target

    def kill(self, target: "Instance | str") -> Instance:
        """kill -9 the process and reap it."""
        inst = self._instance(target)
        if inst.alive:
            assert inst.proc is not None
            inst.proc.send_signal(signal.SIGKILL)
            inst.proc.wait()
        return inst

    def terminate(self, target: "Instance | str", grace: float = 30.0) -> int:
        """SIGTERM, wait up to `grace` s for the process to drain and exit, else SIGKILL.
        Returns its exit code (negative: the signal that ended it)."""
        inst = self._instance(target)
        assert inst.proc is not None
        if inst.alive:
            with contextlib.suppress(ProcessLookupError):
                inst.proc.send_signal(signal.SIGTERM)
            try:
                inst.proc.wait(grace)
            except subprocess.TimeoutExpired:
                inst.proc.kill()
                inst.proc.wait()
        return inst.proc.returncode

    async def restart(
        self,
        target: "Instance | str",
        hard: bool = True,
        down: float = 0.0,
        grace: float = 30.0,
        wait_ready: bool = True,
    ) -> Fault:
        """Stop the process (`hard`: kill -9; else SIGTERM with `grace`), stay down
        `down` s, start a new one with the same name and port, wait until it is ready
        (unless `wait_ready` is False). The Fault's `extra["exit_code"]` is the old
        process's exit code."""
        inst = self._instance(target)
        fault = Fault(f"{'kill -9' if hard else 'SIGTERM'} {inst.name}", time.monotonic())
        if hard:
            self.kill(inst)
        else:
            await asyncio.to_thread(self.terminate, inst, grace)
        fault.extra["exit_code"] = inst.returncode
        fault.extra["stopped_at"] = time.monotonic()
        if down > 0:
            await asyncio.sleep(down)  # on purpose: the outage the caller asked for
        self.spawn(inst.service, inst.name)
        fault.up_at = time.monotonic()
        if wait_ready:
            await self.wait_ready([inst])
            fault.extra["ready_at"] = time.monotonic()
        self.faults.append(fault)
        return fault

    # ----- servers -----

    def start_nats(self) -> embedded.ManagedProcess:
        """Start (or start again) nats-server: same store folder, same port."""
        self.nats = embedded.start_nats(self.nats_dir, port=self.nats_port)
        return self.nats

    def stop_nats(self, hard: bool = True) -> None:
        """kill -9 nats-server (`hard`), or SIGTERM it and wait for it to exit."""
        assert self.nats is not None
        if hard:
            self.nats.proc.kill()
            self.nats.proc.wait()
        else:
            self.nats.stop()

    async def restart_nats(self, hard: bool = True, down: float = 0.0) -> Fault:
        fault = Fault(f"{'kill -9' if hard else 'SIGTERM'} nats-server", time.monotonic())
        await asyncio.to_thread(self.stop_nats, hard)
        if down > 0:
            await asyncio.sleep(down)  # on purpose: the outage the caller asked for
        await asyncio.to_thread(self.start_nats)
        fault.up_at = time.monotonic()
        self.faults.append(fault)
        return fault

    def start_postgres(self) -> embedded.ManagedProcess:
        """Start (or start again) PostgreSQL: same data folder, same port."""
        self.postgres = embedded.start_postgres(
            self.pg_dir, port=self.pg_port, fast_unsafe=self.fast_unsafe
        )
        return self.postgres

    def stop_postgres(self, hard: bool = False) -> None:
        """Fast shutdown (SIGINT: clients are disconnected, the data is checkpointed),
        or `hard`: immediate shutdown (SIGQUIT: no checkpoint, like a crash; the next
        start recovers from the WAL). Waits until the server has exited."""
        assert self.postgres is not None
        proc = self.postgres.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT if hard else signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    async def restart_postgres(self, hard: bool = False, down: float = 0.0) -> Fault:
        fault = Fault(f"{'crash' if hard else 'restart'} PostgreSQL", time.monotonic())
        await asyncio.to_thread(self.stop_postgres, hard)
        if down > 0:
            await asyncio.sleep(down)  # on purpose: the outage the caller asked for
        await asyncio.to_thread(self.start_postgres)
        fault.up_at = time.monotonic()
        self.faults.append(fault)
        return fault

    # ----- clients and state -----

    def http(self, timeout: float = 15.0) -> httpx.AsyncClient:
        """An HTTP client on the first api's `/api/v1`."""
        return httpx.AsyncClient(base_url=self.base + "/api/v1", timeout=timeout)

    def ws_url(self, token: str, after_seq: int | None = None) -> str:
        query = f"&after_seq={after_seq}" if after_seq is not None else ""
        return f"ws://127.0.0.1:{self.api_port}/ws?token={token}{query}"

    def create_admin(self, email: str, password: str) -> None:
        """Create an admin with `parkmate users create`, as an operator would."""
        subprocess.run(
            [
                *(sys.executable, "-m", "services.cli", "users", "create"),
                *("--email", email, "--password", password),
                *("--full-name", "Admin", "--role", "admin"),
            ],
            env=self.env,
            check=True,
            capture_output=True,
        )

    async def backlog(self) -> Backlog:
        """What is still to do: unpublished, not dead outbox rows, and per consumer its
        pending plus unacknowledged messages. Raises when NATS or PostgreSQL is away."""
        engine = make_engine(self.database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                outbox = {
                    table: (
                        await conn.execute(
                            sa.text(
                                f"SELECT count(*) FROM {table} "
                                "WHERE published_at IS NULL AND dead_at IS NULL"
                            )
                        )
                    ).scalar_one()
                    for table in OUTBOXES
                }
        finally:
            await engine.dispose()
        nc = await nats.connect(self.nats_url, allow_reconnect=False, connect_timeout=2)
        try:
            js = nc.jetstream(timeout=2)
            consumers = {}
            for stream, durable in CONSUMERS:
                try:
                    info = await js.consumer_info(stream, durable)
                except NotFoundError:
                    continue
                consumers[f"{stream}/{durable}"] = info.num_pending + info.num_ack_pending
        finally:
            await nc.close()
        return Backlog(outbox, consumers)

    async def drained(self, timeout: float = 60.0, interval: float = 0.1) -> float:
        """Wait until `backlog()` is empty (NATS and PostgreSQL being away counts as not
        empty); returns the monotonic time it first was. AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                last = await self.backlog()
                if last.empty:  # type: ignore[union-attr]
                    return time.monotonic()
            except Exception as e:
                last = e
            await asyncio.sleep(interval)
        raise AssertionError(f"backlog not empty within {timeout} s: {last!r}")

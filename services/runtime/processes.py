"""The process list `parkmate dev` writes to its state dir, for tools on the same machine.

`<state-dir>/processes.json` names the api's address, the NATS URL and, per process
(api, bookings, timers, notifier, and nats-server and postgres when dev started them),
its pid and, for the Python services, the URL of its Prometheus `/metrics`. `parkmate
replay` reads it to measure each process's CPU, `benchmarks.bookings` to find NATS.
It exists while `parkmate dev` runs; dev removes it when it stops.
"""

from pathlib import Path

import msgspec

FILE_NAME = "processes.json"
DEFAULT_STATE_DIR = ".parkmate"  # parkmate dev's default --state-dir
DEFAULT_PATH = Path(DEFAULT_STATE_DIR) / FILE_NAME


class ProcessInfo(msgspec.Struct, kw_only=True):
    """One process: its pid, and where its metrics are served (None: not served)."""

    pid: int
    metrics_url: str | None = None


class ProcessFile(msgspec.Struct, kw_only=True):
    """What `parkmate dev` runs: the api's base URL (`http://host:port`, no slash at the
    end), the NATS URL, and the processes by name."""

    url: str
    nats_url: str
    processes: dict[str, ProcessInfo]


def write(path: Path, table: ProcessFile) -> None:
    """Write `table` as JSON at `path`, replacing it in one rename (readers never see
    half a file)."""
    partial = path.with_name(path.name + ".tmp")
    partial.write_bytes(msgspec.json.format(msgspec.json.encode(table)) + b"\n")
    partial.replace(path)


def read(path: Path) -> ProcessFile | None:
    """The table at `path`, or None when there is no such file. Raises ValueError when
    the file is not a process list."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return msgspec.json.decode(raw, type=ProcessFile)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise ValueError(f"{path} is not a parkmate dev process list: {e}") from None

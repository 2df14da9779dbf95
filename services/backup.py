"""Back up and restore Parkmate's state: PostgreSQL and the JetStream streams
(`parkmate backup DIR`, `parkmate restore DIR`; docs/operations.md, "Backup and restore").

A backup folder holds:

    DIR/manifest.json                   what was taken, when (UTC), by which version
    DIR/postgres.dump                   pg_dump --format=custom of the whole database
    DIR/jetstream/<STREAM>/backup.json  the stream's config and state at the snapshot
    DIR/jetstream/<STREAM>/stream.tar.s2  the server's snapshot (messages and consumers)

The stream folders have the layout of `nats stream backup`, so `nats stream restore`
reads them too, and the other way round.

Order: the backup takes PostgreSQL first, then the streams; the restore puts back
PostgreSQL first, then the streams, and the services start after both. Streams newer
than the database at worst hold events the database has not heard of, which consumers
drop or apply idempotently; streams older than the database would lack events whose
outbox rows were already deleted, and those bookings would have no timers.

The JetStream part uses the server's own API (`$JS.API.STREAM.SNAPSHOT.<name>` and
`$JS.API.STREAM.RESTORE.<name>`), the one the nats CLI uses: chunks of an s2-compressed
tar, each acknowledged by the receiver.
"""

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from services.contracts import subjects
from services.version import VERSION

STREAMS = (subjects.EVENTS_STREAM, subjects.TIMERS_STREAM, subjects.DEAD_STREAM)
CHUNK_BYTES = 128 * 1024
MANIFEST = "manifest.json"
PG_DUMP_FILE = "postgres.dump"
META_FILE = "backup.json"  # the nats CLI's names, so either tool reads the other's
DATA_FILE = "stream.tar.s2"


class BackupError(RuntimeError):
    """A backup or restore step failed; the message says which and what to do."""


# ----- choosing the PostgreSQL client tools (no I/O) -----


def pg_major(version_line: str) -> int:
    """'pg_dump (PostgreSQL) 16.2' or '... 15.20 (Debian 15.20-0+deb12u1)' -> 16 or 15.
    Raises ValueError on a line without a version."""
    m = re.search(r"\)\s+(\d+)(?:\.\d+)?", version_line)
    if not m:
        raise ValueError(f"not a PostgreSQL tool version: {version_line!r}")
    return int(m[1])


def newest_tool(found: Iterable[tuple[str, str]]) -> str | None:
    """Of (path, `--version` output) pairs, the path of the highest major version (the
    first given on a tie), or None when there is none. pg_dump reads servers up to its
    own major version, so the newest one is the one that can dump the most."""
    best: tuple[int, str] | None = None
    for path, line in found:
        try:
            major = pg_major(line)
        except ValueError:
            continue
        if best is None or major > best[0]:
            best = (major, path)
    return best[1] if best else None


# ----- PostgreSQL -----


def _tool_candidates(name: str, pg_bin: str | None) -> list[str]:
    if pg_bin:
        return [str(Path(pg_bin) / name)]
    out = []
    on_path = shutil.which(name)
    if on_path:
        out.append(on_path)
    try:  # the dev extra's PostgreSQL, the one `parkmate dev` runs
        from pgserver._commands import POSTGRES_BIN_PATH

        bundled = Path(POSTGRES_BIN_PATH) / name
        if bundled.exists():
            out.append(str(bundled))
    except Exception:
        pass
    return out


def pg_tool(name: str, pg_bin: str | None = None) -> str:
    """Path of `pg_dump` / `pg_restore`: in `pg_bin` when given, else the newest of the
    one on PATH and pgserver's. Raises BackupError when there is none."""
    found = []
    for path in _tool_candidates(name, pg_bin):
        try:
            done = subprocess.run([path, "--version"], capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError):
            continue
        found.append((path, done.stdout.strip()))
    tool = newest_tool(found)
    if tool is None:
        raise BackupError(
            f"{name} not found: install PostgreSQL's client tools (the server's major "
            "version or newer) or pass --pg-bin DIR"
        )
    return tool


def _libpq_url(url: str) -> str:
    """A SQLAlchemy-style URL as libpq takes it (no `+driver`)."""
    return re.sub(r"^postgres(?:ql)?\+\w+://", "postgresql://", url)


def dump_postgres(database_url: str, dest: Path, pg_bin: str | None = None) -> None:
    """pg_dump the whole database (schemas identity, bookings, notifier, their Alembic
    version tables included) to `dest`, custom format. Raises BackupError."""
    done = subprocess.run(
        [
            pg_tool("pg_dump", pg_bin),
            "--format=custom",
            "--no-owner",
            "--no-privileges",
            "--file",
            str(dest),
            _libpq_url(database_url),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise BackupError(f"pg_dump failed: {done.stderr.strip()}")


def restore_postgres(database_url: str, src: Path, pg_bin: str | None = None) -> None:
    """pg_restore `src` into the database, which must hold no Parkmate schema yet (an
    empty database: create it first). Stops at the first error. Raises BackupError."""
    done = subprocess.run(
        [
            pg_tool("pg_restore", pg_bin),
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            "--dbname",
            _libpq_url(database_url),
            str(src),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise BackupError(
            f"pg_restore failed (restore into an empty database): {done.stderr.strip()}"
        )


# ----- files (small and local: a one-shot command blocks on them without harm) -----


def _new_folder(dest: Path) -> None:
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} is not empty: give a new folder")
    dest.mkdir(parents=True, exist_ok=True)


def _empty_folder(folder: Path) -> None:
    for child in folder.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


def _create_data_file(folder: Path) -> BinaryIO:
    folder.mkdir(parents=True, exist_ok=True)
    return open(folder / DATA_FILE, "wb")


def _open_data_file(folder: Path) -> BinaryIO:
    return open(folder / DATA_FILE, "rb")


def _read_text(path: Path) -> str:
    return path.read_text()


def _write_text(path: Path, text: str) -> None:
    path.write_text(text + "\n")


def _streams_in(src: Path) -> list[str]:
    """The stream names saved in backup folder `src`; raises BackupError when `src` is
    not a Parkmate backup."""
    if not (src / MANIFEST).is_file():
        raise BackupError(f"{src} is not a Parkmate backup (no {MANIFEST})")
    return sorted(p.name for p in (src / "jetstream").iterdir() if p.is_dir())


# ----- JetStream -----


def _api_error(data: bytes) -> str | None:
    """The `error.description` of a JetStream API answer, or None when it has none."""
    try:
        body = json.loads(data)
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if error:
        return error.get("description") or str(error)
    return None


async def snapshot_stream(nc: Client, stream: str, dest: Path, timeout: float = 600.0) -> dict:
    """Write the snapshot of `stream`, consumers included, to `dest` (backup.json and
    stream.tar.s2) and return its state as the server gave it (`messages`, `bytes`,
    `first_seq`, `last_seq`, ...). The server keeps taking messages meanwhile; the
    snapshot is of one moment. Raises BackupError when the server refuses or fails, or
    after `timeout` seconds."""
    inbox = nc.new_inbox()
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    out = _create_data_file(dest)

    async def on_chunk(msg: Msg) -> None:
        if done.done():
            return
        if not msg.data:
            status = (msg.headers or {}).get("Status") if msg.headers else None
            if status and status != "200":
                why = (msg.headers or {}).get("Description", "")
                done.set_exception(BackupError(f"snapshot of {stream} failed: {status} {why}"))
            else:
                done.set_result(None)
            return
        out.write(msg.data)
        if msg.reply:
            await nc.publish(msg.reply, b"")  # the ack the server waits for to go on

    sub = await nc.subscribe(inbox, cb=on_chunk, pending_msgs_limit=-1, pending_bytes_limit=-1)
    try:
        request = {"deliver_subject": inbox, "no_consumers": False, "chunk_size": CHUNK_BYTES}
        answer = await nc.request(
            f"$JS.API.STREAM.SNAPSHOT.{stream}", json.dumps(request).encode(), timeout=10
        )
        error = _api_error(answer.data)
        if error:
            raise BackupError(f"snapshot of {stream} refused: {error}")
        meta = json.loads(answer.data)
        await asyncio.wait_for(done, timeout)
    except TimeoutError:
        raise BackupError(f"snapshot of {stream} not finished within {timeout:.0f} s") from None
    finally:
        await sub.unsubscribe()
        out.close()
    _write_text(dest / META_FILE, json.dumps({"config": meta["config"], "state": meta["state"]}))
    return meta["state"]


async def restore_stream(nc: Client, src: Path, timeout: float = 600.0) -> dict:
    """Create the stream saved in `src` (backup.json, stream.tar.s2) on the server,
    messages and consumers as they were, and return its state. The stream must not
    exist. Pending message schedules are scheduled again by the server: those whose
    time passed fire at once, the others at their time. Raises BackupError."""
    meta = json.loads(_read_text(src / META_FILE))
    name = meta["config"]["name"]
    answer = await nc.request(
        f"$JS.API.STREAM.RESTORE.{name}", json.dumps(meta).encode(), timeout=10
    )
    error = _api_error(answer.data)
    if error:
        raise BackupError(f"restore of {name} refused: {error} (delete the stream first?)")
    deliver = json.loads(answer.data)["deliver_subject"]
    with _open_data_file(src) as f:
        while chunk := f.read(CHUNK_BYTES):
            reply = await nc.request(deliver, chunk, timeout=30)
            error = _api_error(reply.data)
            if error:
                raise BackupError(f"restore of {name} failed: {error}")
    # An empty chunk ends it; the server then builds the stream (may take a while).
    final = await nc.request(deliver, b"", timeout=timeout)
    error = _api_error(final.data)
    if error:
        raise BackupError(f"restore of {name} failed: {error}")
    return json.loads(final.data).get("state", {})


# ----- the whole backup -----


@dataclass(frozen=True)
class Manifest:
    """What a backup folder holds: `created_at` (UTC, ISO 8601), the Parkmate `version`
    that took it, and each stream's `messages` count at its snapshot."""

    created_at: str
    version: str
    streams: dict[str, int]

    def to_json(self) -> str:
        body = {"created_at": self.created_at, "version": self.version, "streams": self.streams}
        return json.dumps(body, indent=2)


async def backup(nc: Client, database_url: str, dest: Path, pg_bin: str | None = None) -> Manifest:
    """Take a backup into `dest` (created; must be empty or absent): PostgreSQL first,
    then EVENTS, TIMERS and DEAD. Raises BackupError."""
    _new_folder(dest)
    counts = {}
    try:
        await asyncio.to_thread(dump_postgres, database_url, dest / PG_DUMP_FILE, pg_bin)
        for stream in STREAMS:
            state = await snapshot_stream(nc, stream, dest / "jetstream" / stream)
            counts[stream] = int(state.get("messages", 0))
    except BaseException:
        _empty_folder(dest)  # a half backup must not pass for one; the folder was empty
        raise
    manifest = Manifest(
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        version=VERSION,
        streams=counts,
    )
    _write_text(dest / MANIFEST, manifest.to_json())
    return manifest


async def restore(
    nc: Client, database_url: str, src: Path, pg_bin: str | None = None
) -> dict[str, int]:
    """Restore a backup folder: PostgreSQL into an empty database, then each stream
    (none may exist yet). Returns each stream's message count after the restore. Run it
    before any Parkmate service starts: a service creates empty streams at start.
    Raises BackupError."""
    streams = _streams_in(src)
    js = nc.jetstream()
    for stream in streams:
        try:
            await js.stream_info(stream)
        except NotFoundError:
            continue
        raise BackupError(
            f"stream {stream} already exists on this server: restore needs a server without "
            "Parkmate's streams (start the services only after the restore)"
        )
    await asyncio.to_thread(restore_postgres, database_url, src / PG_DUMP_FILE, pg_bin)
    counts = {}
    for stream in streams:
        state = await restore_stream(nc, src / "jetstream" / stream)
        counts[stream] = int(state.get("messages", 0))
    return counts


def folder_size(path: Path) -> int:
    """Bytes of every file under `path`."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

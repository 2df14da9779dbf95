"""Fan-out of live notifications: N users on a socket each, R admin sends to all of them.

    .venv/bin/python -m benchmarks.fanout [--users 1000] [--rounds 20] [--rate R]
        [--url http://127.0.0.1:8000] [--settle 10] [--json PATH] [--check]

Against a running Parkmate at `--url` (e.g. what `scripts/dev` prints), or, without
`--url`, one it starts itself (`parkmate dev` on a free port with a temporary state
dir, stopped with SIGINT at the end). Then:

1. logs in as an admin (`--admin-email` / `--admin-password`, default the demo admin
   `parkmate dev` seeds) and creates `--users` drivers with POST /admin/users/bulk
   (emails unique to this run), each with an access token;
2. opens one WebSocket per user on /ws?token=..., at most `--concurrency` handshakes in
   flight, timed until every socket has its `hello`; the api's RSS is read before and
   after. The client is lean, as it shares the CPU with the server: websockets' Sans-I/O
   protocol under a plain asyncio.Protocol per socket (no task per socket), every frame
   of a received chunk stamped with that chunk's arrival time;
3. waits (at most a minute) until the notifier knows every new user: they reach it
   asynchronously (user.registered), and a send to an unknown user is refused (400).
   The probe is a send to the users plus one id nobody has: always refused, so nothing
   is stored, and the answer lists the ids still unknown. Round 0 is also retried on
   such a 400 for up to a minute; neither counts in the figures;
4. rounds: each sends POST /admin/notifications to every user (1,000 user ids a
   request, the requests of a round at once) with data {"seq": round, "sent_at": t};
   back to back, or `--rate` rounds per second;
5. waits until every socket has all its frames, or no notification frame arrived for
   `--settle` seconds.

Prints frames expected, delivered, lost, duplicated and out of order, sockets the
server closed (by close code), error frames, latency from `sent_at` to arrival,
delivered frames per second, the api's RSS per socket, and CPU milliseconds per
delivered notification of the api, the notifier, nats-server, PostgreSQL and this
client. Processes are found with psutil: descendants of the `parkmate dev` it started,
or, with `--url`, the process listening on the URL's port and its siblings (nats-server
and PostgreSQL only when the same parent started them; else "not found").

Asserts nothing about time (machines differ, and are noisy). `--check` exits 1 when a
frame was lost, duplicated or out of order, or a socket was closed or never opened.
Permessage-deflate is off unless `--deflate` (the client shares the CPU with the server).
"""

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
import msgspec
import psutil
from websockets.client import ClientProtocol
from websockets.exceptions import WebSocketException
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.frames import BINARY, CLOSE, CONT, TEXT, CloseCode, Frame
from websockets.protocol import OPEN
from websockets.typing import BytesLike
from websockets.uri import parse_uri

from services.runtime.embedded import free_port

BULK = 5000  # accounts per POST /admin/users/bulk (services/api/routes/admin_bulk.py)
PER_SEND = 1000  # user ids per POST /admin/notifications
WARMUP_SECONDS = 60.0  # how long round 0 is retried while the notifier learns the users
SETTLE_CAP = 600.0  # never wait longer than this for frames after the last round
PONG = b'{"type":"pong"}'
OPEN_TIMEOUT = 60.0  # seconds for a socket's handshake, and again for its `hello`
CLOSE_TIMEOUT = 5.0  # seconds the server gets to close TCP after the closing handshake
PROCESSES = ("api", "notifier", "nats-server", "postgres")

_decode = msgspec.json.Decoder().decode


class BenchmarkError(Exception):
    """The benchmark could not run (a refused request, a server that did not start)."""


@dataclass
class Options:
    """What to run; `url` None starts a `parkmate dev` of its own."""

    users: int = 1000
    rounds: int = 20
    rate: float | None = None  # rounds per second; None: back to back
    url: str | None = None
    admin_email: str = "admin@example.com"
    admin_password: str = "parkmate"
    settle: float = 10.0
    concurrency: int = 150  # WebSocket handshakes in flight
    deflate: bool = False
    token_seconds: int = 12 * 3600
    quiet: bool = False  # no progress lines on stderr


@dataclass
class Result:
    """Counts and figures of one run (None: not measured, e.g. process not found)."""

    users: int
    rounds: int
    expected: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    sockets_opened: int = 0
    sockets_failed: int = 0  # never got `hello`
    open_errors: dict[str, int] = field(default_factory=dict)  # why, by exception
    sockets_closed: int = 0  # closed by the server (or the connection dropped)
    close_codes: dict[str, int] = field(default_factory=dict)
    error_frames: int = 0
    frames_before_hello: int = 0
    unexpected_notifications: int = 0  # notification frames without our data.seq
    frame_types: dict[str, int] = field(default_factory=dict)  # every frame, by type
    latency_ms_p50: float | None = None
    latency_ms_p99: float | None = None
    latency_ms_max: float | None = None
    send_ms_p50: float | None = None  # POST /admin/notifications to its 202
    send_ms_max: float | None = None
    warmup_seconds: float | None = None  # until the notifier knew every user
    round0_retries: int = 0
    frames_per_second: float | None = None
    open_seconds: float | None = None
    api_rss_kb_per_socket: float | None = None
    # The api's RSS before the sockets and with them open, MB: on an api that held more
    # sockets earlier, freed memory is reused and the per-socket figure reads low, so
    # it counts only on a freshly started api.
    api_rss_mb: tuple[float, float] | None = None
    cpu_ms_per_notification: dict[str, float | None] = field(default_factory=dict)
    pids: dict[str, list[int]] = field(default_factory=dict)  # the processes measured
    client_cpu_ms_per_notification: float | None = None

    def failures(self) -> list[str]:
        """What `--check` fails on; empty when the delivery was exact."""
        out = []
        for name in ("lost", "duplicated", "out_of_order", "sockets_closed", "sockets_failed"):
            if getattr(self, name):
                out.append(f"{name.replace('_', ' ')}: {getattr(self, name):,}")
        if self.delivered != self.expected:
            out.append(f"delivered {self.delivered:,} of {self.expected:,}")
        return out

    def summary(self) -> str:
        """The counts on one line, for assertion messages."""
        return (
            f"expected={self.expected} delivered={self.delivered} lost={self.lost} "
            f"duplicated={self.duplicated} out_of_order={self.out_of_order} "
            f"sockets_closed={self.sockets_closed} close_codes={self.close_codes} "
            f"sockets_failed={self.sockets_failed} error_frames={self.error_frames} "
            f"frames_before_hello={self.frames_before_hello} frame_types={self.frame_types}"
        )

    def lines(self) -> list[str]:
        """The report, one figure a line."""

        def num(value: float | None, unit: str = "", digits: int = 1) -> str:
            return "n/a" if value is None else f"{value:,.{digits}f}{unit}"

        codes = ", ".join(f"{k}: {v:,}" for k, v in sorted(self.close_codes.items()))
        types = ", ".join(f"{k} {v:,}" for k, v in sorted(self.frame_types.items()))
        out = [
            f"users: {self.users:,}; rounds: {self.rounds:,}",
            f"sockets opened: {self.sockets_opened:,} (failed: {self.sockets_failed:,})"
            + (f" {self.open_errors}" if self.open_errors else ""),
            f"time to open all sockets: {num(self.open_seconds, ' s', 2)}",
            f"notification frames expected: {self.expected:,}",
            f"delivered: {self.delivered:,}",
            f"lost: {self.lost:,}",
            f"duplicated: {self.duplicated:,}",
            f"out of order: {self.out_of_order:,}",
            f"sockets closed by the server: {self.sockets_closed:,}"
            + (f" (codes {codes})" if codes else ""),
            f"error frames: {self.error_frames:,}",
            f"frames before hello: {self.frames_before_hello:,}",
            f"other notification frames: {self.unexpected_notifications:,}",
            f"frames received by type: {types or 'none'}",
            f"wait until the notifier knew every user: {num(self.warmup_seconds, ' s', 2)}",
            f"round 0 retries (notifier not yet aware of the users): {self.round0_retries:,}",
            f"admin send to 202: p50 {num(self.send_ms_p50, ' ms', 0)}, "
            f"max {num(self.send_ms_max, ' ms', 0)}",
            f"latency p50: {num(self.latency_ms_p50, ' ms')}",
            f"latency p99: {num(self.latency_ms_p99, ' ms')}",
            f"latency max: {num(self.latency_ms_max, ' ms')}",
            f"delivered notification frames per second: {num(self.frames_per_second, '', 0)}",
            f"api RSS per socket: {num(self.api_rss_kb_per_socket, ' KB')}"
            + (
                f" ({self.api_rss_mb[0]:.0f} MB before the sockets, {self.api_rss_mb[1]:.0f} MB "
                "with them; meaningful on a freshly started api only)"
                if self.api_rss_mb
                else ""
            ),
        ]
        for name in PROCESSES:
            value = self.cpu_ms_per_notification.get(name)
            pids = ", ".join(str(p) for p in self.pids.get(name, []))
            shown = (
                "not found"
                if not pids
                else f"n/a (pid {pids})"
                if value is None
                else f"{value:.4f} ms (pid {pids})"
            )
            out.append(f"CPU per delivered notification, {name}: {shown}")
        out.append(
            "CPU per delivered notification, this client: "
            f"{num(self.client_cpu_ms_per_notification, ' ms', 4)}"
        )
        return out


# ----- the client's sockets -----


class Tally:
    """What every socket saw, shared: first-arrival latencies and progress."""

    def __init__(self, expected: int):
        self.expected = expected
        self.delivered = 0
        self.latencies: list[float] = []  # seconds, one per delivered (user, round)
        self.last_arrival = 0.0  # time.time() of the last notification frame
        self.types: Counter[str] = Counter()
        self.all_in = asyncio.Event()


class Watcher(asyncio.Protocol):
    """One user's socket, a lean client: websockets' Sans-I/O `ClientProtocol` driven
    by this asyncio.Protocol, no task of its own. Records notification frames (by round
    and inbox seq), answers pings, notes a close it did not ask for.

    Every frame parsed from one `data_received` chunk gets that chunk's arrival time."""

    __slots__ = (
        "before_hello",
        "close_timer",
        "closed_code",
        "closing",
        "duplicated",
        "errors",
        "failure",
        "fragments",
        "greeted",
        "hello",
        "last_seq",
        "lost",
        "out_of_order",
        "protocol",
        "responded",
        "rounds",
        "seqs",
        "tally",
        "transport",
        "unexpected",
        "uri",
        "user_id",
    )

    def __init__(self, user_id: str, url: str, deflate: bool, tally: Tally):
        loop = asyncio.get_running_loop()
        self.user_id = user_id
        self.tally = tally
        self.uri = parse_uri(url)
        self.protocol = ClientProtocol(
            self.uri,
            extensions=enable_client_permessage_deflate(None) if deflate else None,
            max_size=None,
        )
        self.transport: asyncio.Transport | None = None
        self.responded: asyncio.Future[None] = loop.create_future()  # response, or lost
        self.greeted: asyncio.Future[None] = loop.create_future()  # `hello`, or lost
        self.lost: asyncio.Future[None] = loop.create_future()  # connection_lost ran
        self.close_timer: asyncio.TimerHandle | None = None
        self.fragments: list[bytes] | None = None  # a fragmented message so far
        self.hello = False
        self.closing = False
        self.closed_code: int | None = None
        self.rounds: set[int] = set()
        self.seqs: set[int] = set()
        self.last_seq = -1
        self.duplicated = 0
        self.out_of_order = 0
        self.errors = 0
        self.failure: str | None = None  # why it never got `hello`
        self.before_hello = 0
        self.unexpected = 0

    # -- opening and closing --

    async def open(self) -> None:
        """Connect, then wait for `hello` (raises on failure, or after 60 s for the
        handshake and 60 s more for `hello`, like websockets' own client did)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(OPEN_TIMEOUT):
                await loop.create_connection(lambda: self, self.uri.host, self.uri.port)
                await self.responded
        except TimeoutError as e:
            raise TimeoutError("timed out during opening handshake") from e
        if self.protocol.handshake_exc is not None:
            raise self.protocol.handshake_exc
        async with asyncio.timeout(OPEN_TIMEOUT):
            await self.greeted
        if not self.hello:  # the connection was lost first: why, as websockets says it
            raise self.protocol.close_exc

    def start_close(self) -> None:
        """Close from our side (not counted as closed by the server): a close frame if
        the socket is open, else drop the connection."""
        self.closing = True
        transport = self.transport
        if transport is None or self.lost.done():
            return
        if self.protocol.state is OPEN:
            self.protocol.send_close(CloseCode.NORMAL_CLOSURE)
            self.flush()
        else:
            transport.abort()

    def abort(self) -> None:
        """Drop the connection now, without a closing handshake."""
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the handshake request."""
        self.transport = cast(asyncio.Transport, transport)
        self.protocol.send_request(self.protocol.connect())
        self.flush()

    def data_received(self, data: bytes) -> None:
        """Parse frames out of `data`, all stamped with one arrival time; write what the
        protocol answers (pong to a control ping, close echo) and our pongs."""
        now = time.time()
        protocol = self.protocol
        protocol.receive_data(data)
        events = protocol.events_received()
        self.flush()
        pongs = 0
        for event in events:
            if isinstance(event, Frame):
                pongs += self.on_event(event, now)
            elif not self.responded.done():  # the handshake Response, first
                self.responded.set_result(None)
        if pongs and protocol.state is OPEN:
            for _ in range(pongs):
                protocol.send_text(PONG)
            self.flush()
        if self.close_timer is None and protocol.close_expected():
            # The server should now close TCP; do not wait for it forever.
            self.close_timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.abort)

    def eof_received(self) -> bool | None:
        """The server half-closed: let the protocol know (it may complete an HTTP error
        response read to EOF); returning None closes the transport."""
        self.protocol.receive_eof()
        self.after_eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """Mark the socket closed: the server's close code (1006 without a close frame)
        unless we closed it; wake whoever waits for the handshake or `hello`."""
        self.protocol.receive_eof()  # idempotent: the state is CLOSED from here on
        self.after_eof()
        if not self.closing and self.closed_code is None:
            self.closed_code = self.protocol.close_code or 1006
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        for waiter in (self.responded, self.greeted, self.lost):
            if not waiter.done():
                waiter.set_result(None)

    def after_eof(self) -> None:
        """Events and writes the protocol produced on EOF (a Response read to EOF)."""
        for event in self.protocol.events_received():
            if not isinstance(event, Frame) and not self.responded.done():
                self.responded.set_result(None)
        self.flush()

    def flush(self) -> None:
        """Write what the protocol has to send; an empty chunk means half-close."""
        transport = self.transport
        for chunk in self.protocol.data_to_send():
            if transport is None or transport.is_closing():
                continue
            if chunk:
                transport.write(chunk)
            elif transport.can_write_eof():
                transport.write_eof()
            else:
                transport.close()

    # -- frames --

    def on_event(self, frame: Frame, now: float) -> int:
        """One frame from the protocol; 1 when it was a server ping (answer a pong)."""
        opcode = frame.opcode
        if opcode is TEXT or opcode is BINARY:
            if frame.fin:
                return self.on_frame(frame.data, now)
            self.fragments = [bytes(frame.data)]
        elif opcode is CONT and self.fragments is not None:
            self.fragments.append(bytes(frame.data))
            if frame.fin:
                raw, self.fragments = b"".join(self.fragments), None
                return self.on_frame(raw, now)
        elif opcode is CLOSE and not self.closing and self.protocol.close_rcvd is not None:
            self.closed_code = self.protocol.close_rcvd.code
        return 0

    def on_frame(self, raw: BytesLike, now: float) -> int:
        """Account for one message that arrived at `now`; 1 when the server pinged."""
        tally = self.tally
        try:
            frame = _decode(raw)
        except msgspec.DecodeError:
            tally.types["undecodable"] += 1
            return 0
        kind = frame.get("type") if isinstance(frame, dict) else None
        tally.types[str(kind)] += 1
        if kind == "hello":
            self.hello = True
            self.last_seq = frame.get("last_seq", 0)
            if not self.greeted.done():
                self.greeted.set_result(None)
            return 0
        if not self.hello:
            self.before_hello += 1
        if kind == "notification":
            self.on_notification(frame.get("notification") or {}, now, tally)
        elif kind == "ping":
            return 1
        elif kind == "error":
            self.errors += 1
        return 0

    def on_notification(self, note: dict[str, Any], now: float, tally: Tally) -> None:
        seq = note.get("seq")
        data = note.get("data") or {}
        round_ = data.get("seq")
        sent_at = data.get("sent_at")
        if not isinstance(round_, int) or not isinstance(sent_at, int | float):
            self.unexpected += 1
            round_ = None
        if seq in self.seqs or round_ in self.rounds:
            self.duplicated += 1
            return
        # Order is the inbox seq's: rounds sent with --rate may overlap, and then the
        # server's seq order, not the round number, is what a socket must keep.
        if not isinstance(seq, int) or seq <= self.last_seq:
            self.out_of_order += 1
        if isinstance(seq, int):
            self.seqs.add(seq)
            self.last_seq = max(self.last_seq, seq)
        tally.last_arrival = now
        if round_ is None:
            return
        self.rounds.add(round_)
        tally.delivered += 1
        tally.latencies.append(now - sent_at)
        if tally.delivered >= tally.expected:
            tally.all_in.set()


async def open_all(
    ws_base: str,
    users: list[dict[str, str]],
    options: Options,
    tally: Tally,
) -> list[Watcher]:
    """A Watcher per user, opened concurrently (at most `options.concurrency` at once)."""
    gate = asyncio.Semaphore(options.concurrency)
    watchers = [
        Watcher(u["id"], f"{ws_base}/ws?token={u['access_token']}", options.deflate, tally)
        for u in users
    ]

    async def one(w: Watcher) -> None:
        async with gate:
            try:
                await w.open()
            except (OSError, WebSocketException, TimeoutError) as e:
                w.failure = f"{type(e).__name__}: {e}"[:120]
                w.abort()

    await asyncio.gather(*(one(w) for w in watchers))
    return watchers


async def close_all(watchers: list[Watcher]) -> None:
    """Close every socket from our side: a close frame each, then whatever the server
    has not closed within CLOSE_TIMEOUT is dropped."""
    for w in watchers:
        w.start_close()
    pending = [w.lost for w in watchers if w.transport is not None and not w.lost.done()]
    if pending:
        await asyncio.wait(pending, timeout=CLOSE_TIMEOUT)
    for w in watchers:
        if not w.lost.done():
            w.abort()


# ----- the server's processes -----


def _service_of(proc: psutil.Process) -> str | None:
    """'api', 'notifier', ... for `python -m services.X` or `... services.cli run X`."""
    try:
        cmd = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    for i, part in enumerate(cmd[:-1]):
        if part == "-m" and cmd[i + 1].startswith("services."):
            module = cmd[i + 1].split(".")
            if module[1] != "cli" and len(module) >= 2:
                return module[1]
        if part == "run" and (i > 0 and ("services.cli" in cmd[i - 1] or "parkmate" in cmd[i - 1])):
            return cmd[i + 1]
    return None


def _name(proc: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return proc.name()
    return ""


def _group(candidates: Iterable[psutil.Process]) -> dict[str, list[psutil.Process]]:
    """api, notifier, nats-server and postmasters among `candidates`."""
    found: dict[str, list[psutil.Process]] = {name: [] for name in PROCESSES}
    for p in candidates:
        name = _name(p)
        if name == "nats-server":
            found["nats-server"].append(p)
        elif name == "postgres" or name == "postmaster":
            with contextlib.suppress(psutil.Error):
                parent = p.parent()
                if parent is None or _name(parent) not in ("postgres", "postmaster"):
                    found["postgres"].append(p)  # the postmaster, not a backend
        else:
            service = _service_of(p)
            if service in ("api", "notifier"):
                found[service].append(p)
    return found


def processes_under(root_pid: int) -> dict[str, list[psutil.Process]]:
    """The system's processes among the descendants of `root_pid` (parkmate dev)."""
    return _group(psutil.Process(root_pid).children(recursive=True))


def processes_at(port: int) -> dict[str, list[psutil.Process]]:
    """The api listening on `port`, and its siblings, nats-server and PostgreSQL
    started by the same parent. Empty lists where not found."""
    api_pid = None
    with contextlib.suppress(psutil.Error):
        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                api_pid = c.pid
                break
    if api_pid is None:
        return {name: [] for name in PROCESSES}
    api = psutil.Process(api_pid)
    parent = api.parent()
    if parent is None or parent.pid == 1:
        return {name: [] for name in PROCESSES} | {"api": [api]}
    found = _group(parent.children())
    found["api"] = [api]
    return found


def cpu_seconds(found: dict[str, list[psutil.Process]]) -> dict[str, float | None]:
    """User+system CPU seconds so far per kind; a postmaster counts its backends, live
    ones and those it has reaped. None where no process was found."""
    out: dict[str, float | None] = {}
    for name in PROCESSES:
        procs = found.get(name) or []
        if not procs:
            out[name] = None
            continue
        total = 0.0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
                if name == "postgres":
                    total += t.children_user + t.children_system
                    for child in p.children(recursive=True):
                        with contextlib.suppress(psutil.Error):
                            ct = child.cpu_times()
                            total += ct.user + ct.system
        out[name] = total
    return out


def rss(procs: list[psutil.Process]) -> int | None:
    """Resident bytes of `procs`, summed; None when there are none."""
    if not procs:
        return None
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


class DevServer:
    """`parkmate dev` on a free port with a temporary state dir; its output is drained
    to a log file (services write to it: an unread pipe would stall them)."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.port = free_port()
        self.log_path = state_dir / "parkmate-dev.log"
        self.url: str | None = None
        self.proc: subprocess.Popen | None = None
        self._ready = threading.Event()

    def _command(self) -> list[str]:
        script = Path(sys.executable).with_name("parkmate")
        prefix = [str(script)] if script.exists() else [sys.executable, "-m", "services.cli"]
        state = str(self.state_dir / "state")
        return [*prefix, "dev", "--port", str(self.port), "--state-dir", state]

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with open(self.log_path, "w") as log:
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                if line.startswith("Parkmate is ready at "):
                    self.url = line.split(" at ", 1)[1].strip().rstrip("/")
                    self._ready.set()

    def _tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "".join(self.log_path.read_text().splitlines(True)[-lines:])
        return ""

    def _spawn(self) -> subprocess.Popen:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PARKMATE_NATS_URL", "PARKMATE_DATABASE_URL")
        }
        return subprocess.Popen(
            self._command(),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    async def start(self, timeout: float = 180.0) -> str:
        """Start it; its URL once it printed it (BenchmarkError if it exits or is slow)."""
        self.proc = self._spawn()
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not self._ready.is_set():
            if self.proc.poll() is not None:
                raise BenchmarkError(f"parkmate dev exited early:\n{self._tail()}")
            if time.monotonic() > deadline:
                raise BenchmarkError(f"parkmate dev not ready in {timeout:.0f} s:\n{self._tail()}")
            await asyncio.sleep(0.2)
        assert self.url is not None
        return self.url

    def stop(self) -> None:
        """SIGINT, then SIGKILL if it has not stopped within a minute."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def raise_fd_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: one descriptor per socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@contextlib.asynccontextmanager
async def parkmate(options: Options) -> AsyncIterator[tuple[str, dict[str, list[psutil.Process]]]]:
    """(base URL, the system's processes): `options.url`'s, or a `parkmate dev`'s."""
    if options.url:
        url = options.url.rstrip("/")
        parts = urlsplit(url)
        if parts.hostname not in ("127.0.0.1", "localhost"):
            raise BenchmarkError(f"{url}: only 127.0.0.1 is allowed")
        yield url, processes_at(parts.port or 80)
        return
    with tempfile.TemporaryDirectory(prefix="parkmate-fanout-") as tmp:
        dev = DevServer(Path(tmp))
        try:
            url = await dev.start()
            assert dev.proc is not None
            yield url, processes_under(dev.proc.pid)
        finally:
            await asyncio.to_thread(dev.stop)


# ----- the load -----


def progress(options: Options, text: str) -> None:
    if not options.quiet:
        print(f"fanout: {text}", file=sys.stderr, flush=True)


async def login(http: httpx.AsyncClient, email: str, password: str) -> str:
    r = await http.post("/api/v1/auth/login", json={"email": email, "password": password})
    if r.status_code != 200:
        raise BenchmarkError(
            f"cannot log in as {email} ({r.status_code}); give an admin's --admin-email and "
            "--admin-password (parkmate dev seeds admin@example.com / parkmate)"
        )
    return r.json()["access_token"]


async def create_users(
    http: httpx.AsyncClient, admin: str, count: int, token_seconds: int
) -> list[dict[str, str]]:
    """`count` new drivers (emails unique to this run): id and access_token each."""
    run_id = secrets.token_hex(4)
    users: list[dict[str, str]] = []
    for start in range(0, count, BULK):
        body = {
            "users": [
                {"email": f"fanout{i}.{run_id}@bench.parkmate.example", "full_name": f"Fan {i}"}
                for i in range(start, min(count, start + BULK))
            ],
            "token_seconds": token_seconds,
        }
        r = await http.post(
            "/api/v1/admin/users/bulk", json=body, headers={"Authorization": f"Bearer {admin}"}
        )
        if r.status_code != 201:
            raise BenchmarkError(f"bulk accounts refused: {r.status_code} {r.text[:300]}")
        users += [{"id": u["id"], "access_token": u["access_token"]} for u in r.json()["items"]]
    return users


class Sender:
    """Rounds of admin sends to every user, 1,000 ids a request, a round's at once."""

    def __init__(self, http: httpx.AsyncClient, admin: str, user_ids: list[str]):
        self.http = http
        self.headers = {"Authorization": f"Bearer {admin}"}
        self.chunks = [user_ids[i : i + PER_SEND] for i in range(0, len(user_ids), PER_SEND)]
        self.send_seconds: list[float] = []
        self.retries = 0
        self.probes = 0
        self.first_start: float | None = None  # time.time() of round 0's accepted sends

    async def _known(self, chunk: list[str], deadline: float) -> None:
        """Until the notifier knows every user of `chunk`: a send to them plus one id
        nobody has is refused (400, nothing stored) listing the unknown ids; done when
        that id is the only one. Gives up quietly at `deadline` (round 0 retries)."""
        nobody = str(uuid.uuid4())
        body = {"audience": {"user_ids": [*chunk, nobody]}, "title": "Probe", "body": "Probe"}
        while time.monotonic() < deadline:
            self.probes += 1
            r = await self.http.post("/api/v1/admin/notifications", json=body, headers=self.headers)
            if r.status_code == 202:
                raise BenchmarkError("a probe to an id nobody has was accepted")
            unknown = (r.json().get("extra") or {}).get("unknown") if r.status_code == 400 else None
            if not isinstance(unknown, list) or unknown == [nobody]:
                return
            await asyncio.sleep(0.25)

    async def wait_known(self, seconds: float = WARMUP_SECONDS) -> float:
        """Wait (at most `seconds`) until the notifier knows every user; seconds waited."""
        started = time.monotonic()
        await asyncio.gather(*(self._known(c, started + seconds) for c in self.chunks))
        return time.monotonic() - started

    async def _one(self, round_: int, chunk: list[str], retry_unknown: bool) -> None:
        deadline = time.monotonic() + WARMUP_SECONDS
        while True:
            sent_at = time.time()
            body = {
                "audience": {"user_ids": chunk},
                "title": f"Fan-out round {round_}",
                "body": "Fan-out benchmark",
                "data": {"seq": round_, "sent_at": sent_at},
            }
            started = time.perf_counter()
            r = await self.http.post("/api/v1/admin/notifications", json=body, headers=self.headers)
            if r.status_code == 202:
                self.send_seconds.append(time.perf_counter() - started)
                if round_ == 0:
                    self.first_start = min(self.first_start or sent_at, sent_at)
                return
            if (
                retry_unknown
                and r.status_code == 400
                and "unknown user" in r.text
                and time.monotonic() < deadline
            ):
                self.retries += 1
                await asyncio.sleep(0.25)
                continue
            raise BenchmarkError(f"round {round_}: send refused: {r.status_code} {r.text[:300]}")

    async def round(self, round_: int) -> None:
        """Send round `round_` to everyone; returns when every request answered 202."""
        await asyncio.gather(*(self._one(round_, c, round_ == 0) for c in self.chunks))

    async def all_rounds(self, rounds: int, rate: float | None) -> None:
        """Round 0 (retried until the notifier knows the users), then the others: back
        to back, or one every 1/rate seconds from round 0's (accepted) start."""
        await self.round(0)
        if not rate:
            for r in range(1, rounds):
                await self.round(r)
            return
        t0 = self.first_start or time.time()
        tasks = []
        for r in range(1, rounds):
            await asyncio.sleep(max(0.0, t0 + r / rate - time.time()))
            tasks.append(asyncio.create_task(self.round(r)))
        await asyncio.gather(*tasks)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


async def settle(tally: Tally, quiet_seconds: float) -> None:
    """Until every frame is in, or none arrived for `quiet_seconds` (capped)."""
    deadline = time.monotonic() + SETTLE_CAP
    since = time.time()
    while not tally.all_in.is_set() and time.monotonic() < deadline:
        if time.time() - max(since, tally.last_arrival) >= quiet_seconds:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tally.all_in.wait(), 0.1)


def _client_cpu() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


async def run(options: Options) -> Result:
    """The whole benchmark; the figures as a Result (raises BenchmarkError when a
    request it needs is refused)."""
    if options.users < 1 or options.rounds < 1:
        raise BenchmarkError("--users and --rounds must be at least 1")
    raise_fd_limit()
    result = Result(users=options.users, rounds=options.rounds)
    result.expected = options.users * options.rounds
    tally = Tally(result.expected)
    async with (
        parkmate(options) as (url, found),
        httpx.AsyncClient(base_url=url, timeout=120) as http,
    ):
        admin = await login(http, options.admin_email, options.admin_password)
        users = await create_users(http, admin, options.users, options.token_seconds)
        progress(options, f"{len(users):,} users created; opening sockets")
        result.pids = {name: [p.pid for p in found[name]] for name in PROCESSES}
        rss_before = rss(found["api"])
        started, client_opening = time.perf_counter(), _client_cpu()
        watchers = await open_all("ws" + url[len("http") :], users, options, tally)
        result.open_seconds = time.perf_counter() - started
        rss_after = rss(found["api"])
        opened = [w for w in watchers if w.hello]
        result.sockets_opened = len(opened)
        result.sockets_failed = len(watchers) - len(opened)
        if rss_before is not None and rss_after is not None:
            result.api_rss_kb_per_socket = (rss_after - rss_before) / 1024 / options.users
            result.api_rss_mb = (rss_before / 2**20, rss_after / 2**20)
        progress(
            options,
            f"{len(opened):,} sockets open in {result.open_seconds:.1f} s (this client's CPU: "
            f"{_client_cpu() - client_opening:.1f} s)",
        )
        sender = Sender(http, admin, [u["id"] for u in users])
        result.warmup_seconds = await sender.wait_known()
        progress(options, f"the notifier knew every user after {result.warmup_seconds:.1f} s")
        cpu_before, client_before = cpu_seconds(found), _client_cpu()
        try:
            await sender.all_rounds(options.rounds, options.rate)
            progress(options, "all rounds sent; waiting for the frames")
            await settle(tally, options.settle)
            cpu_after, client_after = cpu_seconds(found), _client_cpu()
        finally:
            await close_all(watchers)
    return _figures(
        result, tally, watchers, sender, cpu_before, cpu_after, client_after - client_before
    )


def _figures(
    result: Result,
    tally: Tally,
    watchers: list[Watcher],
    sender: Sender,
    cpu_before: dict[str, float | None],
    cpu_after: dict[str, float | None],
    client_cpu: float,
) -> Result:
    """Fill `result` from what the sockets and the sender recorded."""
    result.delivered = tally.delivered
    result.lost = result.expected - tally.delivered
    codes: Counter[str] = Counter()
    result.open_errors = dict(Counter(w.failure for w in watchers if w.failure))
    for w in watchers:
        result.duplicated += w.duplicated
        result.out_of_order += w.out_of_order
        result.error_frames += w.errors
        result.frames_before_hello += w.before_hello
        result.unexpected_notifications += w.unexpected
        if w.hello and w.closed_code is not None:
            result.sockets_closed += 1
            codes[str(w.closed_code)] += 1
    result.close_codes = dict(codes)
    result.frame_types = dict(tally.types)
    result.round0_retries = sender.retries
    if tally.latencies:
        lat = sorted(tally.latencies)
        result.latency_ms_p50 = percentile(lat, 50) * 1000
        result.latency_ms_p99 = percentile(lat, 99) * 1000
        result.latency_ms_max = lat[-1] * 1000
    if sender.send_seconds:
        sends = sorted(sender.send_seconds)
        result.send_ms_p50 = percentile(sends, 50) * 1000
        result.send_ms_max = sends[-1] * 1000
    if tally.delivered and sender.first_start is not None:
        span = tally.last_arrival - sender.first_start
        result.frames_per_second = tally.delivered / span if span > 0 else None
    for name in PROCESSES:
        before, after = cpu_before.get(name), cpu_after.get(name)
        result.cpu_ms_per_notification[name] = (
            (after - before) * 1000 / tally.delivered
            if before is not None and after is not None and tally.delivered
            else None
        )
    if tally.delivered:
        result.client_cpu_ms_per_notification = client_cpu * 1000 / tally.delivered
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--rate", type=float, help="rounds per second (default: back to back)")
    parser.add_argument("--url", help="a running Parkmate (default: start parkmate dev)")
    parser.add_argument("--admin-email", default="admin@example.com")
    parser.add_argument("--admin-password", default="parkmate")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds without a frame")
    parser.add_argument("--concurrency", type=int, default=150, help="handshakes in flight")
    parser.add_argument("--deflate", action="store_true", help="permessage-deflate on")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--check", action="store_true", help="exit 1 unless delivery was exact")
    args = parser.parse_args()
    options = Options(
        users=args.users,
        rounds=args.rounds,
        rate=args.rate,
        url=args.url,
        admin_email=args.admin_email,
        admin_password=args.admin_password,
        settle=args.settle,
        concurrency=args.concurrency,
        deflate=args.deflate,
    )
    try:
        result = asyncio.run(run(options))
    except BenchmarkError as e:
        sys.exit(f"fanout: {e}")
    print("\n".join(result.lines()), flush=True)
    if args.json:
        args.json.write_text(json.dumps(dataclasses.asdict(result), indent=2) + "\n")
    if args.check and result.failures():
        sys.exit(1)


if __name__ == "__main__":
    main()

"""CPU seconds of every process a replay loads, read at two moments (the replay's day
part: from the first car to the last one done).

The Python services report their own: `process_cpu_seconds_total` on their `/metrics`
(prometheus-client's process collector, user + system). nats-server and PostgreSQL are
read from /proc, which needs the replay on their machine: nats-server's utime + stime;
PostgreSQL's postmaster's utime + stime + cutime + cstime (cutime and cstime hold the
backends it has reaped) plus its live children's utime + stime. The replay's own is
`time.process_time()`. Pids and metrics URLs come from the process list `parkmate dev`
writes (services/runtime/processes.py). A process that cannot be read is reported as
not measured, with why; nothing here raises for that.
"""

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families

from services.runtime import processes

PROCESSES = ("api", "bookings", "timers", "notifier", "nats-server", "postgres", "replay")
OTHERS = PROCESSES[:-1]  # every process but the replay itself
SERVICES = ("api", "bookings", "timers", "notifier")
SERVERS = {"nats-server": "nats-server", "postgres": "postgres"}  # list name -> /proc comm
CPU_METRIC = "process_cpu_seconds_total"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "::", ""}


def cpu_from_metrics(text: str) -> float | None:
    """`process_cpu_seconds_total` (seconds) in a Prometheus text exposition, or None."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == CPU_METRIC:
                return float(sample.value)
    return None


@dataclass(frozen=True)
class Stat:
    """The fields of /proc/<pid>/stat used here: comm, ppid, and CPU in clock ticks."""

    comm: str
    ppid: int
    utime: int
    stime: int
    cutime: int
    cstime: int


def parse_stat(text: str) -> Stat:
    """Parse /proc/<pid>/stat (proc(5)); comm may hold spaces and parentheses, so the
    fields are counted from its last ')'. Raises ValueError on another format."""
    head, sep, rest = text.rpartition(")")
    if not sep or "(" not in head:
        raise ValueError(f"not a /proc stat line: {text[:80]!r}")
    fields = rest.split()
    if len(fields) < 15:
        raise ValueError(f"not a /proc stat line: {text[:80]!r}")
    # fields[0] is field 3 (state) of proc(5): field n is fields[n - 3].
    return Stat(
        comm=head.split("(", 1)[1],
        ppid=int(fields[1]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        cutime=int(fields[13]),
        cstime=int(fields[14]),
    )


class ProcReader:
    """Reads processes' CPU seconds from a /proc tree (`root`, default /proc)."""

    def __init__(self, root: Path = Path("/proc")):
        self.root = root
        self.tick = os.sysconf("SC_CLK_TCK")

    def stat(self, pid: int) -> Stat | None:
        """The stat of `pid`, or None when it does not exist (or vanished meanwhile)."""
        try:
            return parse_stat((self.root / str(pid) / "stat").read_text())
        except (OSError, ValueError):
            return None

    def children(self, pid: int) -> list[Stat]:
        """The stats of the live processes whose parent is `pid`."""
        out = []
        for entry in self.root.iterdir():
            if entry.name.isdigit():
                stat = self.stat(int(entry.name))
                if stat is not None and stat.ppid == pid:
                    out.append(stat)
        return out

    def own_seconds(self, pid: int) -> float | None:
        """utime + stime of `pid` (seconds), or None when it does not exist."""
        s = self.stat(pid)
        return None if s is None else (s.utime + s.stime) / self.tick

    def postgres_seconds(self, pid: int) -> float | None:
        """The postmaster's utime + stime + cutime + cstime plus its live children's
        utime + stime (seconds), or None when it does not exist."""
        s = self.stat(pid)
        if s is None:
            return None
        ticks = s.utime + s.stime + s.cutime + s.cstime
        ticks += sum(c.utime + c.stime for c in self.children(pid))
        return ticks / self.tick


@dataclass
class Sample:
    """CPU seconds so far per process (absent: not read) and the time (epoch s)."""

    at: float
    seconds: dict[str, float] = field(default_factory=dict)


def same_api(a: str, b: str) -> bool:
    """Whether two base URLs reach the same api on this machine (port and host equal,
    or both loopback)."""
    x, y = urlsplit(a), urlsplit(b)
    if x.port != y.port:
        return False
    return x.hostname == y.hostname or (x.hostname in LOOPBACK and y.hostname in LOOPBACK)


class Meter:
    """Reads every process's CPU at once (`sample`). `why_not` says, per process, why
    it is not measured (no process list, another api's list, not on this machine...)."""

    def __init__(
        self,
        table: processes.ProcessFile | None,
        why_not: dict[str, str],
        proc: ProcReader | None = None,
    ):
        self.table = table
        self.why_not = dict(why_not)
        self.proc = proc or ProcReader()

    @classmethod
    def replay_only(cls, why: str) -> "Meter":
        """A meter of the replay's own CPU only; `why` the others are not measured."""
        return cls(None, {name: why for name in OTHERS})

    @classmethod
    def for_replay(cls, path: Path, api_url: str) -> "Meter":
        """A meter from the process list at `path` for the api at `api_url`; without a
        usable list only the replay itself is measured, and why_not says why."""
        try:
            table = processes.read(path)
        except ValueError as e:
            return cls.replay_only(str(e))
        if table is None:
            return cls.replay_only(
                f"no process list at {path} (parkmate dev writes it in its --state-dir)"
            )
        if not same_api(table.url, api_url):
            return cls.replay_only(f"{path} describes the api at {table.url}, not {api_url}")
        why_not = {
            name: f"not in {path} (parkmate dev did not start it)"
            for name in OTHERS
            if name not in table.processes
        }
        return cls(table, why_not)

    async def sample(self) -> Sample:
        """Every readable process's CPU seconds now; the unreadable ones get a reason in
        `why_not` (once a process failed to read, it stays unmeasured)."""
        out = Sample(at=time.time())
        out.seconds["replay"] = time.process_time()
        if self.table is None:
            return out
        entries = self.table.processes
        services = [n for n in SERVICES if n in entries and n not in self.why_not]
        async with httpx.AsyncClient(timeout=5.0) as http:
            values = await asyncio.gather(
                *(self._metrics(http, name, entries[name]) for name in services)
            )
        for name, value in zip(services, values, strict=True):
            if value is not None:
                out.seconds[name] = value
        for name, comm in SERVERS.items():
            if name in entries and name not in self.why_not:
                value = self._server(name, comm, entries[name].pid)
                if value is not None:
                    out.seconds[name] = value
        return out

    async def _metrics(
        self, http: httpx.AsyncClient, name: str, entry: processes.ProcessInfo
    ) -> float | None:
        if not entry.metrics_url:
            self.why_not[name] = "no metrics URL in the process list"
            return None
        try:
            r = await http.get(entry.metrics_url)
            r.raise_for_status()
        except httpx.HTTPError as e:
            self.why_not[name] = f"{entry.metrics_url}: {e!r}"[:200]
            return None
        value = cpu_from_metrics(r.text)
        if value is None:
            self.why_not[name] = f"{entry.metrics_url} has no {CPU_METRIC}"
        return value

    def _server(self, name: str, comm: str, pid: int) -> float | None:
        stat = self.proc.stat(pid)
        if stat is None:
            self.why_not[name] = f"no process {pid} on this machine"
            return None
        if stat.comm != comm:
            self.why_not[name] = f"process {pid} is {stat.comm!r}, not {comm}"
            return None
        if name == "postgres":
            return self.proc.postgres_seconds(pid)
        return self.proc.own_seconds(pid)


def figures(
    start: Sample | None, end: Sample | None, renewals: int, why_not: dict[str, str]
) -> dict[str, Any]:
    """The report's CPU section: per process CPU seconds between `start` and `end` and
    milliseconds per renewal handled (None where not measured, with `why_not`), the
    total over the measured processes and the replay's share of it (a fraction).

    The total and the share are given only when at least one server process (not the
    replay) was measured, and `complete` says whether every process was.
    """
    if start is None or end is None:
        return {
            "measured": False,
            "why_not": "the day part did not start" if start is None else "no end sample",
            "renewals": renewals,
        }
    rows = []
    total = 0.0
    measured = []
    for name in PROCESSES:
        if name in start.seconds and name in end.seconds:
            seconds = max(0.0, end.seconds[name] - start.seconds[name])
            total += seconds
            measured.append(name)
            rows.append(
                {
                    "name": name,
                    "cpu_seconds": round(seconds, 3),
                    "ms_per_renewal": round(seconds * 1000 / renewals, 3) if renewals else None,
                }
            )
        else:
            reason = why_not.get(name, "not read at both ends of the day part")
            rows.append(
                {"name": name, "cpu_seconds": None, "ms_per_renewal": None, "why_not": reason}
            )
    servers = [n for n in measured if n != "replay"]
    replay = end.seconds["replay"] - start.seconds["replay"]
    return {
        "measured": bool(servers),
        "why_not": None if servers else why_not.get("api", "no server process measured"),
        "complete": len(measured) == len(PROCESSES),
        "wall_seconds": round(end.at - start.at, 3),
        "renewals": renewals,
        "processes": rows,
        "total_cpu_seconds": round(total, 3) if servers else None,
        "total_ms_per_renewal": round(total * 1000 / renewals, 3) if servers and renewals else None,
        "replay_share": round(replay / total, 4) if servers and total > 0 else None,
    }

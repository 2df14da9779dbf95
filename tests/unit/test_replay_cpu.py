"""The replay's CPU accounting: /proc and metrics parsing, the process list, the figures,
and PostgreSQL's rule (postmaster + reaped + live children) on real processes."""

import subprocess
import sys

import pytest
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest

from services.replay.cpu import (
    Meter,
    ProcReader,
    Sample,
    cpu_from_metrics,
    figures,
    parse_stat,
    same_api,
)
from services.replay.report import render_cpu
from services.runtime import processes


def stat_line(pid: int, comm: str, ppid: int, utime: int, stime: int, cut: int, cst: int) -> str:
    # proc(5): pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt
    # cmajflt utime stime cutime cstime priority ...
    return (
        f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 100 0 0 0 "
        f"{utime} {stime} {cut} {cst} 20 0 1 0 100 1000 50"
    )


def test_stat_fields_are_counted_after_the_last_parenthesis():
    s = parse_stat(stat_line(42, "odd) (name", 7, 11, 22, 33, 44))
    assert (s.comm, s.ppid, s.utime, s.stime, s.cutime, s.cstime) == (
        "odd) (name",
        7,
        11,
        22,
        33,
        44,
    )
    with pytest.raises(ValueError):
        parse_stat("42 no parentheses here")


def test_cpu_seconds_come_from_the_process_collector_metric():
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    value = cpu_from_metrics(generate_latest(registry).decode())
    assert value is not None and value > 0
    assert cpu_from_metrics("# HELP x y\n# TYPE x counter\nx_total 3.0\n") is None


def test_a_process_list_for_another_api_or_none_measures_only_the_replay(tmp_path):
    path = tmp_path / processes.FILE_NAME
    absent = Meter.for_replay(path, "http://127.0.0.1:8000")
    assert absent.table is None and "no process list" in absent.why_not["api"]
    processes.write(
        path,
        processes.ProcessFile(
            url="http://127.0.0.1:8500",
            nats_url="nats://127.0.0.1:4300",
            processes={"api": processes.ProcessInfo(pid=1, metrics_url="http://x/metrics")},
        ),
    )
    other = Meter.for_replay(path, "http://127.0.0.1:8000")
    assert other.table is None and "not http://127.0.0.1:8000" in other.why_not["postgres"]
    mine = Meter.for_replay(path, "http://localhost:8500/")
    assert mine.table is not None and "api" not in mine.why_not
    assert "did not start it" in mine.why_not["nats-server"]
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a parkmate dev process list"):
        processes.read(path)
    assert same_api("http://0.0.0.0:80", "http://127.0.0.1:80")
    assert not same_api("http://127.0.0.1:80", "http://127.0.0.1:81")


async def test_a_server_pid_that_is_another_program_is_not_measured(tmp_path):
    path = tmp_path / processes.FILE_NAME
    processes.write(
        path,
        processes.ProcessFile(
            url="http://127.0.0.1:8500",
            nats_url="nats://127.0.0.1:4300",
            processes={"nats-server": processes.ProcessInfo(pid=1)},
        ),
    )
    meter = Meter.for_replay(path, "http://127.0.0.1:8500")
    sample = await meter.sample()
    assert "nats-server" not in sample.seconds and "replay" in sample.seconds
    assert "not nats-server" in meter.why_not["nats-server"]


def test_figures_per_process_per_renewal_total_and_share():
    start = Sample(at=100.0, seconds={"api": 10.0, "bookings": 5.0, "replay": 1.0})
    end = Sample(at=160.0, seconds={"api": 13.0, "bookings": 9.0, "replay": 2.0})
    f = figures(start, end, 2000, {"postgres": "no process 9 on this machine"})
    rows = {r["name"]: r for r in f["processes"]}
    assert rows["api"] == {"name": "api", "cpu_seconds": 3.0, "ms_per_renewal": 1.5}
    assert rows["bookings"]["ms_per_renewal"] == 2.0
    assert rows["postgres"]["cpu_seconds"] is None
    assert rows["postgres"]["why_not"] == "no process 9 on this machine"
    assert rows["timers"]["why_not"] == "not read at both ends of the day part"
    assert f["measured"] and not f["complete"]
    assert (f["total_cpu_seconds"], f["total_ms_per_renewal"]) == (8.0, 4.0)
    assert f["replay_share"] == 0.125
    assert f["wall_seconds"] == 60.0
    text = "\n".join(render_cpu(f))
    assert "postgres      not measured: no process 9 on this machine" in text
    assert "the replay's share of the total: 12.5% (of the processes measured)" in text


def test_figures_without_any_server_process_say_cpu_was_not_measured():
    start = Sample(at=1.0, seconds={"replay": 1.0})
    end = Sample(at=2.0, seconds={"replay": 1.5})
    why = {"api": "no process list at .parkmate/processes.json"}
    f = figures(start, end, 0, why)
    assert not f["measured"] and f["why_not"] == why["api"]
    assert f["total_cpu_seconds"] is None and f["replay_share"] is None
    text = render_cpu(f)
    assert text[-1] == (
        "  the services, nats-server and PostgreSQL: not measured (no process list at "
        ".parkmate/processes.json)"
    )
    assert text[-2].split() == ["replay", "0.50", "-"]  # no renewal: no ms per renewal
    assert figures(None, None, 5, why)["measured"] is False
    assert render_cpu(figures(None, None, 5, why)) == [
        "CPU: not measured (the day part did not start)"
    ]


BURN = "import time\nwhile time.process_time() < 0.3: pass\n"
LIVE = BURN + "print('burnt', flush=True)\nimport sys\nsys.stdin.read()\n"
PARENT = f"""
import subprocess, sys
subprocess.run([sys.executable, "-c", {BURN!r}], check=True)
live = subprocess.Popen([sys.executable, "-c", {LIVE!r}], stdin=subprocess.PIPE)
print("ready", live.pid, flush=True)
sys.stdin.read()
live.stdin.close()
live.wait()
"""


def test_postgres_rule_counts_reaped_and_live_children():
    """A parent that ran one child to its end (reaped: cutime) and keeps another alive,
    each having burnt 0.3 s of CPU: postgres_seconds counts both, own_seconds neither."""
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        _, live_pid = parent.stdout.readline().split()
        assert parent.stdout.readline() == "burnt\n"  # the live child has burnt its 0.3 s
        reader = ProcReader()
        own = reader.own_seconds(parent.pid)
        whole = reader.postgres_seconds(parent.pid)
        assert own is not None and whole is not None
        assert whole - own >= 0.6 - 0.05  # two children's 0.3 s, give or take a tick each
        assert [c.comm for c in reader.children(parent.pid)] == [reader.stat(int(live_pid)).comm]
        assert reader.stat(2**22 + 7) is None and reader.postgres_seconds(2**22 + 7) is None
    finally:
        parent.stdin.close()
        parent.wait(10)

"""`parkmate dev` as a new user runs it: embedded NATS and PostgreSQL, demo data, the
address printed, every process's pid and metrics in its process list, a clean stop on
SIGTERM, and a crashed service reported, not hidden."""

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from services.runtime.embedded import free_port

pytestmark = pytest.mark.e2e


def start_dev(state_dir, port) -> subprocess.Popen:
    """Start `parkmate dev`; its stderr (every service's log) goes to state_dir.log."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PARKMATE_NATS_URL", "PARKMATE_DATABASE_URL")
    }
    log = open(f"{state_dir}.log", "w")
    cmd = [sys.executable, "-m", "services.cli", "dev", "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--state-dir", str(state_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    proc.log_path = log.name
    return proc


def wait_for_address(proc: subprocess.Popen, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"parkmate dev ended early: {proc.log_path}")
        if line.startswith("Parkmate is ready at "):
            return line.split(" at ", 1)[1].strip()
    raise AssertionError("parkmate dev did not print its address in time")


def descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def test_dev_runs_everything_seeds_demo_data_and_stops_cleanly(tmp_path):
    port = free_port()
    state = tmp_path / "state"
    proc = start_dev(state, port)
    try:
        address = wait_for_address(proc)
        assert address == f"http://127.0.0.1:{port}/"
        children = descendants(proc.pid)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        for part in (
            "nats-server",
            "postgres",
            "services.api",
            "services.bookings",
            "services.timers",
            "services.notifier",
        ):
            assert part in names
        api = address + "api/v1"
        login = httpx.post(
            api + "/auth/login", json={"email": "driver@example.com", "password": "parkmate"}
        )
        assert login.status_code == 200
        token = login.json()["access_token"]
        lots = httpx.get(api + "/lots", headers={"Authorization": f"Bearer {token}"}).json()
        assert [lot["name"] for lot in lots["items"]] == ["Demo lot"]
        listed = json.loads((state / "processes.json").read_text())
        assert listed["url"] == f"http://127.0.0.1:{port}"
        assert listed["nats_url"].startswith("nats://127.0.0.1:")
        table = listed["processes"]
        assert set(table) == {"api", "bookings", "timers", "notifier", "nats-server", "postgres"}
        assert {entry["pid"] for entry in table.values()} <= {c.pid for c in children}
        for name in ("api", "bookings", "timers", "notifier"):
            metrics = httpx.get(table[name]["metrics_url"])
            assert metrics.status_code == 200 and "process_cpu_seconds_total" in metrics.text
            assert psutil.Process(table[name]["pid"]).cmdline()[-1] == f"services.{name}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        _, alive = psutil.wait_procs(children, timeout=10)
        assert alive == []
        assert not (state / "processes.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_dev_reports_a_crashed_service_and_exits_non_zero(tmp_path):
    proc = start_dev(tmp_path / "state", free_port())
    try:
        wait_for_address(proc)
        children = descendants(proc.pid)
        (bookings,) = [c for c in children if "services.bookings" in " ".join(c.cmdline())]
        bookings.kill()
        assert proc.wait(60) == 1
        assert "service bookings exited" in open(proc.log_path).read()
        _, alive = psutil.wait_procs(children, timeout=10)
        assert alive == []
    finally:
        if proc.poll() is None:
            proc.kill()


def test_dev_refuses_a_nats_server_older_than_2_12(tmp_path):
    """A stand-in NATS server that says it is 2.9.25 (the protocol's INFO/PING/PONG only)."""
    import json
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    info = {
        "server_id": "OLD",
        "version": "2.9.25",
        "proto": 1,
        "max_payload": 1048576,
        "headers": True,
        "jetstream": True,
        "host": "127.0.0.1",
        "port": port,
    }

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.sendall(f"INFO {json.dumps(info)}\r\n".encode())
            buf = b""
            while True:
                data = conn.recv(4096)
                if not data:
                    break
                buf += data
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    if line.startswith(b"PING"):
                        conn.sendall(b"PONG\r\n")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    env = {
        **os.environ,
        "PARKMATE_NATS_URL": f"nats://127.0.0.1:{port}",
        "PARKMATE_DATABASE_URL": "postgresql://unused@127.0.0.1:1/unused",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "dev",
            "--state-dir",
            str(tmp_path / "s"),
            "--port",
            str(free_port()),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    listener.close()
    assert result.returncode == 2, result.stderr
    assert "2.9.25" in result.stderr and "2.12 or newer" in result.stderr

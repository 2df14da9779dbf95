"""A fresh clone has what `parkmate replay` needs: the repository's tracked files alone,
copied to a folder with nothing beside it, run the replay's command line and load the
data set packaged with Parkmate (docs/data.md). Then as a new user (issue 11): install
the copy from nothing with `scripts/setup` (its own .venv and uv, from uv.lock), start
`scripts/dev` from it and run `parkmate replay --lots <two car parks> --start 10 --end
11 --speed 120` against it with the copy's own `parkmate`.

One copy and one install serve every test here (module fixtures). Installing from
nothing took about 12 s on the development machine with an empty uv cache and its PyPI
mirror (2 shared cores), so it is done once, not per test."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.runtime.embedded import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
LOTS = "BHMEURBRD02,BHMNCPPLS01"  # Broad Street 2, NCP Grand Central: cars come and go

LOAD = """
from datetime import date
import services
from services.replay import dataset
from services.replay.runner import load_plan
plan = load_plan(None, date(2016, 12, 16), 8, 16.5, None, seed=1)
print(services.__file__)
print(dataset.packaged())
print(len(plan.data.lots), len(plan.cars))
"""


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The tracked files of this repository (git ls-files), copied alone."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    dest = tmp_path_factory.mktemp("clone") / "parkmate"
    for name in filter(None, listed.split("\0")):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    return dest


def run_python(clone: Path, *args: str) -> str:
    """Run this interpreter in the copy: `-m` and `-c` put the copy first on sys.path,
    ahead of the editable install of the working tree."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, *args], cwd=clone, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_replay_help_names_the_packaged_data_as_the_default(clone):
    out = " ".join(run_python(clone, "-m", "services.cli", "replay", "--help").split())
    assert "plain or gzip (default: the copy packaged with Parkmate; see docs/data.md)" in out
    assert "[default: 2016-12-16]" in out


def test_the_packaged_data_loads_from_the_copy(clone):
    assert (clone / "services/replay/birmingham/parking-birmingham.csv.gz").is_file()
    assert (clone / "services/replay/birmingham/NOTICE").is_file()
    module, data_file, counts = run_python(clone, "-c", LOAD).splitlines()
    assert Path(module).is_relative_to(clone)
    assert Path(data_file).is_relative_to(clone)
    assert counts == "29 24268"


def clean_env(clone: Path) -> dict[str, str]:
    """This environment without what points at the working tree: its venv, PYTHONPATH,
    and any PARKMATE_* setting (parkmate dev then starts its own servers)."""
    venv = str(ROOT / ".venv")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME") and not k.startswith("PARKMATE_")
    }
    path = os.environ.get("PATH", "").split(os.pathsep)
    env["PATH"] = os.pathsep.join(p for p in path if p and not p.startswith(venv))
    return env


@pytest.fixture(scope="module")
def installed(clone: Path) -> Path:
    """The copy installed from nothing by its own scripts/setup: its .venv (and .tools/uv
    when the machine has no uv of the pinned version), nothing else."""
    assert not (clone / ".venv").exists()
    done = subprocess.run(
        ["scripts/setup"],
        cwd=clone,
        env=clean_env(clone),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (clone / ".venv/bin/parkmate").is_file()
    return clone


def wait_for_address(proc: subprocess.Popen, log: Path, timeout: float = 180) -> str:
    """The address `scripts/dev` prints once everything runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("scripts/dev ended early:\n" + log.read_text()[-3000:])
        if line.startswith("Parkmate is ready at "):
            return line.split(" at ", 1)[1].strip().rstrip("/")
    raise AssertionError("scripts/dev did not print its address in time")


def test_the_installed_copy_runs_its_own_code(installed):
    out = subprocess.run(
        [".venv/bin/python", "-c", "import services; print(services.__file__)"],
        cwd=installed,
        env=clean_env(installed),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert Path(out.strip()).is_relative_to(installed)


def test_replay_against_scripts_dev_from_the_copy(installed, tmp_path):
    port = free_port()
    env = clean_env(installed)
    log = tmp_path / "dev.log"
    dev = subprocess.Popen(
        ["scripts/dev", "--port", str(port)],
        cwd=installed,
        env=env,
        stdout=subprocess.PIPE,
        stderr=open(log, "w"),
        text=True,
        start_new_session=True,
    )
    try:
        url = wait_for_address(dev, log)
        assert url == f"http://127.0.0.1:{port}"
        report = tmp_path / "report"
        done = subprocess.run(
            [
                ".venv/bin/parkmate",
                "replay",
                "--lots",
                LOTS,
                "--start",
                "10",
                "--end",
                "11",
                "--speed",
                "120",
                "--url",
                url,
                "--report",
                str(report),
                "--no-progress",
            ],
            cwd=installed,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stdout + done.stderr[-3000:]
        result = json.loads((report / "report.json").read_text())
        assert result["bookings"]["made"] > 0 and not result["bookings"]["errors"]
        for kind in ("warnings", "expiries"):
            n = result["notifications"][kind]
            assert n["expected"] > 0 and n["missing"] == 0 and n["early"] == 0, n
        # parkmate dev's process list was found in the copy: every process's CPU is there.
        assert result["cpu"]["measured"], result["cpu"]
    finally:
        dev.send_signal(signal.SIGTERM)  # parkmate dev (scripts/dev execs it) stops all
        try:
            code = dev.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait()
            raise
    assert code == 0, log.read_text()[-3000:]
    # The copy made its state inside itself; nothing appeared beside it.
    assert [p.name for p in installed.parent.iterdir()] == [installed.name]

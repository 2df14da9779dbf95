"""A fresh clone has what `parkmate replay` needs: the repository's tracked files alone,
copied to a folder with nothing beside it, run the replay's command line and load the
data set packaged with Parkmate (docs/data.md). No services are started: the full replay
against running services is tests/e2e/test_replay.py."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]

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

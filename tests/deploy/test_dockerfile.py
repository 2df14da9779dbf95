"""deploy/Dockerfile: hadolint and checkov find nothing undocumented, and it installs
exactly uv.lock with the uv version the scripts pin."""

import json
import re

from tests.deploy.conftest import ROOT, run

DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def test_hadolint_finds_nothing(tools):
    done = run(tools / "hadolint", "--failure-threshold", "info", DOCKERFILE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_checkov_finds_nothing_but_documented_exceptions(tools):
    done = run(
        tools / "checkov",
        "--file", DOCKERFILE,
        "--framework", "dockerfile",
        "--output", "json",
        "--skip-download",
    )  # fmt: skip
    report = json.loads(done.stdout)
    assert report["results"]["failed_checks"] == []
    assert done.returncode == 0, done.stderr
    for skipped in report["results"]["skipped_checks"]:
        assert len(skipped["check_result"].get("suppress_comment", "")) > 20, skipped["check_id"]


def test_installs_the_lock_with_the_pinned_uv_and_no_extras():
    text = DOCKERFILE.read_text()
    pinned = re.search(r"^UV_VERSION=(\S+)$", (ROOT / "scripts" / "uv").read_text(), re.M)
    assert f"uv=={pinned[1]}" in text
    syncs = re.findall(r"^RUN uv sync (.*)$", text, re.M)
    assert syncs and all("--locked" in s and "--extra" not in s for s in syncs)
    assert "pip install ." not in text
    assert re.search(r"^USER 10001", text, re.M)

"""Fixtures of the deployment checks: the rendered overlays and the pinned checkers.

The checkers (checkov, kubernetes-validate, hadolint) live in deploy/tools/.venv, a
project of their own (deploy/tools/pyproject.toml and uv.lock), installed by
scripts/deploy-tools on first use.
"""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "production")
TOOLS = ROOT / "deploy" / "tools"


def run(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a command from the repository root, capturing its output as text."""
    return subprocess.run(
        [str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def tools() -> Path:
    """deploy/tools/.venv/bin, with the locked checkers installed."""
    done = run(ROOT / "scripts" / "deploy-tools", timeout=900)
    assert done.returncode == 0, f"scripts/deploy-tools failed:\n{done.stdout}{done.stderr}"
    return TOOLS / ".venv" / "bin"


@pytest.fixture(scope="session")
def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl is not installed: the overlays cannot be rendered (kustomize)")
    return found


@pytest.fixture(scope="session")
def rendered(kubectl, tmp_path_factory) -> dict[str, Path]:
    """overlay name -> file holding `kubectl kustomize` of it."""
    folder = tmp_path_factory.mktemp("rendered")
    files = {}
    for overlay in OVERLAYS:
        done = run(kubectl, "kustomize", K8S / "overlays" / overlay)
        assert done.returncode == 0, f"kustomize {overlay}:\n{done.stderr}"
        files[overlay] = folder / f"{overlay}.yaml"
        files[overlay].write_text(done.stdout)
    return files


def objects(path: Path) -> list[dict]:
    """The objects of a rendered file."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]

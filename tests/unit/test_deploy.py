"""The Kubernetes manifests run every service with probes on ports it really serves, and
commit no secret."""

import re
from pathlib import Path

import yaml

from services.api.identity import PUBLISHED_SECRETS
from services.cli import SERVICES

MANIFEST = Path(__file__).parents[2] / "deploy" / "k8s" / "parkmate.yaml"


def deployments() -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}


def test_every_service_has_a_deployment_running_it():
    found = {}
    for d in deployments().values():
        (container,) = d["spec"]["template"]["spec"]["containers"]
        assert container["args"][0] == "run"
        found[container["args"][1]] = container
    assert set(found) == set(SERVICES)


def test_probes_use_the_port_the_service_serves_them_on():
    for d in deployments().values():
        (container,) = d["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        for probe in ("livenessProbe", "readinessProbe"):
            port = ports[container[probe]["httpGet"]["port"]]
            if container["args"][1] == "api":
                assert str(port) == env["PARKMATE_PORT"]
            else:
                assert str(port) == env["PARKMATE_PROBE_PORT"]


def test_no_jwt_secret_is_committed_under_deploy():
    """A secret in the repository is public: anyone could sign an admin token with it.
    The operator creates it (docs/security.md); the api refuses to start without it."""
    assigned = re.compile(r"PARKMATE_JWT_(SECRET|PREVIOUS_SECRETS)\s*[:=]\s*\S")
    for path in (MANIFEST.parents[1]).rglob("*"):
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for line in text.splitlines():
            code = line.split("#", 1)[0]
            assert not assigned.search(code), f"{path}: {line.strip()}"
        for secret in PUBLISHED_SECRETS:
            assert secret not in text, f"{path} holds a published secret"

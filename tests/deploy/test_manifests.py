"""deploy/k8s: each overlay renders, validates against the Kubernetes schemas, passes
checkov's policies (or names its reason for an exception), and runs what the code
really serves, reads and consumes."""

import json
import re
import tomllib
from pathlib import Path

import pytest

from services.api.entrypoints import GRACEFUL_SECONDS, SOCKET_CLOSE_SECONDS
from services.cli import SERVICES
from services.contracts import subjects
from services.notifier.entrypoints import USERS_DURABLE
from tests.deploy.conftest import OVERLAYS, ROOT, TOOLS, objects, run

# The oldest Kubernetes the manifests support, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
DATABASE_SERVICES = {"api", "bookings", "notifier"}  # timers has no database
# What a service's stop needs after its own steps: the outbox relay and NATS drain.
NATS_DRAIN_ALLOWANCE = 20


def by_kind(path: Path, kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects(path) if o["kind"] == kind}


def deployments(path: Path) -> dict[str, dict]:
    """service name -> its Deployment."""
    found = {}
    for d in by_kind(path, "Deployment").values():
        (container,) = d["spec"]["template"]["spec"]["containers"]
        assert container["args"][0] == "run"
        found[container["args"][1]] = d
    return found


def container(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_validates_against_the_kubernetes_schemas(tools, rendered, overlay, version):
    done = run(tools / "python", TOOLS / "validate.py", version, rendered[overlay])
    assert done.returncode == 0, done.stdout + done.stderr
    assert ": 0 problems" in done.stdout


def test_checkov_finds_nothing_but_documented_exceptions(tools, rendered, tmp_path):
    for path in rendered.values():
        (tmp_path / path.name).write_text(path.read_text())
    done = run(
        tools / "checkov",
        "--directory", tmp_path,
        "--framework", "kubernetes",
        "--output", "json",
        "--skip-download",
    )  # fmt: skip
    report = json.loads(done.stdout)
    results = report["results"]
    failed = [(c["check_id"], c["resource"]) for c in results["failed_checks"]]
    assert failed == [], failed
    assert done.returncode == 0, done.stderr
    assert report["summary"]["passed"] > 100
    assert report["summary"]["parsing_errors"] == 0
    for skipped in results["skipped_checks"]:
        reason = skipped.get("check_result", {}).get("suppress_comment", "")
        assert len(reason) > 20, f"{skipped['check_id']} on {skipped['resource']}: no reason"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_image_runs_every_service_non_root_read_only_with_resources(rendered, overlay):
    found = deployments(rendered[overlay])
    assert set(found) == set(SERVICES)
    images = set()
    for d in found.values():
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for c in pod.get("initContainers", []) + pod["containers"]:
            images.add(c["image"])
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            for kind in ("requests", "limits"):
                assert set(c["resources"][kind]) == {"cpu", "memory"}, (c["name"], kind)
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == mounts["/tmp"])
    assert len(images) == 1, images


def test_production_runs_the_version_of_this_release(rendered):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for d in deployments(rendered["production"]).values():
        image = container(d)["image"]
        assert image.endswith(f":{version}") or "@sha256:" in image, image
        assert container(d)["imagePullPolicy"] == "Always"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_migrations_run_before_every_service_that_uses_the_database(rendered, overlay):
    for service, d in deployments(rendered[overlay]).items():
        inits = d["spec"]["template"]["spec"].get("initContainers", [])
        if service in DATABASE_SERVICES:
            (init,) = inits
            assert init["args"] == ["migrate"]
            assert init["image"] == container(d)["image"]
        else:
            assert inits == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_use_the_port_and_paths_the_service_serves(rendered, overlay):
    for service, d in deployments(rendered[overlay]).items():
        c = container(d)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        env = {e["name"]: e.get("value") for e in c["env"]}
        served = env["PARKMATE_PORT"] if service == "api" else env["PARKMATE_PROBE_PORT"]
        paths = {}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = c[probe]["httpGet"]
            assert str(ports[get["port"]]) == served, (service, probe)
            paths[probe] = get["path"]
        assert paths == {
            "startupProbe": "/readyz",
            "livenessProbe": "/healthz",
            "readinessProbe": "/readyz",
        }
        annotations = d["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == served


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_come_from_secrets_mounted_as_files_and_none_is_committed(rendered, overlay):
    docs = objects(rendered[overlay])
    assert [o for o in docs if o["kind"] == "Secret"] == []
    for service, d in deployments(rendered[overlay]).items():
        pod = d["spec"]["template"]["spec"]
        secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        env = {e["name"]: e.get("value") for e in container(d)["env"]}
        assert not any("valueFrom" in e for e in container(d)["env"])
        if service in DATABASE_SERVICES:
            assert env["PARKMATE_DATABASE_URL_FILE"] == "/etc/parkmate/db/url"
            assert secrets["db"] == "parkmate-db"
        else:
            assert "PARKMATE_DATABASE_URL_FILE" not in env
        if service == "api":
            assert env["PARKMATE_JWT_SECRET_FILE"] == "/etc/parkmate/jwt/secret"
            assert secrets["jwt"] == "parkmate-jwt"
        else:
            assert "jwt" not in secrets
    (config,) = [o for o in docs if o["kind"] == "ConfigMap"]
    for name in config["data"]:
        assert not re.search("SECRET|PASSWORD|DATABASE_URL", name), name


def test_production_connects_to_nats_with_tls_and_a_creds_file_per_service(rendered):
    (config,) = [o for o in objects(rendered["production"]) if o["kind"] == "ConfigMap"]
    assert config["data"]["PARKMATE_NATS_URL"].startswith("tls://")
    for service, d in deployments(rendered["production"]).items():
        env = {e["name"]: e.get("value") for e in container(d)["env"]}
        mounts = {m["name"]: m["mountPath"] for m in container(d)["volumeMounts"]}
        pod = d["spec"]["template"]["spec"]
        volumes = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
        assert env["PARKMATE_NATS_CREDS"] == f"{mounts['nats-creds']}/user.creds"
        assert volumes["nats-creds"]["items"] == [{"key": f"{service}.creds", "path": "user.creds"}]
        for var, file in (("CA", "ca.crt"), ("CERT", "tls.crt"), ("KEY", "tls.key")):
            assert env[f"PARKMATE_NATS_TLS_{var}"] == f"{mounts['nats-tls']}/{file}"
        assert volumes["nats-tls"]["secretName"] == "parkmate-nats-tls"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_api_drains_for_longer_than_its_probe_needs_and_within_its_grace(rendered, overlay):
    d = deployments(rendered[overlay])["api"]
    c = container(d)
    env = {e["name"]: e.get("value") for e in c["env"]}
    drain = float(env["PARKMATE_DRAIN_SECONDS"])
    probe = c["readinessProbe"]
    # A load balancer probing /readyz sees the 503 before the api stops listening.
    assert drain > probe["periodSeconds"] * probe["failureThreshold"] + probe["timeoutSeconds"]
    assert "lifecycle" not in c, "the drain time replaces a preStop sleep"
    grace = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= drain + SOCKET_CLOSE_SECONDS + GRACEFUL_SECONDS + NATS_DRAIN_ALLOWANCE


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_the_manifests_give_is_one_the_code_reads(rendered, overlay):
    code = "\n".join(p.read_text() for p in (ROOT / "services").rglob("*.py"))
    read = set(re.findall(r'env(?:_int|_number)?\("([A-Z_]+)"', code))
    given = set()
    for o in objects(rendered[overlay]):
        if o["kind"] == "ConfigMap":
            given |= set(o["data"])
        if o["kind"] == "Deployment":
            pod = o["spec"]["template"]["spec"]
            for c in pod.get("initContainers", []) + pod["containers"]:
                given |= {e["name"] for e in c.get("env", [])}
    for name in given:
        base = name.removeprefix("PARKMATE_").removesuffix("_FILE")
        assert base in read, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_disruption_budget_for_every_service(rendered, overlay):
    budgets = by_kind(rendered[overlay], "PodDisruptionBudget").values()
    covered = {b["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] for b in budgets}
    assert covered == set(SERVICES)
    assert all(b["spec"]["maxUnavailable"] == 1 for b in budgets)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_api_takes_traffic_from_outside(rendered, overlay):
    policies = by_kind(rendered[overlay], "NetworkPolicy")
    deny = policies["parkmate-default-deny"]
    assert deny["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "parkmate"}
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"]
    egress_ports = {p["port"] for rule in deny["spec"]["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 4222, 5432}
    open_to_all = [
        (p["metadata"]["name"], p["spec"]["podSelector"]["matchLabels"])
        for p in policies.values()
        for rule in p["spec"].get("ingress", [])
        if "from" not in rule
    ]
    assert open_to_all == [
        (
            "parkmate-api-ingress",
            {"app.kubernetes.io/name": "parkmate", "app.kubernetes.io/component": "api"},
        )
    ]
    scrape = policies["parkmate-metrics-from-prometheus"]["spec"]["ingress"][0]
    assert {p["port"] for p in scrape["ports"]} == {8000, 9000}


def test_production_scales_on_consumer_lag_of_the_durables_the_services_bind(rendered):
    docs = objects(rendered["production"])
    scaled = {o["spec"]["scaleTargetRef"]["name"]: o for o in docs if o["kind"] == "ScaledObject"}
    assert set(scaled) == {"parkmate-bookings", "parkmate-notifier"}
    lag = {
        name: next(t["metadata"] for t in o["spec"]["triggers"] if t["type"] == "nats-jetstream")
        for name, o in scaled.items()
    }
    assert (lag["parkmate-bookings"]["stream"], lag["parkmate-bookings"]["consumer"]) == (
        subjects.TIMERS_STREAM,
        subjects.DURABLE_BOOKINGS_TIMERS,
    )
    assert (lag["parkmate-notifier"]["stream"], lag["parkmate-notifier"]["consumer"]) == (
        subjects.EVENTS_STREAM,
        subjects.DURABLE_NOTIFIER,
    )
    # The services bind those very durables (names in services/contracts/subjects.py).
    sources = {
        "DURABLE_BOOKINGS_TIMERS": (ROOT / "services/bookings/entrypoints.py").read_text(),
        "DURABLE_NOTIFIER": (ROOT / "services/notifier/entrypoints.py").read_text(),
    }
    for durable, source in sources.items():
        assert f"subjects.{durable}," in source, durable
    assert USERS_DURABLE != "notifier"
    hpas = {o["metadata"]["name"] for o in docs if o["kind"] == "HorizontalPodAutoscaler"}
    assert hpas == {"parkmate-api"}  # KEDA makes the others' HPAs; two would fight


def test_dev_falls_back_to_cpu_autoscaling_without_keda(rendered):
    docs = objects(rendered["dev"])
    assert [o for o in docs if o["kind"] == "ScaledObject"] == []
    hpas = {
        o["spec"]["scaleTargetRef"]["name"]: o["spec"]["metrics"][0]["resource"]["name"]
        for o in docs
        if o["kind"] == "HorizontalPodAutoscaler"
    }
    assert hpas == {f"parkmate-{s}": "cpu" for s in ("api", "bookings", "notifier")}

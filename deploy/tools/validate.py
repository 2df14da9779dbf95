"""Validate rendered Kubernetes manifests offline, every object against its schema.

Usage (with deploy/tools/.venv's Python): validate.py KUBERNETES_VERSION FILE...

Built-in kinds are checked by kubernetes-validate in strict mode (an unknown field is
an error, as `kubectl apply --validate=strict` would make it). Custom resources
(KEDA's ScaledObject, the Prometheus operator's ServiceMonitor) are checked against
the openAPIV3Schema of their CustomResourceDefinition in deploy/tools/crds/, also
refusing unknown fields. A kind with no schema at all is an error, never a pass.
Prints one line per problem and exits 1 if there was any.
"""

import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

CRDS = Path(__file__).parent / "crds"


def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> the openAPIV3Schema of every CRD in deploy/tools/crds."""
    schemas = {}
    for path in sorted(CRDS.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd:
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served"):
                    schema = strict(version["schema"]["openAPIV3Schema"])
                    schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def strict(schema: dict) -> dict:
    """`schema` where every object that lists its properties allows no others (the API
    server would silently prune them, hiding a typo)."""
    if not isinstance(schema, dict):
        return schema
    out = {key: strict_value(key, value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def strict_value(key: str, value):
    if key == "properties":
        return {name: strict(sub) for name, sub in value.items()}
    if key in ("items", "additionalProperties"):
        return strict(value)
    if key in ("allOf", "anyOf", "oneOf"):
        return [strict(sub) for sub in value]
    return value


def problems(doc: dict, version: str, crds: dict[tuple[str, str], dict]) -> list[str]:
    """What is wrong with one object (empty when it is valid)."""
    key = (doc.get("apiVersion", ""), doc.get("kind", ""))
    name = f"{key[1]} {doc.get('metadata', {}).get('name', '?')}"
    if key in crds:
        return [
            f"{name}: {'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in jsonschema.Draft7Validator(crds[key]).iter_errors(doc)
        ]
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{name}: no schema for {key[0]} {key[1]} (add its CRD to {CRDS})"]
    except kubernetes_validate.ValidationError as e:
        return [f"{name}: {'.'.join(map(str, e.path)) or '(top)'}: {e.message}"]
    return []


def main(version: str, files: list[str]) -> int:
    crds = crd_schemas()
    found, checked = [], 0
    for file in files:
        for doc in yaml.safe_load_all(Path(file).read_text()):
            if doc:
                checked += 1
                found += [f"{file}: {p}" for p in problems(doc, version, crds)]
    for line in found:
        print(line)
    print(f"{checked} objects checked against Kubernetes {version}: {len(found)} problems")
    return 1 if found or not checked else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))

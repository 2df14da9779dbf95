"""No secret is committed under deploy/ (the manifests themselves are checked in
tests/deploy)."""

import re
from pathlib import Path

from services.api.identity import PUBLISHED_SECRETS

DEPLOY = Path(__file__).parents[2] / "deploy"


def test_no_jwt_secret_is_committed_under_deploy():
    """A secret in the repository is public: anyone could sign an admin token with it.
    The operator creates it (docs/security.md); the api refuses to start without it."""
    assigned = re.compile(r"PARKMATE_JWT_(SECRET|PREVIOUS_SECRETS)\s*[:=]\s*\S")
    files = [p for p in DEPLOY.rglob("*") if p.is_file()]
    assert any(p.suffix == ".yaml" for p in files)  # the manifests are there to check
    for path in files:
        text = path.read_text(errors="replace")
        for line in text.splitlines():
            code = line.split("#", 1)[0]
            assert not assigned.search(code), f"{path}: {line.strip()}"
        for secret in PUBLISHED_SECRETS:
            assert secret not in text, f"{path} holds a published secret"

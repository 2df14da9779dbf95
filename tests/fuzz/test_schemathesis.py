"""Schemathesis against the api's own OpenAPI document (/schema/openapi.json), on the
running system: every operation gets generated valid and invalid requests, with an
admin's bearer token so protected operations are exercised beyond 401. The checks are
schemathesis' defaults but one (see `fuzz`): no server error (5xx); every response's
status, content type, headers and body as the document declares them; invalid requests
refused. Each operation's failure is collected, so one run lists every hole; the
derandomized examples make a failure reproduce (docs/development.md, "Fuzzing")."""

import os
import time

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from tests.fuzz.conftest import Fuzzed

pytestmark = pytest.mark.e2e

# Examples per operation and generation mode (valid, invalid); PARKMATE_FUZZ_EXAMPLES
# raises it for a longer hunt on a developer's machine.
EXAMPLES = int(os.environ.get("PARKMATE_FUZZ_EXAMPLES", "100"))


def fuzz(operation, mode: GenerationMode, base_url: str, token: str) -> None:
    """Run EXAMPLES generated requests of `mode` against `operation`; raise the first
    failing check (after hypothesis shrinks the example)."""

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,  # the same examples on every run: a failure reproduces
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        case.call_and_validate(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            # A schema-valid request may still break a rule the document cannot say
            # (an address-shaped email, a known time zone, a template's placeholders):
            # the api answers those 400 naming the field, by design (docs/api-limits.md).
            excluded_checks=[checks.positive_data_acceptance],
            timeout=15,
        )

    run()


def test_api_answers_every_request_as_documented(fuzzed: Fuzzed):
    schema = schemathesis.openapi.from_url(fuzzed.system.base + "/schema/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            began = time.monotonic()
            try:
                fuzz(operation, mode, fuzzed.system.base, fuzzed.admin_token)
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{operation.label} ({mode}): {exc}")
            print(f"{operation.label} {mode}: {time.monotonic() - began:.1f} s")
    assert not failures, "\n\n".join(failures)

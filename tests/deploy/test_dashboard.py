"""deploy/grafana/parkmate.json queries metrics the services export, or ones listed
here as still to be added (docs/kubernetes.md says the same): when one is added, this
list must shrink, and a typo in a query fails."""

import json
import re

from tests.deploy.conftest import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "parkmate.json"
NOT_YET_EXPORTED: set[str] = set()


def exported() -> set[str]:
    code = "\n".join(p.read_text() for p in (ROOT / "services").rglob("*.py"))
    return set(re.findall(r'"(parkmate_[a-z_]+)"', code))


def test_every_panel_queries_known_metrics_and_covers_the_operators_questions():
    dashboard = json.loads(DASHBOARD.read_text())
    queried = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"\b(parkmate_[a-z_]+)", target["expr"]):
                queried.add(re.sub(r"_(bucket|count|sum)$", "", name))
    known = exported()
    assert queried - known == NOT_YET_EXPORTED
    assert not NOT_YET_EXPORTED & known, "exported now: remove it from NOT_YET_EXPORTED"
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("consumer lag", "outbox", "websockets", "notification latency", "timer", "dead"):
        assert topic in titles, topic

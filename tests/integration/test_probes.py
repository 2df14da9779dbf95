"""Probes and metrics of a worker service, over real HTTP."""

import httpx

from services.runtime.embedded import free_port
from services.timers.config import Settings
from services.timers.entrypoints import serve
from tests.support import running


async def test_worker_serves_health_readiness_and_metrics(nats_url):
    port = free_port()
    async with running(serve, Settings(nats_url, probe_port=port)):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code == 200
            metrics = await http.get("/metrics")
            assert metrics.status_code == 200
            assert "parkmate_consumer_messages_total" in metrics.text
            assert (await http.get("/nothing")).status_code == 404

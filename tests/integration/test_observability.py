"""Metrics and log context against real NATS and PostgreSQL: the outbox backlog gauge,
notification latency at the notifier and at the gateway, and the ids on the lines a
consumer, a micro service and the api log while they handle something."""

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import structlog
from prometheus_client import REGISTRY

from services.api.config import Settings as ApiSettings
from services.api.entrypoints import serve as serve_api
from services.api.gateway import Gateway
from services.api.wsconn import Connection
from services.bookings import storage
from services.bookings.storage import outbox
from services.contracts import notifier as n
from services.contracts import subjects
from services.contracts.envelope import decode_envelope
from services.contracts.ids import uuid7
from services.notifier.config import Settings as NotifierSettings
from services.notifier.entrypoints import serve as serve_notifier
from services.runtime.config import Common
from services.runtime.consumer import run_pull_consumer
from services.runtime.db import make_engine
from services.runtime.embedded import free_port
from services.runtime.micro import Endpoint, MicroServer, RemoteError, call
from services.runtime.natsconn import ensure_streams
from services.runtime.outbox import OutboxRelay
from tests.integration.test_notifier_service import event, publish
from tests.integration.test_outbox import rows
from tests.support import eventually, json_logs, nats_client, running

SECRET = "integration-test-secret-of-32-bytes!"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_the_outbox_gauge_counts_unpublished_rows_at_each_poll(nats_url, database_url):
    engine = make_engine(database_url, pool_size=2)
    async with nats_client(nats_url) as nc:
        js = nc.jetstream()
        await ensure_streams(js)
        # A long grace: the poll counts these rows but does not publish them.
        relay = OutboxRelay(engine, js, outbox, poll_seconds=0.1, grace_seconds=3600)
        async with engine.begin() as conn:
            await storage.add_pending(conn, rows(3))
        task = asyncio.create_task(relay.run())
        try:
            assert await eventually(
                lambda: _is(sample("parkmate_outbox_pending", schema="bookings"), 3)
            )
            relay.wake()  # publishes them whatever their age; the next poll counts none
            assert await eventually(
                lambda: _is(sample("parkmate_outbox_pending", schema="bookings"), 0)
            )
        finally:
            relay.stop()
            await task
            await engine.dispose()


async def _is(value, expected):
    return value == expected


async def test_the_notifier_observes_each_published_notification(nc, nats_url, database_url):
    driver, owner = str(uuid7()), str(uuid7())
    name = "parkmate_notification_latency_seconds"
    count, total = (
        sample(f"{name}_count", stage="notifier"),
        sample(f"{name}_sum", stage="notifier"),
    )
    async with running(serve_notifier, NotifierSettings(Common(nats_url, database_url))):
        await publish(nc, event(subjects.BOOKING_CREATED, driver, owner))
        # One for the driver, one for the owner.
        assert await eventually(lambda: _is(sample(f"{name}_count", stage="notifier"), count + 2))
    # Stored and published within the test's few seconds.
    assert 0 <= sample(f"{name}_sum", stage="notifier") - total < 10


async def test_the_gateway_observes_the_age_of_a_notification_it_hands_to_sockets(nats_url):
    user, nobody = str(uuid7()), str(uuid7())
    name = "parkmate_notification_latency_seconds"
    count, total = sample(f"{name}_count", stage="gateway"), sample(f"{name}_sum", stage="gateway")
    async with nats_client(nats_url) as nc, nats_client(nats_url) as publisher:
        gateway = Gateway(nc)
        await gateway.start(ping_seconds=30)
        gateway.attach(Connection(user, queue_size=10))
        for to in (nobody, user):  # a user with no socket here is not counted
            live = n.LiveNotification(
                notification=n.Notification(
                    id=str(uuid7()),
                    seq=1,
                    type="booking.created",
                    level="info",
                    priority="normal",
                    title="t",
                    body="b",
                    data={},
                    created_at=datetime.now(UTC) - timedelta(seconds=2),
                ),
                push=True,
                unread_count=1,
                version=1,
            )
            await publisher.publish(subjects.notify_user_subject(to), msgspec.json.encode(live))
        assert await eventually(lambda: _is(sample(f"{name}_count", stage="gateway"), count + 1))
        assert 2 <= sample(f"{name}_sum", stage="gateway") - total < 10
        await gateway.close_all()


DEAD = "dead letter: message given up, kept on DEAD"


async def test_a_consumers_lines_carry_the_event_id_of_the_message_in_hand(nats_url):
    stop = asyncio.Event()

    async def handler(msg) -> None:
        decode_envelope(msg.data)  # garbage raises: the consumer terminates it
        structlog.get_logger().warning("inside the handler")

    with json_logs("notifier") as lines:
        async with nats_client(nats_url) as nc:
            js = nc.jetstream()
            await ensure_streams(js)
            good = event(subjects.BOOKING_CREATED, str(uuid7()), str(uuid7()))
            await publish(nc, good)
            await js.publish(
                subjects.BOOKING_CREATED, b"not json", headers={"Nats-Msg-Id": "poison-1"}
            )
            task = asyncio.create_task(
                run_pull_consumer(
                    js,
                    subjects.EVENTS_STREAM,
                    "obs-test",
                    [subjects.BOOKING_CREATED],
                    handler,
                    stop,
                    service="notifier",
                )
            )
            try:
                await eventually(lambda: _logged(lines, DEAD))
            finally:
                stop.set()
                await task
        got = {line["event"]: line for line in lines()}
    assert got["inside the handler"]["event_id"] == good.id
    assert got[DEAD]["event_id"] == "poison-1"
    assert {line["service"] for line in got.values()} == {"notifier"}


async def _logged(lines, text: str) -> bool:
    return any(line["event"] == text for line in lines())


async def test_a_service_request_logs_with_the_callers_request_id_and_user(nats_url):
    async def failing(req: n.UserRef) -> n.Changed:
        structlog.get_logger().warning("inside the handler")
        raise RuntimeError("broken")

    with json_logs("notifier") as lines:
        async with nats_client(nats_url) as nc:
            server = MicroServer(
                nc, "obs-test", "0.0.1", "test", [Endpoint("obs.test", n.UserRef, failing)]
            )
            await server.start()
            structlog.contextvars.bind_contextvars(request_id="req-obs-1")
            try:
                await call(nc, "obs.test", n.UserRef(user_id="u-1"), n.Changed)
            except RemoteError as e:
                assert e.code == "internal"
            structlog.contextvars.unbind_contextvars("request_id")
            # No request id in the caller's context: the service makes one up.
            try:
                await call(nc, "obs.test", n.UserRef(user_id="u-2"), n.Changed)
            except RemoteError as e:
                assert e.code == "internal"
            await server.stop()
        got = lines()
    inside = [line for line in got if line["event"] == "inside the handler"]
    failed = [line for line in got if line["event"] == "request failed"]
    assert [(x["request_id"], x["user_id"]) for x in inside[:1] + failed[:1]] == [
        ("req-obs-1", "u-1"),
        ("req-obs-1", "u-1"),
    ]
    assert inside[1]["user_id"] == "u-2" and len(inside[1]["request_id"]) == 16
    assert failed[1]["request_id"] == inside[1]["request_id"]
    assert {line["service"] for line in got} == {"notifier"}


async def test_the_api_echoes_or_makes_a_request_id_on_every_answer(nats_url, database_url):
    port = free_port()
    settings = ApiSettings(Common(nats_url, database_url), port=port, jwt_secret=SECRET)
    with json_logs("api") as lines:
        async with running(serve_api, settings):
            # Our lines still reach our handler once the app is built (Litestar would
            # install logging of its own).
            assert any(line["event"] == "ready" for line in lines())
    async with running(serve_api, settings):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            given = await http.get("/healthz", headers={"X-Request-ID": "from-the-proxy-7"})
            assert given.headers["x-request-id"] == "from-the-proxy-7"
            made = await http.get("/nowhere")
            assert made.status_code == 404 and len(made.headers["x-request-id"]) == 16
            refused = await http.get("/healthz", headers={"X-Request-ID": "two words"})
            assert refused.headers["x-request-id"] != "two words"
            assert len(refused.headers["x-request-id"]) == 16
            unauthorized = await http.get("/api/v1/bookings")
            assert unauthorized.status_code == 401 and "x-request-id" in unauthorized.headers
            # A malformed id on an api route is replaced, not refused (the header is
            # documented, not validated).
            odd = await http.get("/api/v1/bookings", headers={"X-Request-ID": "x" * 500})
            assert odd.status_code == 401 and len(odd.headers["x-request-id"]) == 16
            assert odd.headers["x-request-id"] != "3f2a9c0d1e4b5a67"  # the document's example
            mine = await http.get("/api/v1/lots", headers={"X-Request-ID": "mine-1"})
            assert mine.headers.get_list("x-request-id") == ["mine-1"]
            # The OpenAPI document names the header: accepted on every operation, and
            # sent back on its answers.
            schema = (await http.get("/schema/openapi.json")).json()
            operations = [
                op
                for path, item in schema["paths"].items()
                if path.startswith("/api/v1/")
                for method, op in item.items()
                if method in ("get", "post", "put", "patch", "delete")
            ]
            assert len(operations) > 30
            for op in operations:
                params = {(p["in"], p["name"]) for p in op.get("parameters", [])}
                assert ("header", "X-Request-ID") in params, op["operationId"]
                success = [r for code, r in op["responses"].items() if code.startswith("2")]
                headers = [r.get("headers", {}).get("X-Request-ID") for r in success]
                assert all(h and h["schema"]["type"] == "string" for h in headers), op[
                    "operationId"
                ]

"""Builds the Litestar application from explicit dependencies (no import-time clients)."""

from functools import partial

from litestar import Litestar, Response, Router, get
from litestar.datastructures import State
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from nats.aio.client import Client
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.api import requestids
from services.api.config import Settings
from services.api.errors import exception_handlers
from services.api.gateway import Gateway
from services.api.idempotency import IdempotencyMiddleware
from services.api.logins import Logins, Registrations
from services.api.overload import OverloadMiddleware, Slots, lifo_after
from services.api.routes import admin_bulk, bookings, lots, notifications, users, vehicles
from services.api.routes.common import strict_input
from services.api.topics import LotTopics
from services.api.users import Identity
from services.api.web import web_routes
from services.version import VERSION


@get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    """Liveness: the process answers; `version` is the running Parkmate's."""
    return {"status": "ok", "version": VERSION}


@get("/readyz", include_in_schema=False)
async def readyz(state: State) -> Response:
    """Readiness: 200 while connected to NATS (so requests can reach the services), 503
    from SIGTERM on while the api drains (it still serves what reaches it meanwhile)."""
    if state.draining:
        return Response(
            {"status": "draining", "detail": "shutting down; send requests to another replica"},
            status_code=503,
        )
    if state.nc.is_connected:
        return Response({"status": "ready"}, status_code=200)
    return Response({"status": "not ready", "detail": "not connected to NATS"}, status_code=503)


@get("/metrics", include_in_schema=False, media_type=CONTENT_TYPE_LATEST)
async def metrics() -> bytes:
    """Prometheus metrics of this api process."""
    return generate_latest()


def create_app(
    settings: Settings, nc: Client, engine: AsyncEngine, on_identity_commit=None
) -> Litestar:
    """The api: REST under /api/v1, the WebSocket at /ws, OpenAPI at /schema, the web UI
    at / (files under /static). At most `settings.max_inflight` HTTP requests run at once
    (services/api/overload.py); `state.overload` holds their count. `state.draining`
    turns True on SIGTERM (entrypoints.py): /readyz answers 503 from then on."""
    gateway = Gateway(nc)
    slots = Slots(settings.max_inflight, lifo_after(settings.queue_seconds))
    state = State(
        {
            "settings": settings,
            "draining": False,
            "overload": slots,
            "nc": nc,
            "engine": engine,
            "gateway": gateway,
            "lot_topics": LotTopics(nc),
            "identity": Identity(engine, on_identity_commit),
            "logins": Logins(engine, settings.keys, settings.token_seconds, settings.login_limits),
            "registrations": Registrations(engine, settings.register_limit),
        }
    )
    api = Router(
        path="/api/v1",
        route_handlers=[
            *users.routes,
            *lots.routes,
            *bookings.routes,
            *vehicles.routes,
            *notifications.routes,
            *admin_bulk.routes,
        ],
        security=[{"bearer": []}],
        before_request=strict_input,
        # Documentation only: services/api/requestids.py reads and echoes the header.
        parameters={"x_request_id": requestids.REQUEST_PARAMETER},
        response_headers=[requestids.RESPONSE_HEADER],
    )
    return Litestar(
        route_handlers=[api, healthz, readyz, metrics, *web_routes(settings)],
        state=state,
        exception_handlers=exception_handlers,
        # The overload bound first: a request it refuses costs no Idempotency-Key work.
        middleware=[
            DefineMiddleware(OverloadMiddleware, slots=slots, queue_seconds=settings.queue_seconds),
            DefineMiddleware(IdempotencyMiddleware, engine=engine, keys=settings.keys),
        ],
        openapi_config=OpenAPIConfig(
            title="Parkmate",
            version=VERSION,
            description="Parking bookings whose clock the server owns, with live "
            "notifications. The WebSocket protocol at /ws is described in the repository's "
            "docs/websocket.md.",
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
                }
            ),
        ),
        on_startup=[partial(gateway.start, settings.ws_ping_seconds)],
        on_shutdown=[gateway.close_all],
        debug=False,
        # Logging is set up once per process (services/runtime/logs.py); Litestar's
        # default would replace the root handler with its own plain-text one.
        logging_config=None,
    )

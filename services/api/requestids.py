"""A request id for every HTTP request and WebSocket, in the logs and in the answer.

The id is the client's `X-Request-ID` header when it is a sane token (1 to 128
letters, digits or `.`, `_`, `:`, `-`; a proxy's id is kept so one request can be
followed through it), else a new one. It is bound as `request_id` in structlog's
context while the request is served, so every line the api logs for it carries it, and
`runtime/micro.call` sends it on with its NATS requests, so the services' lines do too.
HTTP answers echo it in `X-Request-ID`, whatever their status.
"""

import re
from typing import Any

import structlog
from litestar.datastructures import ResponseHeader
from litestar.params import HeaderParameter

from services.runtime.micro import new_request_id

HEADER = b"x-request-id"
_SANE = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


# For the OpenAPI document (the middleware below does the work). The request header
# is documented without a pattern on purpose: a layered parameter is validated, and a
# client's malformed id is replaced by a new one rather than refused.
DOC = (
    "The request's id, in the api's and the services' log lines: the client's "
    "X-Request-ID when it is 1 to 128 letters, digits or . _ : -, else a new one."
)
REQUEST_PARAMETER = HeaderParameter(
    annotation=str | None,
    name="X-Request-ID",
    required=False,
    default=None,
    description=DOC + " Send one to follow a request through a proxy and the logs.",
)
# `value` only gives the document its schema (a string); with documentation_only the
# header is never set from it.
RESPONSE_HEADER = ResponseHeader(
    name="X-Request-ID",
    documentation_only=True,
    value="3f2a9c0d1e4b5a67",
    required=True,
    description=DOC,
)


def request_id(given: bytes | None) -> str:
    """`given` (the header's raw value) when it is a sane token, else a new id."""
    if given is not None and _SANE.fullmatch(given):
        return given.decode("ascii")
    return new_request_id()


class RequestIds:
    """ASGI middleware around the whole api (HTTP and WebSocket, before routing, so a
    404 or an overload 503 carries the id too)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        given = next((v for k, v in scope.get("headers", ()) if k == HEADER), None)
        rid = request_id(given)
        echoed = (HEADER, rid.encode("ascii"))

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), echoed]}
            await send(message)

        # The server runs each request in a task of its own; unbinding anyway keeps
        # one request's ids off the next if a server ever reused a task.
        structlog.contextvars.bind_contextvars(request_id=rid)
        try:
            await self.app(scope, receive, send_with_id if scope["type"] == "http" else send)
        finally:
            structlog.contextvars.unbind_contextvars("request_id", "user_id")

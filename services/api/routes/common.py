"""What the routes share: the caller dependency, the bookings client, strict request
bodies and query strings, and the annotated path and query parameters (limits in
contracts/limits.py)."""

import functools
from typing import Annotated, Any

import msgspec
from litestar import Request
from litestar.di import Provide
from litestar.handlers import HTTPRouteHandler
from litestar.params import PathParameter, QueryParameter

from services.api.auth import provide_actor
from services.contracts.errors import DomainError
from services.contracts.limits import CURSOR_MAX, ID_MAX, SINGLE_LINE, explain
from services.runtime.micro import call

deps = {"actor": Provide(provide_actor)}

PathId = Annotated[str, PathParameter(max_length=ID_MAX, pattern=SINGLE_LINE)]
# A cursor is one the API gave out, never empty (an empty one is a client's bug).
CursorQuery = Annotated[
    str | None, QueryParameter(min_length=1, max_length=CURSOR_MAX, pattern=SINGLE_LINE)
]


async def ask(request: Request, subject: str, message: Any, reply_type: type) -> Any:
    """Request/reply to a service over the api's NATS connection (errors become HTTP in
    services/api/errors.py)."""
    return await call(request.app.state.nc, subject, message, reply_type)


def invalid(error: msgspec.ValidationError) -> DomainError:
    """A 400 whose detail names the offending field (`extra.field` holds its path)."""
    field, detail = explain(str(error))
    return DomainError("invalid", detail, {"field": field})


@functools.cache
def _body_decoder(annotation: Any) -> msgspec.json.Decoder:
    return msgspec.json.Decoder(annotation)


async def strict_body(request: Request) -> None:
    """Before-request hook: decode a route's JSON body strictly against its declared
    type, or raise DomainError("invalid") naming the field.

    Litestar converts a decoded body in msgspec's lax mode, which turns "3" into 3 and
    "true" into True. A number or a boolean sent as a string is a client's bug that a
    lax API would hide, so bodies are checked in strict mode first; Litestar's own
    decoding then sees only valid input. An empty or malformed body is left to Litestar
    (its 400 says what is wrong)."""
    data = request.route_handler.parsed_fn_signature.parameters.get("data")
    if data is None:
        return
    body = await request.body()
    if not body.strip():
        return
    try:
        _body_decoder(data.annotation).decode(body)
    except msgspec.ValidationError as e:
        raise invalid(e) from None
    except msgspec.DecodeError:
        return


@functools.cache
def _query_names(handler: HTTPRouteHandler) -> frozenset[str]:
    """The query parameters a route declares (every one is a QueryParameter), by the name
    a URL uses for them."""
    return frozenset(
        field.kwarg_definition.name or name
        for name, field in handler.parsed_fn_signature.parameters.items()
        if isinstance(field.kwarg_definition, QueryParameter)
    )


async def strict_query(request: Request) -> None:
    """Before-request hook: refuse a query parameter the route does not declare, as
    strict bodies refuse an unknown field, with DomainError("invalid") naming it (a
    misspelt `?limt=5` would otherwise be ignored without a word)."""
    known = _query_names(request.route_handler)
    for key in request.query_params:
        if key not in known:
            takes = ", ".join(sorted(known)) if known else "no query parameters"
            raise DomainError(
                "invalid",
                f"{key or '(an empty name)'} is not a query parameter of this route; "
                f"it takes {takes}.",
                {"field": key},
            )


async def strict_input(request: Request) -> None:
    """Before-request hook of every /api/v1 route: strict_query, then strict_body."""
    await strict_query(request)
    await strict_body(request)

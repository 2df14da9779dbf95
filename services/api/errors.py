"""One place that maps service error codes to HTTP (docs/contract.md, "Errors")."""

from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import ValidationException
from litestar.openapi.datastructures import ResponseSpec
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from services.api.logins import Throttled
from services.api.overload import retry_after_seconds
from services.contracts.errors import DomainError
from services.contracts.limits import explain
from services.runtime.db import DISCONNECTED, ConnectionLost, is_disconnect
from services.runtime.micro import RemoteError

log = structlog.get_logger()

STATUS = {
    "invalid": 400,
    "unauthorized": 401,
    "payment_required": 402,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "unprocessable": 422,
    "unavailable": 503,
    "internal": 500,
}


def error_response(
    status: int, detail: str, extra: dict | None = None, headers: dict[str, str] | None = None
) -> Response:
    """Litestar's error shape: {status_code, detail, extra}."""
    body = {"status_code": status, "detail": detail}
    if extra:
        body["extra"] = extra
    return Response(content=body, status_code=status, headers=headers)


def unavailable(request: Request, detail: str) -> Response:
    """503 with the Retry-After every 503 of the api carries (services/api/overload.py)."""
    seconds = retry_after_seconds(request.app.state.settings.queue_seconds)
    return error_response(503, detail, headers={"Retry-After": str(seconds)})


def handle_service_error(request: Request, exc: Exception) -> Response:
    """A service's error code as its HTTP status; `unavailable` (no answer within the
    call's timeout, or no service at all) is 503 with Retry-After."""
    assert isinstance(exc, DomainError | RemoteError)
    status = STATUS.get(exc.code, 500)
    if status == 503:
        return unavailable(request, exc.detail)
    return error_response(status, exc.detail, exc.extra)


def handle_database_error(request: Request, exc: Exception) -> Response:
    """A lost database connection (PostgreSQL restarted) is 503: retrying will work."""
    if is_disconnect(exc):
        return unavailable(request, DISCONNECTED)
    log.error("database error", exc_info=exc)
    return error_response(500, "Internal error.")


def handle_connection_lost(request: Request, exc: Exception) -> Response:
    """A raw connection's lost database (runtime/db.py) is 503, as a pooled one's is."""
    return unavailable(request, DISCONNECTED)


def handle_pool_timeout(request: Request, exc: Exception) -> Response:
    """No database connection came free in time (every pooled one busy): 503, since the
    api is overloaded rather than broken, and a retry after Retry-After can work."""
    log.warning("database pool exhausted")
    return unavailable(request, "The server is busy; retry after the Retry-After seconds.")


def handle_throttled(_: Request, exc: Exception) -> Response:
    """429 with Retry-After (whole seconds) and a detail saying when to try again."""
    assert isinstance(exc, Throttled)
    return error_response(429, exc.detail, headers={"Retry-After": str(exc.retry_after)})


def handle_validation_error(request: Request, exc: Exception) -> Response:
    """Litestar's 400 for a bad parameter or body, with a `detail` that names the first
    bad field as the client sends it (`?type=`, not the handler's `type_`) and says what
    it must be (`extra.field` holds the name)."""
    assert isinstance(exc, ValidationException)
    problems = exc.extra if isinstance(exc.extra, list) else []
    first = next((p for p in problems if isinstance(p, dict) and p.get("key")), None)
    if first is None:
        return error_response(400, exc.detail)
    key = first["key"]
    parameter = request.route_handler.parsed_fn_signature.parameters.get(key)
    key = getattr(getattr(parameter, "kwarg_definition", None), "name", None) or key
    field, detail = explain(f"{first.get('message', '')} - at `$.{key}`")
    return error_response(400, detail, {"field": field})


exception_handlers = {
    DomainError: handle_service_error,
    Throttled: handle_throttled,
    RemoteError: handle_service_error,
    DBAPIError: handle_database_error,
    ConnectionLost: handle_connection_lost,
    PoolTimeout: handle_pool_timeout,
    # PostgreSQL down or still starting: a connect refused (not wrapped by SQLAlchemy).
    ConnectionError: handle_database_error,
    ValidationException: handle_validation_error,
}


class ErrorResponse(msgspec.Struct):
    """Every error answer: Litestar's shape, `detail` saying what to do."""

    status_code: int
    detail: str
    extra: dict[str, Any] | None = None


_WHEN = {
    400: "Invalid request: `detail` names the field and the rule.",
    401: "No, bad or expired token: log in again.",
    402: "The online payment was declined.",
    403: "You can see this resource but may not do this.",
    404: "No such resource, or none you have a role on.",
    409: "The current state does not allow it (for example the slot is booked).",
    422: "The Idempotency-Key was used with another request.",
    429: "Too many attempts (failed logins for the account or from the address, or "
    "registrations from the address): wait the Retry-After seconds.",
    503: "The api is at capacity (no turn within PARKMATE_QUEUE_SECONDS) or a service behind "
    "it did not answer in time: retry after the `Retry-After` header's seconds.",
}


def responses(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the error codes a route can answer; 503 (overload) always."""
    return {
        code: ResponseSpec(data_container=ErrorResponse, description=_WHEN[code])
        for code in sorted({*codes, 503})
    }

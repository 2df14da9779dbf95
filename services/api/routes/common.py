"""What the parking routes share: the caller dependency and the bookings client."""

from typing import Any

from litestar import Request
from litestar.di import Provide

from services.api.auth import provide_actor
from services.runtime.micro import call

deps = {"actor": Provide(provide_actor)}


async def ask(request: Request, subject: str, message: Any, reply_type: type) -> Any:
    """Request/reply to a service over the api's NATS connection (errors become HTTP in
    services/api/errors.py)."""
    return await call(request.app.state.nc, subject, message, reply_type)

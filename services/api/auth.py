"""The caller, taken from `Authorization: Bearer <jwt>` (a Litestar dependency)."""

import structlog
from litestar import Request
from litestar.exceptions import NotAuthorizedException

from services.api import identity
from services.contracts.bookings import Actor


def bearer_token(authorization: str | None) -> str | None:
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


async def provide_actor(request: Request) -> Actor:
    """The verified caller; 401 with a detail saying how to get a token otherwise."""
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise NotAuthorizedException(
            detail="Send Authorization: Bearer <token>; get one from POST /api/v1/auth/login."
        )
    # A token the Idempotency-Key middleware checked a moment ago is remembered by the
    # keyring: checking it again costs a dict lookup, not a signature.
    try:
        claims = identity.verify_token(request.app.state.settings.keys, token)
    except identity.BadToken as e:
        raise NotAuthorizedException(detail=str(e)) from None
    # The lines logged for the rest of this request say whose it is.
    structlog.contextvars.bind_contextvars(user_id=claims.user_id)
    return Actor(user_id=claims.user_id, roles=claims.roles)

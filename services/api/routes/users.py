"""Identity routes: register, login, /me, admin user creation (docs/contract.md, "Identity")."""

from typing import Annotated

import msgspec
from litestar import Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, QueryParameter

from services.api.auth import provide_actor
from services.api.errors import responses
from services.api.logins import Logins, Registrations
from services.api.routes.common import CursorQuery
from services.api.users import Identity, Token, User, UserPage
from services.contracts.bookings import Actor
from services.contracts.errors import DomainError
from services.contracts.limits import (
    MAX_ROLES,
    PAGE_MAX,
    ROLE_MAX,
    Email,
    Name,
    NewPassword,
    Password,
    Role,
)


class RegisterIn(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: NewPassword
    full_name: Name


class LoginIn(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: Password


class AdminUserIn(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: NewPassword
    full_name: Name
    roles: Annotated[list[Role], msgspec.Meta(max_length=MAX_ROLES)]


def _identity(request: Request) -> Identity:
    return request.app.state.identity


def _address(request: Request) -> str:
    """The client's address (X-Forwarded-For's when the peer is a trusted proxy)."""
    return request.client.host if request.client else "unknown"


@post(
    "/auth/register",
    status_code=201,
    responses=responses(400, 409, 422, 429),
    summary="Register as a driver",
)
async def register(request: Request, data: JSONBody[RegisterIn]) -> User:
    """201 the new user with roles ["driver"]; 409 when the email is taken; 429 with
    Retry-After after too many registrations from the client's address."""
    registrations: Registrations = request.app.state.registrations
    await registrations.admit(_address(request))
    return await _identity(request).create_user(
        data.email, data.password, data.full_name, ["driver"]
    )


@post(
    "/auth/login",
    status_code=200,
    responses=responses(400, 401, 429),
    summary="Log in for a bearer token",
)
async def login(request: Request, data: JSONBody[LoginIn]) -> Token:
    """A JWT access token; 401 on a wrong email or password; 429 with Retry-After after
    too many failed logins for the account or from the client's address."""
    logins: Logins = request.app.state.logins
    return await logins.login(data.email, data.password, _address(request))


@get(
    "/me",
    dependencies={"actor": Provide(provide_actor)},
    responses=responses(401),
    summary="The signed-in user",
)
async def me(request: Request, actor: NamedDependency[Actor]) -> User:
    return await _identity(request).get(actor.user_id)


@post(
    "/admin/users",
    status_code=201,
    dependencies={"actor": Provide(provide_actor)},
    responses=responses(400, 401, 403, 409, 422),
    summary="Create a user with any roles (admin)",
)
async def create_user(
    request: Request, data: JSONBody[AdminUserIn], actor: NamedDependency[Actor]
) -> User:
    """201 the user; 403 unless the caller is an admin; 409 when the email is taken."""
    if "admin" not in actor.roles:
        raise DomainError("forbidden", "Only admins can create users with roles.")
    return await _identity(request).create_user(
        data.email, data.password, data.full_name, data.roles
    )


@get(
    "/admin/users",
    dependencies={"actor": Provide(provide_actor)},
    responses=responses(400, 401, 403),
    summary="List users, optionally with one role (admin)",
)
async def list_users(
    request: Request,
    actor: NamedDependency[Actor],
    role: Annotated[str | None, QueryParameter(max_length=ROLE_MAX)] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=PAGE_MAX)] = 50,
    cursor: CursorQuery = None,
) -> UserPage:
    """`{items, next_cursor}` in creation order; `role=employee` for the employees an
    admin can assign to lots. 403 unless the caller is an admin."""
    if "admin" not in actor.roles:
        raise DomainError("forbidden", "Only admins can list users.")
    return await _identity(request).list_users(role, cursor, limit)


routes = [register, login, me, create_user, list_users]

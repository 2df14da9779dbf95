"""Bulk set-up for operators (admins): many accounts, or many drivers' vehicles, in one call.

Made for load replays (`parkmate replay` creates one driver per car of a real day, tens
of thousands of them), and usable for migrations. Accounts are inserted set-based into
the api's own schema `identity`, with one `user.registered` event each written to the
api's outbox in the same transaction, exactly as one registration does. No password is
hashed per account: the answer carries an access token minted for each new user, and
the accounts get either one shared password (hashed once per call) or none (they
cannot log in with a password; their tokens are the way in). Vehicles are registered
by the bookings service, which owns them (`bookings.vehicle.bulk`).
"""

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Annotated

import msgspec
import sqlalchemy as sa
from litestar import Request, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from services.api import identity, storage
from services.api.auth import provide_actor
from services.api.errors import responses
from services.api.routes.common import ask
from services.api.users import SOURCE
from services.contracts import bookings as c
from services.contracts import subjects
from services.contracts.bookings import Actor
from services.contracts.envelope import new_event
from services.contracts.errors import DomainError
from services.contracts.identity import UserRegisteredData
from services.contracts.ids import uuid7
from services.contracts.limits import (
    MAX_BULK,
    MAX_ROLES,
    TOKEN_SECONDS_MAX,
    Email,
    Id,
    Name,
    NewPassword,
    Plate,
    Role,
    TokenSeconds,
    VehicleLabel,
)

NO_PASSWORD = "!no-password"  # not an argon2 hash: password logins always fail
_encoder = msgspec.json.Encoder()


class BulkUserIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One account: roles default to ["driver"]."""

    email: Email
    full_name: Name
    roles: Annotated[list[Role], msgspec.Meta(max_length=MAX_ROLES)] = msgspec.field(
        default_factory=lambda: ["driver"]
    )


class BulkUsersIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """1 to 5,000 accounts. `password`: one password for all of them (hashed once), or
    none. `token_seconds`: lifetime of the minted tokens (default: the server's token
    lifetime; at most 7 days)."""

    users: Annotated[list[BulkUserIn], msgspec.Meta(max_length=MAX_BULK)]
    password: NewPassword | None = None
    token_seconds: TokenSeconds | None = None


class BulkUserOut(msgspec.Struct, kw_only=True):
    """A created account and a bearer token for it."""

    id: str
    email: str
    full_name: str
    roles: list[str]
    access_token: str


class BulkUsersOut(msgspec.Struct, kw_only=True):
    """The created accounts in request order; tokens expire after `expires_in` seconds."""

    items: list[BulkUserOut]
    token_type: str = "bearer"
    expires_in: int


class BulkVehicleIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    user_id: Id
    plate: Plate
    label: VehicleLabel | None = None


class BulkVehiclesIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """1 to 5,000 vehicles, each for an existing user."""

    vehicles: Annotated[list[BulkVehicleIn], msgspec.Meta(max_length=MAX_BULK)]


def _require_admin(actor: Actor) -> None:
    if "admin" not in actor.roles:
        raise DomainError("forbidden", "Only admins can create accounts or vehicles in bulk.")


def check_users(data: BulkUsersIn, default_seconds: int) -> tuple[list[tuple], int]:
    """Validated (email, full_name, roles) rows and the token lifetime in seconds.

    Raises DomainError("invalid") naming the index and the rule broken.
    """
    if not 1 <= len(data.users) <= MAX_BULK:
        raise DomainError("invalid", f"users must hold 1 to {MAX_BULK} accounts.")
    seconds = data.token_seconds if data.token_seconds is not None else default_seconds
    if not 1 <= seconds <= TOKEN_SECONDS_MAX:
        raise DomainError("invalid", f"token_seconds must be between 1 and {TOKEN_SECONDS_MAX}.")
    if data.password is not None:
        identity.check_password(data.password)
    rows, seen = [], set()
    for i, u in enumerate(data.users):
        try:
            email = identity.normalise_email(u.email)
            roles = identity.check_roles(u.roles)
        except DomainError as e:
            raise DomainError("invalid", f"users[{i}]: {e.detail}", {"index": i}) from None
        if not u.full_name.strip():
            raise DomainError("invalid", f"users[{i}]: full_name must not be empty.", {"index": i})
        if email in seen:
            raise DomainError("invalid", f"users[{i}]: {email} appears twice.", {"index": i})
        seen.add(email)
        rows.append((email, u.full_name.strip(), roles))
    return rows, seconds


_INSERT_USERS = sa.text(
    """
    INSERT INTO identity.users (id, email, password_hash, full_name, roles, created_at)
    SELECT u.id, u.email, :password_hash, u.full_name, string_to_array(u.roles, ','), :now
    FROM unnest(CAST(:ids AS uuid[]), CAST(:emails AS text[]), CAST(:names AS text[]),
                CAST(:roles AS text[])) AS u(id, email, full_name, roles)
    ON CONFLICT (email) DO NOTHING
    RETURNING email
    """
)

_INSERT_OUTBOX = sa.text(
    """
    INSERT INTO identity.outbox (event_id, subject, payload, created_at)
    SELECT e.id, :subject, e.payload, :now
    FROM unnest(CAST(:ids AS uuid[]), CAST(:payloads AS bytea[])) WITH ORDINALITY
         AS e(id, payload, n)
    ORDER BY e.n
    """
)


@post(
    "/admin/users/bulk",
    status_code=201,
    dependencies={"actor": Provide(provide_actor)},
    responses=responses(400, 401, 403, 409, 422),
    summary="Create many accounts at once, with a token for each (admin)",
)
async def create_users_bulk(
    request: Request, data: JSONBody[BulkUsersIn], actor: NamedDependency[Actor]
) -> BulkUsersOut:
    """201 the accounts with tokens, in request order. 403 unless admin; 400 naming the
    first invalid entry; 409 listing emails already registered (`extra.emails`; nothing
    is created then)."""
    _require_admin(actor)
    settings = request.app.state.settings
    rows, seconds = check_users(data, settings.token_seconds)
    password_hash = NO_PASSWORD
    if data.password is not None:
        # Hashed once for the whole call, off the event loop.
        password_hash = await asyncio.to_thread(identity.hash_password, data.password)
    now = datetime.now(UTC)
    ids = [str(uuid7()) for _ in rows]
    events = [
        new_event(
            subjects.USER_REGISTERED,
            SOURCE,
            UserRegisteredData(user_id=i, email=e, full_name=n, roles=r),
            i,
        )
        for i, (e, n, r) in zip(ids, rows, strict=True)
    ]
    engine = request.app.state.engine
    async with engine.begin() as conn:
        created = await conn.execute(
            _INSERT_USERS,
            {
                "password_hash": password_hash,
                "now": now,
                "ids": ids,
                "emails": [e for e, _, _ in rows],
                "names": [n for _, n, _ in rows],
                "roles": [",".join(r) for _, _, r in rows],
            },
        )
        inserted = {r.email for r in created}
        if len(inserted) != len(rows):  # raising rolls everything back
            taken = [e for e, _, _ in rows if e not in inserted]
            raise DomainError(
                "conflict",
                f"{len(taken)} email(s) are already registered, e.g. {taken[0]}; "
                "nothing was created.",
                {"emails": taken[:100]},
            )
        await conn.execute(
            _INSERT_OUTBOX,
            {
                "subject": subjects.USER_REGISTERED,
                "now": now,
                "ids": [e.id for e in events],
                "payloads": [_encoder.encode(e) for e in events],
            },
        )
    identity_uc = request.app.state.identity
    if callable(identity_uc.on_commit):
        identity_uc.on_commit()
    keys = settings.keys
    return BulkUsersOut(
        items=[
            BulkUserOut(
                id=i,
                email=e,
                full_name=n,
                roles=r,
                access_token=identity.issue_token(keys, i, r, seconds),
            )
            for i, (e, n, r) in zip(ids, rows, strict=True)
        ],
        expires_in=seconds,
    )


@post(
    "/admin/vehicles/bulk",
    status_code=201,
    dependencies={"actor": Provide(provide_actor)},
    responses=responses(400, 401, 403, 409, 422),
    summary="Register many drivers' vehicles at once (admin)",
)
async def create_vehicles_bulk(
    request: Request, data: JSONBody[BulkVehiclesIn], actor: NamedDependency[Actor]
) -> c.BulkVehicleList:
    """201 the vehicles in request order. 403 unless admin; 400 naming the first entry
    with an unknown user or a bad plate; 409 when a driver already has that plate."""
    _require_admin(actor)
    if not 1 <= len(data.vehicles) <= MAX_BULK:
        raise DomainError("invalid", f"vehicles must hold 1 to {MAX_BULK} entries.")
    wanted = []
    for i, v in enumerate(data.vehicles):
        try:
            wanted.append(str(uuid.UUID(v.user_id)))
        except ValueError:
            raise DomainError(
                "invalid", f"vehicles[{i}]: {v.user_id!r} is not a user id.", {"index": i}
            ) from None
    users = storage.users
    async with request.app.state.engine.connect() as conn:
        found = await conn.execute(
            sa.select(users.c.id).where(
                users.c.id == sa.func.any(sa.cast(wanted, ARRAY(UUID(as_uuid=False))))
            )
        )
        known = {str(k) for k in found.scalars()}
    for i, user_id in enumerate(wanted):
        if user_id not in known:
            raise DomainError("invalid", f"vehicles[{i}]: no user with id {user_id}.", {"index": i})
    req = c.CreateVehiclesBulk(
        actor=actor,
        vehicles=[
            c.BulkVehicle(user_id=u, plate=v.plate, label=v.label)
            for u, v in zip(wanted, data.vehicles, strict=True)
        ],
    )
    return await ask(request, subjects.BOOKINGS_VEHICLE_BULK, req, c.BulkVehicleList)


routes = [create_users_bulk, create_vehicles_bulk]

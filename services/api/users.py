"""Use cases of identity: register, create and list users. Raise DomainError on refusal."""

import asyncio
import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.api import identity, storage
from services.contracts import subjects
from services.contracts.envelope import new_event
from services.contracts.errors import DomainError
from services.contracts.identity import UserRegisteredData
from services.contracts.ids import uuid7
from services.runtime.outbox import add_event

SOURCE = "parkmate/api"


class User(msgspec.Struct, kw_only=True):
    """A user as the API shows it."""

    id: str
    email: str
    full_name: str
    roles: list[str]


class Token(msgspec.Struct, kw_only=True):
    """A login answer; `expires_in` is in seconds."""

    access_token: str
    token_type: str = "bearer"
    expires_in: int


class UserPage(msgspec.Struct):
    """A page of users; pass `next_cursor` as `cursor` for the next one (null: the end)."""

    items: list[User]
    next_cursor: str | None = None


def _encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        return str(uuid.UUID(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise DomainError(
            "invalid", "cursor is not one this API gave out; start again without it."
        ) from None


def user_out(row) -> User:
    return User(id=row.id, email=row.email, full_name=row.full_name, roles=list(row.roles))


@dataclass
class Identity:
    """Identity use cases over the `identity` schema; `on_commit` wakes the outbox relay.
    Log-in is services/api/logins.py."""

    engine: AsyncEngine
    on_commit: object = None

    async def create_user(
        self,
        email: str,
        password: str,
        full_name: str,
        roles: list[str],
        password_hash: str | None = None,
    ) -> User:
        """Create a user (409 conflict when the email is taken) and emit user.registered.

        `password_hash` skips hashing when the caller already has one (bulk creation).
        """
        email = identity.normalise_email(email)
        if password_hash is None:
            identity.check_password(password)
        roles = identity.check_roles(roles)
        if not full_name.strip():
            raise DomainError("invalid", "full_name must not be empty.")
        hashed = password_hash or await asyncio.to_thread(identity.hash_password, password)
        user_id = str(uuid7())
        try:
            async with self.engine.begin() as conn:
                await storage.insert_user(
                    conn,
                    id=user_id,
                    email=email,
                    password_hash=hashed,
                    full_name=full_name.strip(),
                    roles=roles,
                    created_at=datetime.now(UTC),
                )
                await add_event(
                    conn,
                    storage.outbox,
                    new_event(
                        subjects.USER_REGISTERED,
                        SOURCE,
                        UserRegisteredData(
                            user_id=user_id, email=email, full_name=full_name.strip(), roles=roles
                        ),
                        user_id,
                    ),
                )
        except IntegrityError:
            raise DomainError(
                "conflict", f"{email} is already registered; log in instead.", {"email": email}
            ) from None
        if callable(self.on_commit):
            self.on_commit()
        return User(id=user_id, email=email, full_name=full_name.strip(), roles=roles)

    async def list_users(
        self, role: str | None = None, cursor: str | None = None, limit: int = 50
    ) -> UserPage:
        """Users in creation order, keyset-paginated; `role` keeps those with that role."""
        if role is not None and role not in identity.ROLES:
            raise DomainError(
                "invalid", f"Unknown role {role!r}; use " + ", ".join(identity.ROLES) + "."
            )
        async with self.engine.connect() as conn:
            rows = await storage.list_users(conn, role, _decode_cursor(cursor), limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return UserPage(
            items=[user_out(r) for r in rows],
            next_cursor=_encode_cursor(rows[-1].id) if more else None,
        )

    async def get(self, user_id: str) -> User:
        async with self.engine.connect() as conn:
            row = await storage.user_by_id(conn, user_id)
        if row is None:
            raise DomainError("unauthorized", "This token's user no longer exists; log in again.")
        return user_out(row)

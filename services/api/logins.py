"""Log-in: a token for the right email and password, failed attempts throttled per
account and per client address in PostgreSQL, so every api replica shares the count;
and registrations, throttled per client address the same way.

An attempt first takes one from both keys' allowance (throttle.admit), atomically under
row locks, so concurrent guesses cannot all slip past the check; a login that turns out
right gives both back. Only failed logins count, and a refused attempt checks no
password at all.
"""

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.api import identity, storage, throttle
from services.api.users import Token
from services.contracts.errors import DomainError


@dataclass(frozen=True)
class LoginLimits:
    """Failed logins allowed per account (its email) and per client address."""

    account: throttle.Limit
    address: throttle.Limit


class Throttled(Exception):
    """Too many failed logins, or registrations: the api answers 429 with `detail` and
    Retry-After `retry_after` (whole seconds)."""

    def __init__(self, detail: str, retry_after: int):
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


def throttle_key(kind: str, value: str) -> str:
    """The row key of an account or address: hashed, so rows hold no emails or addresses
    and stay short whatever a client sends."""
    return f"{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"


async def take_attempt(
    conn: AsyncConnection, limits: dict[str, throttle.Limit], now: datetime
) -> throttle.Refused | None:
    """Take one attempt at `now` from every key of `limits`, under row locks held until
    the caller's transaction ends (so concurrent attempts cannot all slip past); the
    Refused decision when one key has none left (then nothing is taken), else None."""
    tats = await storage.lock_login_keys(conn, sorted(limits), now)
    decision = throttle.admit(
        {key: tat.timestamp() for key, tat in tats.items()}, limits, now.timestamp()
    )
    if isinstance(decision, throttle.Refused):
        return decision
    await storage.set_login_tats(
        conn, {key: datetime.fromtimestamp(tat, UTC) for key, tat in decision.items()}
    )
    return None


@dataclass
class Registrations:
    """Registrations allowed per client address (`limit`), counted in schema `identity`
    with the login attempts."""

    engine: AsyncEngine
    limit: throttle.Limit

    async def admit(self, address: str) -> None:
        """Take one registration from `address`'s allowance (every attempt counts, an
        email already taken included: registering is also a way to probe emails).
        Raises Throttled when it has none left."""
        async with self.engine.begin() as conn:
            refused = await take_attempt(
                conn, {throttle_key("register", address): self.limit}, datetime.now(UTC)
            )
        if refused is not None:
            raise Throttled(
                f"Too many registrations from your address; try again in {refused.retry_after} s.",
                refused.retry_after,
            )


@dataclass
class Logins:
    """Log-in over schema `identity`: tokens signed with `keys`, valid `token_seconds`."""

    engine: AsyncEngine
    keys: identity.Keyring
    token_seconds: int
    limits: LoginLimits

    def __post_init__(self) -> None:
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        # Made now rather than by the first login for an unknown email, which would
        # otherwise take twice the work of any other.
        identity.dummy_hash()

    async def login(self, email: str, password: str, address: str) -> Token:
        """A token for the right email and password. Raises Throttled when the
        account or `address` (the client's IP) has no failed attempt left, DomainError
        unauthorized otherwise on a wrong one (the same for an unknown email and a wrong
        password, so accounts cannot be probed)."""
        email = email.strip().lower()
        account_key = throttle_key("account", email)
        limits = {
            account_key: self.limits.account,
            throttle_key("address", address): self.limits.address,
        }
        now = datetime.now(UTC)
        async with self.engine.begin() as conn:
            refused = await take_attempt(conn, limits, now)
            if refused is not None:
                whose = "for this account" if refused.key == account_key else "from your address"
                raise Throttled(
                    f"Too many failed logins {whose}; try again in {refused.retry_after} s.",
                    refused.retry_after,
                )
            row = await storage.user_by_email(conn, email)
        # An unknown email is verified too (against a dummy hash): the same work as a
        # wrong password, so the answer's timing does not reveal which emails exist.
        ok = await asyncio.to_thread(
            identity.verify_password, row.password_hash if row else None, password
        )
        if not ok or row is None:
            raise DomainError("unauthorized", "Wrong email or password.")
        async with self._autocommit.connect() as conn:
            await storage.refund_login_keys(
                conn, {key: timedelta(seconds=limit.interval) for key, limit in limits.items()}
            )
        return Token(
            access_token=identity.issue_token(
                self.keys, row.id, list(row.roles), self.token_seconds
            ),
            expires_in=self.token_seconds,
        )


async def purge_expired(engine: AsyncEngine) -> int:
    """Delete throttling rows that no longer limit anything; return how many."""
    async with engine.begin() as conn:
        return await storage.purge_login_attempts(conn, datetime.now(UTC))

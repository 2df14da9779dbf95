"""Log-in: a token for the right email and password, failed attempts throttled per
account and per client address in PostgreSQL, so every api replica shares the count.

An attempt first takes one from both keys' allowance (throttle.admit), atomically under
row locks, so concurrent guesses cannot all slip past the check; a login that turns out
right gives both back. Only failed logins count, and a refused attempt checks no
password at all.
"""

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from services.api import identity, storage, throttle
from services.api.users import Token
from services.contracts.errors import DomainError


@dataclass(frozen=True)
class LoginLimits:
    """Failed logins allowed per account (its email) and per client address."""

    account: throttle.Limit
    address: throttle.Limit


class LoginThrottled(Exception):
    """Too many failed logins: the api answers 429 with `detail` and Retry-After
    `retry_after` (whole seconds)."""

    def __init__(self, detail: str, retry_after: int):
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


def throttle_key(kind: str, value: str) -> str:
    """The row key of an account or address: hashed, so rows hold no emails or addresses
    and stay short whatever a client sends."""
    return f"{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"


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
        """A token for the right email and password. Raises LoginThrottled when the
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
            tats = await storage.lock_login_keys(conn, sorted(limits), now)
            decision = throttle.admit(
                {key: tat.timestamp() for key, tat in tats.items()}, limits, now.timestamp()
            )
            if isinstance(decision, throttle.Refused):
                whose = "for this account" if decision.key == account_key else "from your address"
                raise LoginThrottled(
                    f"Too many failed logins {whose}; try again in {decision.retry_after} s.",
                    decision.retry_after,
                )
            await storage.set_login_tats(
                conn, {key: datetime.fromtimestamp(tat, UTC) for key, tat in decision.items()}
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

"""Settings of the api service, read and checked once from the environment."""

from dataclasses import dataclass
from functools import cached_property

from services.api import identity, throttle
from services.api.logins import LoginLimits
from services.runtime.config import (
    Common,
    SettingError,
    env,
    env_int,
    env_number,
    parse_list,
    parse_networks,
    parse_port,
)

# uvicorn's own default: X-Forwarded-For is believed from these peers only.
DEFAULT_TRUSTED_PROXIES = "127.0.0.1,::1"


@dataclass(frozen=True)
class Settings:
    """HTTP bind address, JWT secrets and lifetime (seconds), WebSocket and login limits.

    PARKMATE_HOST, PARKMATE_PORT; PARKMATE_JWT_SECRET (signs tokens; required, at least
    32 bytes, see docs/security.md) and PARKMATE_JWT_PREVIOUS_SECRETS (comma-separated
    secrets that still verify, for rotation); PARKMATE_TOKEN_SECONDS;
    PARKMATE_WS_SEND_QUEUE (frames buffered per socket before a slow reader is dropped),
    PARKMATE_WS_PING_SECONDS (seconds between server pings; two unanswered close the
    socket with 4408), PARKMATE_WS_RATE and PARKMATE_WS_BURST (client frames per second
    and at once; beyond them frames are dropped, and a client that persists is closed
    with 1008), PARKMATE_DEMO_ACCOUNTS and PARKMATE_DEMO_PASSWORD (comma-separated
    emails and their password that the web UI's login page offers; `parkmate dev` sets
    them for its demo accounts, leave them unset elsewhere),
    PARKMATE_IDEMPOTENCY_KEY_HOURS (how long an Idempotency-Key's answer is kept, hours;
    older keys are purged every `purge_seconds`), PARKMATE_LOGIN_ACCOUNT_ATTEMPTS and
    PARKMATE_LOGIN_ACCOUNT_WINDOW_SECONDS, PARKMATE_LOGIN_ADDRESS_ATTEMPTS and
    PARKMATE_LOGIN_ADDRESS_WINDOW_SECONDS (failed logins allowed at once per account and
    per client address, and the seconds in which that allowance comes back),
    PARKMATE_REGISTER_ADDRESS_ATTEMPTS and PARKMATE_REGISTER_ADDRESS_WINDOW_SECONDS
    (registrations allowed at once per client address, and the seconds in which that
    allowance comes back),
    PARKMATE_TRUSTED_PROXIES (peers whose X-Forwarded-For names the client address),
    PARKMATE_MAX_INFLIGHT (HTTP requests served at once by this process) and
    PARKMATE_QUEUE_SECONDS (how long a request beyond them may wait for a turn before it
    is answered 503 with Retry-After; services/api/overload.py), PARKMATE_DRAIN_SECONDS
    (seconds the api keeps serving after SIGTERM with /readyz answering 503, so load
    balancers move new traffic away before it closes its sockets and stops listening;
    0 to stop at once; docs/operations.md, "Stopping and draining").
    """

    common: Common
    jwt_secret: str
    jwt_previous_secrets: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8000
    token_seconds: int = 3600
    ws_send_queue: int = 256
    ws_ping_seconds: float = 20.0
    ws_rate: float = 20.0
    ws_burst: int = 40
    demo_accounts: tuple[str, ...] = ()
    demo_password: str = ""
    idempotency_key_hours: float = 24.0
    purge_seconds: float = 3600.0
    login_account_attempts: int = 5
    login_account_window_seconds: float = 300.0
    login_address_attempts: int = 20
    login_address_window_seconds: float = 300.0
    register_address_attempts: int = 30
    register_address_window_seconds: float = 3600.0
    trusted_proxies: tuple[str, ...] = tuple(parse_list(DEFAULT_TRUSTED_PROXIES))
    max_inflight: int = 32
    queue_seconds: float = 2.0
    drain_seconds: float = 0.0

    @cached_property
    def keys(self) -> identity.Keyring:
        """The token keys: `jwt_secret` signs, it and `jwt_previous_secrets` verify."""
        return identity.Keyring.of(self.jwt_secret, self.jwt_previous_secrets)

    @property
    def login_limits(self) -> LoginLimits:
        """Failed logins allowed per account and per client address."""
        return LoginLimits(
            account=throttle.Limit(self.login_account_attempts, self.login_account_window_seconds),
            address=throttle.Limit(self.login_address_attempts, self.login_address_window_seconds),
        )

    @property
    def register_limit(self) -> throttle.Limit:
        """Registrations allowed per client address."""
        return throttle.Limit(self.register_address_attempts, self.register_address_window_seconds)

    @classmethod
    def from_env(cls) -> "Settings":
        """Read and check every variable; raises SettingError naming a bad one (a missing,
        short or published JWT secret included)."""
        host = env("HOST", "127.0.0.1").strip()
        if not host:
            raise SettingError("PARKMATE_HOST must be an address to listen on, not empty.")
        return cls(
            common=Common.from_env(),
            jwt_secret=_secret("JWT_SECRET", env("JWT_SECRET", "")),
            jwt_previous_secrets=tuple(
                _secret("JWT_PREVIOUS_SECRETS", secret)
                for secret in parse_list(env("JWT_PREVIOUS_SECRETS", ""))
            ),
            host=host,
            port=parse_port("PORT", env("PORT", "8000")),
            token_seconds=env_int("TOKEN_SECONDS", 3600),
            ws_send_queue=env_int("WS_SEND_QUEUE", 256),
            ws_ping_seconds=env_number("WS_PING_SECONDS", 20),
            ws_rate=env_number("WS_RATE", 20),
            ws_burst=env_int("WS_BURST", 40),
            demo_accounts=parse_list(env("DEMO_ACCOUNTS", "")),
            demo_password=env("DEMO_PASSWORD", ""),
            idempotency_key_hours=env_number("IDEMPOTENCY_KEY_HOURS", 24),
            login_account_attempts=env_int("LOGIN_ACCOUNT_ATTEMPTS", 5),
            login_account_window_seconds=env_number("LOGIN_ACCOUNT_WINDOW_SECONDS", 300),
            login_address_attempts=env_int("LOGIN_ADDRESS_ATTEMPTS", 20),
            login_address_window_seconds=env_number("LOGIN_ADDRESS_WINDOW_SECONDS", 300),
            register_address_attempts=env_int("REGISTER_ADDRESS_ATTEMPTS", 30),
            register_address_window_seconds=env_number("REGISTER_ADDRESS_WINDOW_SECONDS", 3600),
            trusted_proxies=parse_networks(
                "TRUSTED_PROXIES", env("TRUSTED_PROXIES", DEFAULT_TRUSTED_PROXIES)
            ),
            max_inflight=env_int("MAX_INFLIGHT", 32),
            queue_seconds=env_number("QUEUE_SECONDS", 2),
            drain_seconds=env_number("DRAIN_SECONDS", 0, allow_zero=True),
        )


def _secret(name: str, value: str) -> str:
    if not value:
        raise SettingError(
            f"Set PARKMATE_{name} to at least {identity.MIN_SECRET_BYTES} random bytes "
            "(`openssl rand -base64 48`): the api signs tokens with it (docs/security.md)."
        )
    problem = identity.secret_problem(value)
    if problem is not None:
        # Never echo the value: it is a secret, or someone's attempt at one.
        raise SettingError(f"PARKMATE_{name} {problem}.")
    return value

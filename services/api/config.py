"""Settings of the api service, read once from the environment."""

from dataclasses import dataclass

from services.runtime.config import Common, env

DEV_SECRET = "parkmate-dev-secret-change-me-in-production"


@dataclass(frozen=True)
class Settings:
    """HTTP bind address, JWT secret and lifetime (seconds), WebSocket limits.

    PARKMATE_HOST, PARKMATE_PORT, PARKMATE_JWT_SECRET, PARKMATE_TOKEN_SECONDS,
    PARKMATE_WS_SEND_QUEUE (frames buffered per socket before a slow reader is dropped),
    PARKMATE_WS_PING_SECONDS (seconds between server pings; two unanswered close the
    socket with 4408), PARKMATE_WS_RATE and PARKMATE_WS_BURST (client frames per second
    and at once; beyond them frames are dropped, and a client that persists is closed
    with 1008), PARKMATE_DEMO_ACCOUNTS and PARKMATE_DEMO_PASSWORD (comma-separated
    emails and their password that the web UI's login page offers; `parkmate dev` sets
    them for its demo accounts, leave them unset elsewhere),
    PARKMATE_IDEMPOTENCY_KEY_HOURS (how long an Idempotency-Key's answer is kept, hours;
    older keys are purged every `idempotency_purge_seconds`), PARKMATE_MAX_INFLIGHT (HTTP
    requests served at once by this process) and PARKMATE_QUEUE_SECONDS (how long a
    request beyond them may wait for a turn before it is answered 503 with Retry-After;
    services/api/overload.py).
    """

    common: Common
    host: str = "127.0.0.1"
    port: int = 8000
    jwt_secret: str = DEV_SECRET
    token_seconds: int = 3600
    ws_send_queue: int = 256
    ws_ping_seconds: float = 20.0
    ws_rate: float = 20.0
    ws_burst: int = 40
    demo_accounts: tuple[str, ...] = ()
    demo_password: str = ""
    idempotency_key_hours: float = 24.0
    idempotency_purge_seconds: float = 3600.0
    max_inflight: int = 32
    queue_seconds: float = 2.0

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            common=Common.from_env(),
            host=env("HOST", "127.0.0.1"),
            port=int(env("PORT", "8000")),
            jwt_secret=env("JWT_SECRET", DEV_SECRET),
            token_seconds=int(env("TOKEN_SECONDS", "3600")),
            ws_send_queue=int(env("WS_SEND_QUEUE", "256")),
            ws_ping_seconds=float(env("WS_PING_SECONDS", "20")),
            ws_rate=float(env("WS_RATE", "20")),
            ws_burst=int(env("WS_BURST", "40")),
            demo_accounts=tuple(
                email.strip() for email in env("DEMO_ACCOUNTS", "").split(",") if email.strip()
            ),
            demo_password=env("DEMO_PASSWORD", ""),
            idempotency_key_hours=float(env("IDEMPOTENCY_KEY_HOURS", "24")),
            max_inflight=int(env("MAX_INFLIGHT", "32")),
            queue_seconds=float(env("QUEUE_SECONDS", "2")),
        )

"""Settings of the timers service, read and checked once from the environment."""

from dataclasses import dataclass, field

from services.runtime.config import (
    DEFAULT_STARTUP_TIMEOUT,
    NatsAuth,
    env,
    env_number,
    env_probe_port,
    parse_go_duration,
    parse_nats_url,
)


@dataclass(frozen=True)
class Settings:
    """`nats_url` (PARKMATE_NATS_URL); `fired_ttl`: how long a fired timer stays on
    TIMERS for bookings to consume, a Go duration (PARKMATE_TIMER_FIRED_TTL, default 24h);
    `probe_port`: where /healthz, /readyz and /metrics are served (PARKMATE_PROBE_PORT,
    None: nowhere); `startup_timeout`: seconds to keep trying to reach NATS at start
    (PARKMATE_STARTUP_TIMEOUT_SECONDS); `nats_auth`: NATS credentials and TLS files (see
    runtime.config.NatsAuth). Timers uses no database."""

    nats_url: str
    fired_ttl: str = "24h"
    probe_port: int | None = None
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    nats_auth: NatsAuth = field(default_factory=NatsAuth)

    @classmethod
    def from_env(cls) -> "Settings":
        """Read and check every variable; raises SettingError naming a bad one."""
        return cls(
            nats_url=parse_nats_url("NATS_URL", env("NATS_URL")),
            fired_ttl=parse_go_duration("TIMER_FIRED_TTL", env("TIMER_FIRED_TTL", "24h")),
            probe_port=env_probe_port(),
            startup_timeout=env_number("STARTUP_TIMEOUT_SECONDS", DEFAULT_STARTUP_TIMEOUT),
            nats_auth=NatsAuth.from_env(),
        )

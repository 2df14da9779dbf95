"""Settings of the timers service."""

from dataclasses import dataclass, field

from services.runtime.config import NatsAuth, env


@dataclass(frozen=True)
class Settings:
    """`nats_url` (PARKMATE_NATS_URL); `fired_ttl`: how long a fired timer stays on
    TIMERS for bookings to consume, a Go duration (PARKMATE_TIMER_FIRED_TTL, default 24h);
    `probe_port`: where /healthz, /readyz and /metrics are served (PARKMATE_PROBE_PORT);
    `nats_auth`: NATS credentials and TLS files (see runtime.config.NatsAuth). Timers
    uses no database."""

    nats_url: str
    fired_ttl: str = "24h"
    probe_port: str = ""
    nats_auth: NatsAuth = field(default_factory=NatsAuth)

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            nats_url=env("NATS_URL"),
            fired_ttl=env("TIMER_FIRED_TTL", "24h"),
            probe_port=env("PROBE_PORT", ""),
            nats_auth=NatsAuth.from_env(),
        )

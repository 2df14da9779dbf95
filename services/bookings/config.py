"""Settings of the bookings service, read once from the environment."""

from dataclasses import dataclass

from services.runtime.config import Common, env


@dataclass(frozen=True)
class Settings:
    """`common` URLs; `concurrency`: requests served at once (PARKMATE_BOOKINGS_CONCURRENCY);
    `probe_port`: where /healthz, /readyz and /metrics are served (PARKMATE_PROBE_PORT,
    empty: not served); every `sweep_seconds` (PARKMATE_SWEEP_SECONDS) active bookings
    more than `overdue_seconds` (PARKMATE_OVERDUE_SECONDS) past their end are expired, in
    case their fired timer was lost."""

    common: Common
    concurrency: int = 64
    probe_port: str = ""
    sweep_seconds: float = 15.0
    overdue_seconds: float = 30.0

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            common=Common.from_env(),
            concurrency=int(env("BOOKINGS_CONCURRENCY", "64")),
            probe_port=env("PROBE_PORT", ""),
            sweep_seconds=float(env("SWEEP_SECONDS", "15")),
            overdue_seconds=float(env("OVERDUE_SECONDS", "30")),
        )

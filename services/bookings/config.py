"""Settings of the bookings service, read and checked once from the environment."""

from dataclasses import dataclass

from services.runtime.config import Common, env_int, env_number, env_probe_port


@dataclass(frozen=True)
class Settings:
    """`common` URLs; `concurrency`: requests served at once (PARKMATE_BOOKINGS_CONCURRENCY);
    `probe_port`: where /healthz, /readyz and /metrics are served (PARKMATE_PROBE_PORT,
    None: not served); every `sweep_seconds` (PARKMATE_SWEEP_SECONDS) active bookings
    more than `overdue_seconds` (PARKMATE_OVERDUE_SECONDS) past their end are expired, in
    case their fired timer was lost."""

    common: Common
    concurrency: int = 64
    probe_port: int | None = None
    sweep_seconds: float = 15.0
    overdue_seconds: float = 30.0

    @classmethod
    def from_env(cls) -> "Settings":
        """Read and check every variable; raises SettingError naming a bad one."""
        return cls(
            common=Common.from_env(),
            concurrency=env_int("BOOKINGS_CONCURRENCY", 64),
            probe_port=env_probe_port(),
            sweep_seconds=env_number("SWEEP_SECONDS", 15),
            overdue_seconds=env_number("OVERDUE_SECONDS", 30, allow_zero=True),
        )

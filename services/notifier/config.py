"""Settings of the notifier, read and checked once from the environment."""

from dataclasses import dataclass

from services.runtime.config import Common, env_number, env_probe_port


@dataclass(frozen=True)
class Settings:
    """Retention of the inbox.

    PARKMATE_NOTIFICATION_RETENTION_DAYS (default 90): read notifications older than
    this are purged. PARKMATE_NOTIFICATION_PURGE_SECONDS (default 3600): how often each
    replica tries to purge (one at a time across replicas); expired announcements go
    in the same round. PARKMATE_PROBE_PORT: where /healthz, /readyz and /metrics are
    served (unset: nowhere).
    """

    common: Common
    retention_days: float = 90.0
    purge_seconds: float = 3600.0
    probe_port: int | None = None

    @classmethod
    def from_env(cls) -> "Settings":
        """Read and check every variable; raises SettingError naming a bad one."""
        return cls(
            common=Common.from_env(),
            retention_days=env_number("NOTIFICATION_RETENTION_DAYS", 90),
            purge_seconds=env_number("NOTIFICATION_PURGE_SECONDS", 3600),
            probe_port=env_probe_port(),
        )

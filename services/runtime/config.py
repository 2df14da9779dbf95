"""Settings every service reads from the environment (PARKMATE_*)."""

import os
from dataclasses import dataclass


def env(name: str, default: str | None = None) -> str:
    """PARKMATE_<name>, or `default`; raises RuntimeError naming the variable if unset."""
    value = os.environ.get(f"PARKMATE_{name}", default)
    if value is None:
        raise RuntimeError(f"Set PARKMATE_{name} (see docs/configuration.md).")
    return value


@dataclass(frozen=True)
class Common:
    """`nats_url` and `database_url` (PARKMATE_NATS_URL, PARKMATE_DATABASE_URL)."""

    nats_url: str
    database_url: str

    @classmethod
    def from_env(cls) -> "Common":
        return cls(nats_url=env("NATS_URL"), database_url=env("DATABASE_URL"))

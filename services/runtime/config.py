"""Settings every service reads from the environment (PARKMATE_*), checked once at start.

Each reader returns a typed value or raises SettingError, whose message is one line
naming the variable and what it must be. A service reads all of its settings before
it connects to anything, so a typo stops it at once instead of after a connection
attempt, a traceback or a request. docs/configuration.md lists every variable.
"""

import ipaddress
import math
import os
import re
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_POOL_SIZE = 20
DEFAULT_STARTUP_TIMEOUT = 60.0
NATS_SCHEMES = ("nats", "tls", "ws", "wss")
POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
# A Go duration as nats-server parses it: 90s, 1h30m, 1.5h, 500ms.
_GO_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h))")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class SettingError(ValueError):
    """A PARKMATE_* variable is missing or malformed; str() is one line naming it."""


def env(name: str, default: str | None = None) -> str:
    """PARKMATE_<name>; else the contents of the file named by PARKMATE_<name>_FILE (one
    trailing newline dropped); else `default`.

    The file form lets Kubernetes mount a Secret as a file instead of putting it in the
    process environment, where every child process and crash report would see it.
    Raises SettingError naming the variable if neither is set, or naming the file if it
    cannot be read.
    """
    value = os.environ.get(f"PARKMATE_{name}")
    if value is not None:
        return value
    path = os.environ.get(f"PARKMATE_{name}_FILE")
    if path:
        try:
            with open(path) as f:
                text = f.read()
        except OSError as e:
            raise SettingError(
                f"PARKMATE_{name}_FILE={path} cannot be read ({e.strerror}); "
                "mount the file there or unset the variable."
            ) from None
        return text.removesuffix("\n")
    if default is None:
        raise SettingError(
            f"Set PARKMATE_{name} or PARKMATE_{name}_FILE (see docs/configuration.md)."
        )
    return default


@dataclass(frozen=True)
class NatsAuth:
    """How a service proves itself to NATS and checks the server: all optional paths.

    `creds` (PARKMATE_NATS_CREDS): a NATS .creds file (user JWT and nkey seed);
    `tls_ca` (PARKMATE_NATS_TLS_CA): PEM bundle trusted for the server's certificate
    instead of the system's; `tls_cert` and `tls_key` (PARKMATE_NATS_TLS_CERT,
    PARKMATE_NATS_TLS_KEY): a client certificate and its key, for servers that verify
    clients (mutual TLS). Any TLS setting turns TLS on. Empty strings mean unset.
    """

    creds: str = ""
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""

    def __post_init__(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise SettingError(
                "PARKMATE_NATS_TLS_CERT and PARKMATE_NATS_TLS_KEY go together: set both "
                "(mutual TLS) or neither."
            )

    @property
    def tls(self) -> bool:
        """True when the connection must use TLS."""
        return bool(self.tls_ca or self.tls_cert)

    @classmethod
    def from_env(cls) -> "NatsAuth":
        """Read the four variables; raises SettingError when only one of cert/key is set."""
        return cls(
            creds=env("NATS_CREDS", ""),
            tls_ca=env("NATS_TLS_CA", ""),
            tls_cert=env("NATS_TLS_CERT", ""),
            tls_key=env("NATS_TLS_KEY", ""),
        )


def parse_int(name: str, raw: str, minimum: int, maximum: int | None = None) -> int:
    """`raw` as an integer in [minimum, maximum]; SettingError naming PARKMATE_<name> if not."""
    rule = f"an integer of at least {minimum}"
    if maximum is not None:
        rule = f"an integer from {minimum} to {maximum}"
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(f"PARKMATE_{name} must be {rule}, not {raw!r}.") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise SettingError(f"PARKMATE_{name} must be {rule}, not {raw!r}.")
    return value


def parse_number(name: str, raw: str, allow_zero: bool = False) -> float:
    """`raw` as a finite number > 0 (>= 0 with `allow_zero`); SettingError if not."""
    rule = "a number of at least 0" if allow_zero else "a number greater than 0"
    try:
        value = float(raw)
    except ValueError:
        raise SettingError(f"PARKMATE_{name} must be {rule}, not {raw!r}.") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise SettingError(f"PARKMATE_{name} must be {rule}, not {raw!r}.")
    return value


def parse_go_duration(name: str, raw: str) -> str:
    """`raw` if it is a positive Go duration (`24h`, `90m`, `1h30m`), as nats-server
    reads it in a Nats-Schedule-TTL header; SettingError otherwise."""
    parts = _GO_DURATION.findall(raw)
    if not parts or "".join(n + u for n, u in parts) != raw:
        raise SettingError(
            f"PARKMATE_{name} must be a Go duration such as 24h, 90m or 1h30m, not {raw!r}."
        )
    if sum(float(n) * _GO_UNITS[u] for n, u in parts) < 1:
        raise SettingError(f"PARKMATE_{name} must be at least one second, not {raw!r}.")
    return raw


def parse_list(raw: str) -> tuple[str, ...]:
    """Comma-separated items, trimmed, empty ones dropped."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _split_url(name: str, raw: str, schemes: tuple[str, ...], example: str) -> SplitResult:
    # The value is never echoed: a URL may carry a password.
    try:
        url = urlsplit(raw)
        url.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise SettingError(
            f"PARKMATE_{name} must be a URL like {example}; its port is not a number "
            "from 1 to 65535."
        ) from None
    if url.scheme not in schemes:
        got = f"its scheme is {url.scheme!r}" if url.scheme else "it has no scheme"
        raise SettingError(
            f"PARKMATE_{name} must be a URL like {example} ({' or '.join(schemes)}); {got}."
        )
    return url


def parse_nats_url(name: str, raw: str) -> str:
    """`raw` if it is a URL nats-py can connect to (nats, tls, ws or wss, with a host);
    SettingError otherwise."""
    url = _split_url(name, raw, NATS_SCHEMES, "nats://host:4222")
    if not url.hostname:
        raise SettingError(f"PARKMATE_{name} must be a URL like nats://host:4222; it has no host.")
    return raw


def parse_database_url(name: str, raw: str) -> str:
    """`raw` if it is a PostgreSQL URL SQLAlchemy can use; SettingError otherwise."""
    _split_url(name, raw, POSTGRES_SCHEMES, "postgresql://user@host:5432/db")
    try:
        make_url(raw)
    except (ArgumentError, ValueError):
        raise SettingError(
            f"PARKMATE_{name} must be a URL like postgresql://user@host:5432/db; "
            "it could not be parsed."
        ) from None
    return raw


def parse_port(name: str, raw: str) -> int:
    """A TCP port, 1 to 65535."""
    return parse_int(name, raw, 1, 65535)


def parse_networks(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated IP addresses or networks (10.0.0.0/8), or `*` for any; empty: none."""
    items = parse_list(raw)
    for item in items:
        if item == "*":
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise SettingError(
                f"PARKMATE_{name} must list IP addresses or networks (10.0.0.0/8) separated "
                f"by commas, or *; {item!r} is neither."
            ) from None
    return items


def redact(url: str) -> str:
    """`url` with its password replaced by ***, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{netloc[2]}").geturl()


def env_int(name: str, default: int, minimum: int = 1, maximum: int | None = None) -> int:
    """PARKMATE_<name> as an integer in [minimum, maximum], `default` when unset."""
    return parse_int(name, env(name, str(default)), minimum, maximum)


def env_number(name: str, default: float, allow_zero: bool = False) -> float:
    """PARKMATE_<name> as a positive number (seconds, hours or days as the name says)."""
    return parse_number(name, env(name, str(default)), allow_zero)


def env_probe_port() -> int | None:
    """PARKMATE_PROBE_PORT: the port for /healthz, /readyz and /metrics; None when unset
    or empty (probes off)."""
    raw = env("PROBE_PORT", "").strip()
    return parse_port("PROBE_PORT", raw) if raw else None


@dataclass(frozen=True)
class Common:
    """What every service with a database needs.

    `nats_url` (PARKMATE_NATS_URL), `database_url` (PARKMATE_DATABASE_URL),
    `db_pool_size` (PARKMATE_DB_POOL_SIZE: connections each process keeps open),
    `startup_timeout` (PARKMATE_STARTUP_TIMEOUT_SECONDS: how long, in seconds, a
    starting service keeps trying to reach NATS and PostgreSQL before it gives up),
    `nats_auth`: the NATS credentials and TLS files (see NatsAuth).
    """

    nats_url: str
    database_url: str
    db_pool_size: int = DEFAULT_POOL_SIZE
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    nats_auth: NatsAuth = field(default_factory=NatsAuth)

    @classmethod
    def from_env(cls) -> "Common":
        """Read and check the variables; raises SettingError naming a bad one."""
        return cls(
            nats_url=parse_nats_url("NATS_URL", env("NATS_URL")),
            database_url=parse_database_url("DATABASE_URL", env("DATABASE_URL")),
            db_pool_size=env_int("DB_POOL_SIZE", DEFAULT_POOL_SIZE),
            startup_timeout=env_number("STARTUP_TIMEOUT_SECONDS", DEFAULT_STARTUP_TIMEOUT),
            nats_auth=NatsAuth.from_env(),
        )

"""Settings every service reads from the environment (PARKMATE_*)."""

import os
from dataclasses import dataclass, field


def env(name: str, default: str | None = None) -> str:
    """PARKMATE_<name>; else the contents of the file named by PARKMATE_<name>_FILE (one
    trailing newline dropped); else `default`.

    The file form lets Kubernetes mount a Secret as a file instead of putting it in the
    process environment, where every child process and crash report would see it.
    Raises RuntimeError naming the variable if neither is set, or naming the file if it
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
            raise RuntimeError(
                f"PARKMATE_{name}_FILE={path} cannot be read ({e.strerror}); "
                "mount the file there or unset the variable."
            ) from None
        return text.removesuffix("\n")
    if default is None:
        raise RuntimeError(
            f"Set PARKMATE_{name} or PARKMATE_{name}_FILE (see README.md, Configuration)."
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
            raise ValueError(
                "PARKMATE_NATS_TLS_CERT and PARKMATE_NATS_TLS_KEY go together: set both "
                "(mutual TLS) or neither."
            )

    @property
    def tls(self) -> bool:
        """True when the connection must use TLS."""
        return bool(self.tls_ca or self.tls_cert)

    @classmethod
    def from_env(cls) -> "NatsAuth":
        """Read the four variables; raises ValueError when only one of cert/key is set."""
        return cls(
            creds=env("NATS_CREDS", ""),
            tls_ca=env("NATS_TLS_CA", ""),
            tls_cert=env("NATS_TLS_CERT", ""),
            tls_key=env("NATS_TLS_KEY", ""),
        )


@dataclass(frozen=True)
class Common:
    """`nats_url` and `database_url` (PARKMATE_NATS_URL, PARKMATE_DATABASE_URL), and
    `nats_auth`: the NATS credentials and TLS files (see NatsAuth)."""

    nats_url: str
    database_url: str
    nats_auth: NatsAuth = field(default_factory=NatsAuth)

    @classmethod
    def from_env(cls) -> "Common":
        return cls(
            nats_url=env("NATS_URL"),
            database_url=env("DATABASE_URL"),
            nats_auth=NatsAuth.from_env(),
        )

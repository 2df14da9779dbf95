"""Every service's settings: defaults, and one clear error naming a bad variable."""

import os

import pytest

from services.api.config import Settings as ApiSettings
from services.bookings.config import Settings as BookingsSettings
from services.notifier.config import Settings as NotifierSettings
from services.runtime import config
from services.runtime.config import SettingError
from services.timers.config import Settings as TimersSettings

SECRET = "unit-test-secret-that-is-long-enough-0123"
BASE = {
    "PARKMATE_NATS_URL": "nats://127.0.0.1:4222",
    "PARKMATE_DATABASE_URL": "postgresql://parkmate:pw@db.example:5432/parkmate",
    "PARKMATE_JWT_SECRET": SECRET,
}
SERVICES = {
    "api": ApiSettings,
    "bookings": BookingsSettings,
    "timers": TimersSettings,
    "notifier": NotifierSettings,
}


@pytest.fixture
def environ(monkeypatch):
    """Only BASE among the PARKMATE_* variables; returns a setter."""
    for name in list(os.environ):
        if name.startswith("PARKMATE_"):
            monkeypatch.delenv(name)
    for name, value in BASE.items():
        monkeypatch.setenv(name, value)

    def set_(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"PARKMATE_{name}", value)

    return set_


def test_defaults(environ):
    api = ApiSettings.from_env()
    assert (api.host, api.port, api.token_seconds) == ("127.0.0.1", 8000, 3600)
    assert api.common.db_pool_size == 20 and api.common.startup_timeout == 60
    assert (api.login_account_attempts, api.login_account_window_seconds) == (5, 300)
    assert (api.login_address_attempts, api.login_address_window_seconds) == (20, 300)
    assert (api.register_address_attempts, api.register_address_window_seconds) == (30, 3600)
    assert api.trusted_proxies == ("127.0.0.1", "::1")
    assert api.jwt_previous_secrets == ()
    bookings = BookingsSettings.from_env()
    assert (bookings.concurrency, bookings.probe_port, bookings.sweep_seconds) == (64, None, 15)
    timers = TimersSettings.from_env()
    assert (timers.fired_ttl, timers.probe_port, timers.startup_timeout) == ("24h", None, 60)
    assert NotifierSettings.from_env().retention_days == 90


def test_values_are_read(environ):
    environ(
        PORT="9000",
        PROBE_PORT="9100",
        DB_POOL_SIZE="7",
        STARTUP_TIMEOUT_SECONDS="2.5",
        TIMER_FIRED_TTL="1h30m",
        JWT_PREVIOUS_SECRETS=f" {'p' * 32} , {'q' * 40} ,",
        TRUSTED_PROXIES="10.0.0.0/8, 192.168.1.7",
        DEMO_ACCOUNTS="a@example.com, b@example.com",
    )
    api = ApiSettings.from_env()
    assert api.port == 9000 and api.common.db_pool_size == 7
    assert api.common.startup_timeout == 2.5
    assert api.jwt_previous_secrets == ("p" * 32, "q" * 40)
    assert len(api.keys.secrets) == 3 and api.keys.signing in api.keys.secrets
    assert api.trusted_proxies == ("10.0.0.0/8", "192.168.1.7")
    assert api.demo_accounts == ("a@example.com", "b@example.com")
    assert BookingsSettings.from_env().probe_port == 9100
    assert TimersSettings.from_env().fired_ttl == "1h30m"


BAD = [
    # (services that read it, variable, bad value, words the message must contain)
    (SERVICES, "NATS_URL", "localhost:4222", "nats://host:4222"),
    (SERVICES, "NATS_URL", "http://nats:4222", "its scheme is 'http'"),
    (SERVICES, "NATS_URL", "nats://:4222", "no host"),
    (SERVICES, "NATS_URL", "nats://nats:port", "port"),
    (SERVICES, "NATS_URL", "nats://nats:70000", "port"),
    (SERVICES, "STARTUP_TIMEOUT_SECONDS", "-1", "greater than 0"),
    (SERVICES, "STARTUP_TIMEOUT_SECONDS", "nan", "greater than 0"),
    (["api", "bookings", "notifier"], "DATABASE_URL", "mysql://db/x", "its scheme is 'mysql'"),
    (["api", "bookings", "notifier"], "DATABASE_URL", "db.example:5432", "postgresql://"),
    (["api", "bookings", "notifier"], "DATABASE_URL", "postgresql://u@h:x/db", "port"),
    (["api", "bookings", "notifier"], "DB_POOL_SIZE", "0", "at least 1"),
    (["api", "bookings", "notifier"], "DB_POOL_SIZE", "ten", "at least 1"),
    (["bookings", "timers", "notifier"], "PROBE_PORT", "http", "from 1 to 65535"),
    (["bookings", "timers", "notifier"], "PROBE_PORT", "0", "from 1 to 65535"),
    (["timers"], "TIMER_FIRED_TTL", "24", "Go duration"),
    (["timers"], "TIMER_FIRED_TTL", "1 day", "Go duration"),
    (["timers"], "TIMER_FIRED_TTL", "0s", "at least one second"),
    (["bookings"], "BOOKINGS_CONCURRENCY", "-4", "at least 1"),
    (["bookings"], "SWEEP_SECONDS", "0", "greater than 0"),
    (["bookings"], "OVERDUE_SECONDS", "-1", "at least 0"),
    (["notifier"], "NOTIFICATION_RETENTION_DAYS", "forever", "greater than 0"),
    (["notifier"], "NOTIFICATION_PURGE_SECONDS", "inf", "greater than 0"),
    (["api"], "HOST", " ", "not empty"),
    (["api"], "PORT", "eighty", "from 1 to 65535"),
    (["api"], "PORT", "65536", "from 1 to 65535"),
    (["api"], "TOKEN_SECONDS", "1.5", "integer"),
    (["api"], "WS_SEND_QUEUE", "0", "at least 1"),
    (["api"], "WS_PING_SECONDS", "0", "greater than 0"),
    (["api"], "WS_RATE", "fast", "greater than 0"),
    (["api"], "WS_BURST", "-1", "at least 1"),
    (["api"], "IDEMPOTENCY_KEY_HOURS", "-24", "greater than 0"),
    (["api"], "LOGIN_ACCOUNT_ATTEMPTS", "0", "at least 1"),
    (["api"], "LOGIN_ACCOUNT_WINDOW_SECONDS", "0", "greater than 0"),
    (["api"], "LOGIN_ADDRESS_ATTEMPTS", "many", "at least 1"),
    (["api"], "LOGIN_ADDRESS_WINDOW_SECONDS", "-5", "greater than 0"),
    (["api"], "REGISTER_ADDRESS_ATTEMPTS", "0", "at least 1"),
    (["api"], "REGISTER_ADDRESS_WINDOW_SECONDS", "0", "greater than 0"),
    (["api"], "TRUSTED_PROXIES", "10.0.0.0/8,proxy.local", "'proxy.local'"),
    (["api"], "JWT_SECRET", "", "Set PARKMATE_JWT_SECRET"),
    (["api"], "JWT_SECRET", "too-short", "at least 32 bytes"),
    (["api"], "JWT_SECRET", "change-me-to-32-random-bytes-or-more", "published placeholder"),
    (["api"], "JWT_PREVIOUS_SECRETS", f"{'p' * 32},short", "at least 32 bytes"),
]


@pytest.mark.parametrize(
    ("service", "variable", "value", "words"),
    [(s, v, x, w) for services, v, x, w in BAD for s in services],
)
def test_a_bad_setting_is_one_line_naming_the_variable(environ, service, variable, value, words):
    environ(**{variable: value})
    with pytest.raises(SettingError) as raised:
        SERVICES[service].from_env()
    message = str(raised.value)
    assert f"PARKMATE_{variable}" in message and words in message
    assert "\n" not in message
    if "SECRET" in variable or "URL" in variable:  # may hold a secret: never echoed
        assert all(part not in message for part in value.split(",") if part)


@pytest.mark.parametrize("variable", ["NATS_URL", "DATABASE_URL"])
def test_a_missing_url_is_named(environ, monkeypatch, variable):
    monkeypatch.delenv(f"PARKMATE_{variable}")
    with pytest.raises(SettingError, match=f"Set PARKMATE_{variable}"):
        BookingsSettings.from_env()


def test_a_missing_jwt_secret_says_how_to_make_one(environ, monkeypatch):
    monkeypatch.delenv("PARKMATE_JWT_SECRET")
    with pytest.raises(SettingError, match=r"Set PARKMATE_JWT_SECRET .*openssl rand"):
        ApiSettings.from_env()


def test_a_malformed_url_message_keeps_its_password_out(environ):
    environ(DATABASE_URL="mysql://parkmate:hunter2hunter2@db/x")
    with pytest.raises(SettingError) as raised:
        ApiSettings.from_env()
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://user:pw@nats:4222", "nats://user:***@nats:4222"),
        ("postgresql://parkmate:s3cret@db:5432/x", "postgresql://parkmate:***@db:5432/x"),
        ("nats://nats:4222", "nats://nats:4222"),
    ],
)
def test_redact_hides_passwords(url, shown):
    assert config.redact(url) == shown

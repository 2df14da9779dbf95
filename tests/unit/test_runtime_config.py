"""Settings from the environment: PARKMATE_<NAME>_FILE and the NATS credentials and TLS."""

import pytest

from services.runtime.config import Common, NatsAuth, SettingError, env
from services.runtime.natsconn import auth_options
from services.timers.config import Settings as TimersSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in (
        "NATS_URL",
        "DATABASE_URL",
        "NATS_CREDS",
        "NATS_TLS_CA",
        "NATS_TLS_CERT",
        "NATS_TLS_KEY",
    ):
        monkeypatch.delenv(f"PARKMATE_{name}", raising=False)
        monkeypatch.delenv(f"PARKMATE_{name}_FILE", raising=False)


def test_env_reads_the_variable_before_the_file(monkeypatch, tmp_path):
    secret = tmp_path / "url"
    secret.write_text("postgresql://from-file/db\n")
    monkeypatch.setenv("PARKMATE_DATABASE_URL_FILE", str(secret))
    assert env("DATABASE_URL") == "postgresql://from-file/db"
    monkeypatch.setenv("PARKMATE_DATABASE_URL", "postgresql://from-env/db")
    assert env("DATABASE_URL") == "postgresql://from-env/db"


def test_env_keeps_all_but_one_trailing_newline_of_the_file(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("  two spaces and a blank line\n\n")
    monkeypatch.setenv("PARKMATE_JWT_SECRET_FILE", str(secret))
    assert env("JWT_SECRET") == "  two spaces and a blank line\n"


def test_env_names_an_unreadable_file(monkeypatch, tmp_path):
    monkeypatch.setenv("PARKMATE_DATABASE_URL_FILE", str(tmp_path / "missing"))
    with pytest.raises(SettingError, match=r"PARKMATE_DATABASE_URL_FILE=.*missing"):
        env("DATABASE_URL")


def test_env_names_both_ways_to_set_a_missing_variable():
    with pytest.raises(SettingError, match="PARKMATE_NATS_URL or PARKMATE_NATS_URL_FILE"):
        env("NATS_URL")
    assert env("NATS_URL", "nats://default") == "nats://default"


def test_nats_auth_is_off_unless_set(monkeypatch):
    monkeypatch.setenv("PARKMATE_NATS_URL", "nats://nats:4222")
    monkeypatch.setenv("PARKMATE_DATABASE_URL", "postgresql://db/parkmate")
    common = Common.from_env()
    assert common.nats_auth == NatsAuth()
    assert not common.nats_auth.tls
    assert auth_options(common.nats_auth) == {}


def test_nats_auth_reads_the_four_paths(monkeypatch):
    monkeypatch.setenv("PARKMATE_NATS_URL", "tls://nats:4222")
    monkeypatch.setenv("PARKMATE_NATS_CREDS", "/etc/parkmate/nats/user.creds")
    monkeypatch.setenv("PARKMATE_NATS_TLS_CA", "/etc/parkmate/nats-tls/ca.crt")
    monkeypatch.setenv("PARKMATE_NATS_TLS_CERT", "/etc/parkmate/nats-tls/tls.crt")
    monkeypatch.setenv("PARKMATE_NATS_TLS_KEY", "/etc/parkmate/nats-tls/tls.key")
    expected = NatsAuth(
        creds="/etc/parkmate/nats/user.creds",
        tls_ca="/etc/parkmate/nats-tls/ca.crt",
        tls_cert="/etc/parkmate/nats-tls/tls.crt",
        tls_key="/etc/parkmate/nats-tls/tls.key",
    )
    assert NatsAuth.from_env() == expected
    # timers has no database, so it reads the NATS part on its own
    assert TimersSettings.from_env().nats_auth == expected


@pytest.mark.parametrize("only", ["PARKMATE_NATS_TLS_CERT", "PARKMATE_NATS_TLS_KEY"])
def test_a_client_certificate_needs_its_key_and_the_key_its_certificate(monkeypatch, only):
    monkeypatch.setenv(only, "/some/file.pem")
    with pytest.raises(ValueError, match="PARKMATE_NATS_TLS_CERT and PARKMATE_NATS_TLS_KEY"):
        NatsAuth.from_env()


def test_creds_alone_go_to_nats_py_without_tls():
    assert auth_options(NatsAuth(creds="/run/user.creds")) == {
        "user_credentials": "/run/user.creds"
    }


def test_a_missing_tls_file_fails_at_start(tmp_path):
    # The TLS handshake itself is tested against a real nats-server in
    # tests/integration/test_nats_tls.py.
    with pytest.raises(FileNotFoundError):
        auth_options(NatsAuth(tls_ca=str(tmp_path / "missing-ca.pem")))

"""PARKMATE_DB_POOL_SIZE: a positive integer, or a clear error naming the variable."""

import pytest

from services.runtime.db import DEFAULT_POOL_SIZE, pool_size_from_env


def test_pool_size_defaults_and_reads_the_variable(monkeypatch):
    monkeypatch.delenv("PARKMATE_DB_POOL_SIZE", raising=False)
    assert pool_size_from_env() == DEFAULT_POOL_SIZE
    monkeypatch.setenv("PARKMATE_DB_POOL_SIZE", "7")
    assert pool_size_from_env() == 7


@pytest.mark.parametrize("bad", ["0", "-3", "ten", ""])
def test_a_bad_pool_size_names_the_variable(monkeypatch, bad):
    monkeypatch.setenv("PARKMATE_DB_POOL_SIZE", bad)
    with pytest.raises(ValueError, match="PARKMATE_DB_POOL_SIZE must be a positive integer"):
        pool_size_from_env()

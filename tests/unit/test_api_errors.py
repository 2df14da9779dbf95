"""services/api/errors.py: what reaches a client when the database or a service fails
under a request. Every such answer is a 4xx or a 503 with Retry-After, never a 500."""

from types import SimpleNamespace

import pytest
from litestar import Litestar, get
from litestar.testing import TestClient
from sqlalchemy.exc import TimeoutError as PoolTimeout

from services.api.errors import exception_handlers
from services.runtime.db import ConnectionLost
from services.runtime.micro import RemoteError


def raising(exc: Exception) -> Litestar:
    @get("/")
    async def route() -> None:
        raise exc

    app = Litestar([route], exception_handlers=exception_handlers)
    app.state.settings = SimpleNamespace(queue_seconds=2.0)
    return app


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (ConnectionLost("gone"), "retry"),
        (PoolTimeout("QueuePool limit reached"), "busy"),
        (RemoteError("unavailable", "The service did not answer; try again."), "try again"),
    ],
)
def test_database_and_service_outages_are_503_with_retry_after(exc, words):
    with TestClient(raising(exc)) as client:
        r = client.get("/")
    assert r.status_code == 503
    assert int(r.headers["retry-after"]) >= 1
    assert words in r.json()["detail"].lower()

"""The event loop every Parkmate process runs on."""

from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on uvloop and return its result (exceptions propagate).

    uvloop rather than asyncio's own loop: a service's time goes into socket writes and
    callbacks (PostgreSQL, NATS, HTTP on loopback), which uvloop does in C; the services
    use nothing asyncio-specific that uvloop lacks. Tests run the same services
    in-process on pytest-asyncio's loop, and as processes (e2e) on this one.
    """
    return uvloop.run(main)

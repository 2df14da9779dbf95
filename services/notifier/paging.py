"""Inbox pages, no I/O: opaque cursors (a cursor names the seq a page ended at) and
the size a page may reach."""

import base64

import msgspec

from services.contracts.errors import DomainError
from services.contracts.limits import PAGE_BYTES_MAX

_PREFIX = "n1:"
_encoder = msgspec.json.Encoder()


def fitting(items: list, budget: int = PAGE_BYTES_MAX) -> int:
    """How many of `items`, from the first, fit in `budget` bytes of JSON; at least one
    (a single notification is far smaller than any budget). A page is one NATS reply,
    and 200 notifications with long bodies in a script of multi-byte characters would
    not fit in one; the caller ends the page there and the next one goes on."""
    if len(_encoder.encode(items)) <= budget:
        return len(items)
    total = 0
    for n, item in enumerate(items):
        total += len(_encoder.encode(item)) + 1
        if total > budget:
            return max(n, 1)
    return len(items)


def encode_cursor(seq: int) -> str:
    """The `next_cursor` of a page whose last (oldest) item has `seq`."""
    return base64.urlsafe_b64encode(f"{_PREFIX}{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The seq inside `cursor`; raises DomainError("invalid") for anything we did not make."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith(_PREFIX):
            raise ValueError(text)
        seq = int(text[len(_PREFIX) :])
        if seq < 1:
            raise ValueError(text)
        return seq
    except (ValueError, UnicodeDecodeError):
        raise DomainError(
            "invalid",
            "cursor is not one we issued: pass next_cursor from the previous page unchanged.",
            {"field": "cursor"},
        ) from None

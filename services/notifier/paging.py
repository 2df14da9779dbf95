"""Opaque inbox cursors, no I/O: a cursor names the seq a page ended at."""

import base64

from services.contracts.errors import DomainError

_PREFIX = "n1:"


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

"""A stored notification in a form every reader can take, no I/O.

New notifications are made within the limits (services/contracts/limits.py), but the
table may hold rows that are not: stored before the limits existed (a 600 KB lot name
in `data`), or written straight into it (a 2 MB body, `data` that is a JSON array, a
level no client knows). Served as they are, such a row breaks its user's whole inbox:
an answer larger than a NATS message is never sent, and one the api cannot decode is
a 500, so listing, resuming and gap fill all fail at it and every later seq waits
behind it. `servable` returns instead the notification cut to the limits and flagged
`truncated`, at the same seq, so it is delivered like any other.

The limits applied (characters, bytes of UTF-8 JSON):

- `title` at most TITLE_MAX (200), `body` at most BODY_MAX (2,000) characters, cut
  ending in an ellipsis; `type` at most TYPE_MAX (64);
- `level` one of the contract's levels (else "info"), `priority` one of its
  priorities (else "normal");
- `data` an object of at most MAX_DATA_KEYS (32) keys and DATA_MAX_BYTES (4,096)
  bytes: a value that is not an object becomes `{}`; in one that is too large, string
  values are cut to DATA_STRING_MAX (500) characters and entries that still do not
  fit are left out, in their order.

So a servable notification is at most about 13 KB as JSON (multi-byte characters
included), far below a NATS message (1 MiB by default).
"""

import typing
from typing import Any

import msgspec

from services.contracts.limits import (
    BODY_MAX,
    DATA_MAX_BYTES,
    MAX_DATA_KEYS,
    REASON_MAX,
    TITLE_MAX,
    TYPE_MAX,
)
from services.contracts.notifier import Level, Notification, Priority

# The longest string a notification's data holds when made from an event (a decline
# reason); longer ones are cut to it when data must shrink.
DATA_STRING_MAX = REASON_MAX
LEVELS = frozenset(typing.get_args(Level))
PRIORITIES = frozenset(typing.get_args(Priority))
DEFAULT_LEVEL = "info"
DEFAULT_PRIORITY = "normal"

_encoder = msgspec.json.Encoder()


def clip(text: str, limit: int) -> str:
    """`text` if it has at most `limit` characters, else its first `limit` - 1 and "…"."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def bounded_data(data: Any) -> tuple[dict[str, Any], bool]:
    """(`data` within the limits, whether it had to change): `{}` for a value that is not
    an object; for an object over MAX_DATA_KEYS keys or DATA_MAX_BYTES bytes, its
    entries in order with strings cut to DATA_STRING_MAX characters, leaving out those
    that no longer fit."""
    if not isinstance(data, dict):
        return {}, True
    if len(data) <= MAX_DATA_KEYS and len(_encoder.encode(data)) <= DATA_MAX_BYTES:
        return data, False
    out: dict[str, Any] = {}
    size = 2  # the braces
    for key, value in data.items():
        if len(out) == MAX_DATA_KEYS:
            break
        if isinstance(value, str):
            value = clip(value, DATA_STRING_MAX)
        # "key":value plus the comma before every entry but the first.
        piece = len(_encoder.encode(key)) + 1 + len(_encoder.encode(value)) + (1 if out else 0)
        if size + piece > DATA_MAX_BYTES:
            continue
        out[key] = value
        size += piece
    return out, True


def servable(item: Notification) -> tuple[Notification, list[str]]:
    """(`item` within the limits, the names of the fields that had to change). When
    nothing changed it is `item` itself; otherwise a copy with `truncated` true."""
    changed = []
    title = clip(item.title, TITLE_MAX) if isinstance(item.title, str) else ""
    if title != item.title:
        changed.append("title")
    body = clip(item.body, BODY_MAX) if isinstance(item.body, str) else ""
    if body != item.body:
        changed.append("body")
    type_ = clip(item.type, TYPE_MAX) if isinstance(item.type, str) else ""
    if type_ != item.type:
        changed.append("type")
    level = item.level if item.level in LEVELS else DEFAULT_LEVEL
    if level != item.level:
        changed.append("level")
    priority = item.priority if item.priority in PRIORITIES else DEFAULT_PRIORITY
    if priority != item.priority:
        changed.append("priority")
    data, data_changed = bounded_data(item.data)
    if data_changed:
        changed.append("data")
    if not changed:
        return item, []
    return (
        msgspec.structs.replace(
            item,
            title=title,
            body=body,
            type=type_,
            level=level,
            priority=priority,
            data=data,
            truncated=True,
        ),
        changed,
    )
